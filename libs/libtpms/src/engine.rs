//! The one libtpms instance of the process, the NV callbacks it calls, and the swap that lets
//! several logical TPMs share it.
//!
//! Two locks, always taken in this order: [`ENGINE`] (held across every libtpms call, so calls
//! are serialised) and then [`NV_STORE`] (held only briefly). The callbacks run inside libtpms
//! calls, on the thread holding [`ENGINE`], and take only [`NV_STORE`], so they cannot deadlock.

use std::ffi::{c_char, c_uchar, CStr};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::{debug, warn};

use crate::error::TpmError;
use crate::ffi;

/// What a logical TPM keeps while libtpms runs another one. While it is loaded, its permanent
/// state lives in [`NV_STORE`] and its volatile state inside libtpms.
#[derive(Debug, Default)]
pub(crate) struct Saved {
    /// The "permall" blob; empty for a TPM never manufactured.
    pub permanent: Vec<u8>,
    /// A RAM snapshot taken when it was swapped out; `None` means the next load is a power-on.
    pub volatile: Option<Vec<u8>>,
    /// NV commits seen so far.
    pub nv_commits: u64,
}

/// The blobs libtpms reads and writes through its NV callbacks: those of the loaded TPM.
#[derive(Debug, Default)]
struct NvStore {
    permanent: Option<Vec<u8>>,
    /// Handed out once: a later power-on must not resume it.
    volatile: Option<Vec<u8>>,
    /// "permall" stores since the engine last looked.
    commits: u64,
}

/// The TPM libtpms currently runs.
struct Loaded {
    id: u64,
    saved: Arc<Mutex<Saved>>,
}

/// libtpms's process-global state as this crate tracks it.
pub(crate) struct Engine {
    library_ready: bool,
    loaded: Option<Loaded>,
    next_id: u64,
    swaps: u64,
}

static ENGINE: Mutex<Engine> = Mutex::new(Engine {
    library_ready: false,
    loaded: None,
    next_id: 1,
    swaps: 0,
});

static NV_STORE: Mutex<NvStore> = Mutex::new(NvStore {
    permanent: None,
    volatile: None,
    commits: 0,
});

/// Plain data behind both locks stays consistent even if a holder panicked, so poisoning is
/// ignored rather than turned into a second panic.
fn relock<'a, T>(
    result: Result<MutexGuard<'a, T>, PoisonError<MutexGuard<'a, T>>>,
) -> MutexGuard<'a, T> {
    result.unwrap_or_else(PoisonError::into_inner)
}

fn nv_store() -> MutexGuard<'static, NvStore> {
    relock(NV_STORE.lock())
}

fn saved_of(saved: &Mutex<Saved>) -> MutexGuard<'_, Saved> {
    relock(saved.lock())
}

/// Locks the engine; every libtpms call happens under this guard.
pub(crate) fn engine() -> MutexGuard<'static, Engine> {
    relock(ENGINE.lock())
}

/// State swaps (one TPM saved and terminated, another restored) since the process started.
pub fn swap_count() -> u64 {
    engine().swaps
}

/// libtpms's version, `0x000902` for 0.9.2.
pub fn library_version() -> u32 {
    let _engine = engine();
    // SAFETY: a pure getter; serialised by the engine lock like every other call.
    unsafe { ffi::TPMLIB_GetVersion() }
}

fn check(call: &'static str, code: ffi::TpmResult) -> Result<(), TpmError> {
    if code == ffi::TPM_SUCCESS {
        Ok(())
    } else {
        Err(TpmError::Library { call, code })
    }
}

impl Engine {
    pub fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn is_loaded(&self, id: u64) -> bool {
        self.loaded.as_ref().is_some_and(|l| l.id == id)
    }

    fn ensure_library(&mut self) -> Result<(), TpmError> {
        if self.library_ready {
            return Ok(());
        }
        let mut callbacks = ffi::LibtpmsCallbacks {
            size_of_struct: std::mem::size_of::<ffi::LibtpmsCallbacks>() as i32,
            tpm_nvram_init: Some(nvram_init),
            tpm_nvram_loaddata: Some(nvram_loaddata),
            tpm_nvram_storedata: Some(nvram_storedata),
            tpm_nvram_deletename: Some(nvram_deletename),
            tpm_io_init: Some(io_init),
            tpm_io_getlocality: Some(io_getlocality),
            tpm_io_getphysicalpresence: Some(io_getphysicalpresence),
        };
        // SAFETY: called under the engine lock; libtpms copies the callback struct.
        unsafe {
            check(
                "ChooseTPMVersion",
                ffi::TPMLIB_ChooseTPMVersion(ffi::TPMLIB_TPM_VERSION_2),
            )?;
            check(
                "RegisterCallbacks",
                ffi::TPMLIB_RegisterCallbacks(&mut callbacks),
            )?;
        }
        self.library_ready = true;
        Ok(())
    }

    /// Makes the TPM `id` the one libtpms runs, saving whichever one ran before.
    pub fn activate(&mut self, id: u64, saved: &Arc<Mutex<Saved>>) -> Result<(), TpmError> {
        if self.is_loaded(id) {
            return Ok(());
        }
        self.ensure_library()?;
        if self.loaded.is_some() {
            self.swaps += 1;
            self.evict();
        }
        let mut mine = saved_of(saved);
        {
            let mut store = nv_store();
            store.permanent =
                (!mine.permanent.is_empty()).then(|| std::mem::take(&mut mine.permanent));
            store.volatile = mine.volatile.take();
            store.commits = 0;
        }
        // SAFETY: under the engine lock, with no TPM running (evicted above or never started).
        let result = check("MainInit", unsafe { ffi::TPMLIB_MainInit() });
        let mut store = nv_store();
        mine.nv_commits += std::mem::take(&mut store.commits);
        if let Err(error) = result {
            // Leave libtpms stopped and give the TPM its state back untouched.
            drop(store);
            // SAFETY: as above; Terminate after a failed init frees whatever it set up.
            unsafe { ffi::TPMLIB_Terminate() };
            let mut store = nv_store();
            mine.permanent = store.permanent.take().unwrap_or_default();
            store.volatile = None;
            return Err(error);
        }
        store.volatile = None;
        drop(store);
        drop(mine);
        debug!(tpm = id, "tpm loaded");
        self.loaded = Some(Loaded {
            id,
            saved: Arc::clone(saved),
        });
        Ok(())
    }

    /// Saves the running TPM's RAM and NV into its [`Saved`] and stops libtpms.
    fn evict(&mut self) {
        let Some(loaded) = self.loaded.take() else {
            return;
        };
        let volatile = match get_volatile_state() {
            Ok(blob) => Some(blob),
            Err(error) => {
                // It comes back as after a power cycle, which a TPM client survives.
                warn!(tpm = loaded.id, %error, "volatile state lost on swap");
                None
            }
        };
        // SAFETY: under the engine lock; the TPM is running.
        unsafe { ffi::TPMLIB_Terminate() };
        let mut theirs = saved_of(&loaded.saved);
        let mut store = nv_store();
        theirs.permanent = store.permanent.take().unwrap_or_default();
        theirs.nv_commits += std::mem::take(&mut store.commits);
        theirs.volatile = volatile;
        store.volatile = None;
        debug!(tpm = loaded.id, "tpm swapped out");
    }

    /// Runs one command on the loaded TPM `id` (call [`Engine::activate`] first).
    pub fn process(&mut self, id: u64, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        let saved = self.loaded_saved(id)?;
        // libtpms takes a mutable command pointer; give it a copy it may scribble on.
        let mut input = command.to_vec();
        let mut response: *mut c_uchar = ptr::null_mut();
        let mut response_len: u32 = 0;
        let mut response_cap: u32 = 0;
        // SAFETY: the engine lock serialises libtpms; `input` outlives the call; libtpms
        // allocates the response buffer, which is released below with TPM_Free.
        let code = unsafe {
            ffi::TPMLIB_Process(
                &mut response,
                &mut response_len,
                &mut response_cap,
                input.as_mut_ptr(),
                input.len() as u32,
            )
        };
        let copied = if response.is_null() {
            None
        } else if response_len > response_cap {
            Some(Err(TpmError::BadResponse(response_len as usize)))
        } else {
            // SAFETY: libtpms wrote `response_len` bytes into a buffer of `response_cap`.
            let bytes = unsafe { std::slice::from_raw_parts(response, response_len as usize) };
            Some(Ok(bytes.to_vec()))
        };
        if !response.is_null() {
            // SAFETY: the buffer came from libtpms's allocator.
            unsafe { ffi::TPM_Free(response) };
        }
        saved_of(&saved).nv_commits += std::mem::take(&mut nv_store().commits);
        check("Process", code)?;
        copied.unwrap_or(Err(TpmError::BadResponse(0)))
    }

    /// `_TPM_Init` of the loaded TPM `id`: stop and start libtpms keeping only NV.
    pub fn power_cycle_loaded(&mut self, id: u64) -> Result<(), TpmError> {
        let saved = self.loaded_saved(id)?;
        // SAFETY: under the engine lock; the TPM is running.
        unsafe { ffi::TPMLIB_Terminate() };
        nv_store().volatile = None;
        // SAFETY: as above, libtpms stopped.
        let result = check("MainInit", unsafe { ffi::TPMLIB_MainInit() });
        saved_of(&saved).nv_commits += std::mem::take(&mut nv_store().commits);
        if result.is_err() {
            // Nothing runs now; keep the NV so a later activate can try again.
            self.loaded = None;
            // SAFETY: as above.
            unsafe { ffi::TPMLIB_Terminate() };
            let mut store = nv_store();
            saved_of(&saved).permanent = store.permanent.take().unwrap_or_default();
        }
        result
    }

    /// A copy of the loaded TPM's "permall" blob.
    pub fn loaded_permanent(&self, id: u64) -> Option<Vec<u8>> {
        if !self.is_loaded(id) {
            return None;
        }
        nv_store().permanent.clone()
    }

    /// The TPM `id` goes away: if libtpms runs it, stop libtpms and forget its blobs.
    pub fn release(&mut self, id: u64) {
        if !self.is_loaded(id) {
            return;
        }
        // SAFETY: under the engine lock; the TPM is running.
        unsafe { ffi::TPMLIB_Terminate() };
        *nv_store() = NvStore::default();
        self.loaded = None;
        debug!(tpm = id, "tpm released");
    }

    fn loaded_saved(&self, id: u64) -> Result<Arc<Mutex<Saved>>, TpmError> {
        match &self.loaded {
            Some(loaded) if loaded.id == id => Ok(Arc::clone(&loaded.saved)),
            // Callers activate first; reaching this is a bug in this crate, not bad input.
            _ => Err(TpmError::Library {
                call: "not loaded",
                code: ffi::TPM_FAIL,
            }),
        }
    }
}

fn get_volatile_state() -> Result<Vec<u8>, TpmError> {
    let mut buffer: *mut c_uchar = ptr::null_mut();
    let mut len: u32 = 0;
    // SAFETY: caller holds the engine lock; libtpms allocates `buffer`.
    let code = unsafe { ffi::TPMLIB_GetState(ffi::TPMLIB_STATE_VOLATILE, &mut buffer, &mut len) };
    if buffer.is_null() {
        check("GetState(volatile)", code)?;
        return Err(TpmError::Library {
            call: "GetState(volatile)",
            code: ffi::TPM_FAIL,
        });
    }
    // SAFETY: libtpms returned `len` bytes at `buffer`.
    let blob = unsafe { std::slice::from_raw_parts(buffer, len as usize) }.to_vec();
    // SAFETY: allocated by libtpms.
    unsafe { ffi::TPM_Free(buffer) };
    check("GetState(volatile)", code)?;
    Ok(blob)
}

// ---- callbacks: libtpms calls these from inside TPMLIB_* while the engine lock is held ----

fn name_of(name: *const c_char) -> &'static [u8] {
    if name.is_null() {
        return b"";
    }
    // SAFETY: libtpms passes NUL-terminated constant names ("permall", ...).
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    if name == ffi::PERMANENT_ALL_NAME {
        ffi::PERMANENT_ALL_NAME
    } else if name == ffi::VOLATILE_STATE_NAME {
        ffi::VOLATILE_STATE_NAME
    } else {
        b""
    }
}

unsafe extern "C" fn nvram_init() -> ffi::TpmResult {
    ffi::TPM_SUCCESS
}

unsafe extern "C" fn nvram_loaddata(
    data: *mut *mut c_uchar,
    length: *mut u32,
    _tpm_number: u32,
    name: *const c_char,
) -> ffi::TpmResult {
    if data.is_null() || length.is_null() {
        return ffi::TPM_FAIL;
    }
    let mut store = nv_store();
    let blob = match name_of(name) {
        n if n == ffi::PERMANENT_ALL_NAME => store.permanent.clone(),
        n if n == ffi::VOLATILE_STATE_NAME => store.volatile.take(),
        _ => None,
    };
    // TPM_RETRY is libtpms's "nothing stored": for "permall" it manufactures a fresh TPM.
    let Some(blob) = blob else {
        return ffi::TPM_RETRY;
    };
    let Ok(len) = u32::try_from(blob.len()) else {
        return ffi::TPM_FAIL;
    };
    let mut buffer: *mut c_uchar = ptr::null_mut();
    // SAFETY: libtpms later free()s this buffer, so it comes from its allocator.
    if unsafe { ffi::TPM_Malloc(&mut buffer, len.max(1)) } != ffi::TPM_SUCCESS || buffer.is_null() {
        return ffi::TPM_FAIL;
    }
    // SAFETY: `buffer` holds at least `len` bytes; `data` and `length` are valid out pointers.
    unsafe {
        ptr::copy_nonoverlapping(blob.as_ptr(), buffer, blob.len());
        *data = buffer;
        *length = len;
    }
    ffi::TPM_SUCCESS
}

unsafe extern "C" fn nvram_storedata(
    data: *const c_uchar,
    length: u32,
    _tpm_number: u32,
    name: *const c_char,
) -> ffi::TpmResult {
    if data.is_null() && length != 0 {
        return ffi::TPM_FAIL;
    }
    let blob = if length == 0 {
        Vec::new()
    } else {
        // SAFETY: libtpms passes `length` readable bytes.
        unsafe { std::slice::from_raw_parts(data, length as usize) }.to_vec()
    };
    let mut store = nv_store();
    match name_of(name) {
        n if n == ffi::PERMANENT_ALL_NAME => {
            store.permanent = Some(blob);
            store.commits += 1;
        }
        n if n == ffi::VOLATILE_STATE_NAME => store.volatile = Some(blob),
        // "savestate" and unknown names are not kept: Shutdown(STATE) lives in permall.
        _ => {}
    }
    ffi::TPM_SUCCESS
}

unsafe extern "C" fn nvram_deletename(
    _tpm_number: u32,
    name: *const c_char,
    must_exist: ffi::TpmBool,
) -> ffi::TpmResult {
    let mut store = nv_store();
    let existed = match name_of(name) {
        n if n == ffi::PERMANENT_ALL_NAME => store.permanent.take().is_some(),
        n if n == ffi::VOLATILE_STATE_NAME => store.volatile.take().is_some(),
        _ => false,
    };
    if must_exist != 0 && !existed {
        ffi::TPM_FAIL
    } else {
        ffi::TPM_SUCCESS
    }
}

unsafe extern "C" fn io_init() -> ffi::TpmResult {
    ffi::TPM_SUCCESS
}

/// Every command runs at locality 0, as the OP-TEE fTPM interface carries no locality.
unsafe extern "C" fn io_getlocality(
    locality: *mut ffi::TpmModifierIndicator,
    _tpm_number: u32,
) -> ffi::TpmResult {
    if locality.is_null() {
        return ffi::TPM_FAIL;
    }
    // SAFETY: a valid out pointer from libtpms.
    unsafe { *locality = 0 };
    ffi::TPM_SUCCESS
}

unsafe extern "C" fn io_getphysicalpresence(
    physical_presence: *mut ffi::TpmBool,
    _tpm_number: u32,
) -> ffi::TpmResult {
    if physical_presence.is_null() {
        return ffi::TPM_FAIL;
    }
    // SAFETY: a valid out pointer from libtpms.
    unsafe { *physical_presence = 0 };
    ffi::TPM_SUCCESS
}
