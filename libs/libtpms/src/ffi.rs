//! The few libtpms 0.9 C entry points this crate uses, declared by hand from
//! `libtpms/tpm_library.h` and `libtpms/tpm_memory.h` (there is no -sys crate).
//!
//! Every function here touches libtpms's process-global state; callers hold the engine lock.

use std::ffi::{c_char, c_int, c_uchar};

/// `TPM_RESULT`: a libtpms library result (not a TPM 2.0 response code).
pub type TpmResult = u32;
/// `TPM_MODIFIER_INDICATOR`: the locality.
pub type TpmModifierIndicator = u32;
/// `TPM_BOOL`.
pub type TpmBool = c_uchar;

/// `TPM_SUCCESS`.
pub const TPM_SUCCESS: TpmResult = 0;
/// `TPM_FAIL`.
pub const TPM_FAIL: TpmResult = 9;
/// `TPM_RETRY`: from `tpm_nvram_loaddata`, "nothing stored under that name".
pub const TPM_RETRY: TpmResult = 0x800;

/// `TPMLIB_TPM_VERSION_2` of `enum TPMLIB_TPMVersion`.
pub const TPMLIB_TPM_VERSION_2: c_int = 1;

/// `TPMLIB_STATE_VOLATILE` of `enum TPMLIB_StateType`.
pub const TPMLIB_STATE_VOLATILE: c_int = 1 << 1;

/// NV name of the permanent state blob (`TPM_PERMANENT_ALL_NAME`).
pub const PERMANENT_ALL_NAME: &[u8] = b"permall";
/// NV name of a full RAM snapshot, loaded by `_TPM_Init` to resume (`TPM_VOLATILESTATE_NAME`).
pub const VOLATILE_STATE_NAME: &[u8] = b"volatilestate";

/// `struct libtpms_callbacks`; libtpms copies it at registration.
#[repr(C)]
pub struct LibtpmsCallbacks {
    pub size_of_struct: c_int,
    pub tpm_nvram_init: Option<unsafe extern "C" fn() -> TpmResult>,
    pub tpm_nvram_loaddata: Option<
        unsafe extern "C" fn(
            data: *mut *mut c_uchar,
            length: *mut u32,
            tpm_number: u32,
            name: *const c_char,
        ) -> TpmResult,
    >,
    pub tpm_nvram_storedata: Option<
        unsafe extern "C" fn(
            data: *const c_uchar,
            length: u32,
            tpm_number: u32,
            name: *const c_char,
        ) -> TpmResult,
    >,
    pub tpm_nvram_deletename: Option<
        unsafe extern "C" fn(
            tpm_number: u32,
            name: *const c_char,
            must_exist: TpmBool,
        ) -> TpmResult,
    >,
    pub tpm_io_init: Option<unsafe extern "C" fn() -> TpmResult>,
    pub tpm_io_getlocality: Option<
        unsafe extern "C" fn(locality: *mut TpmModifierIndicator, tpm_number: u32) -> TpmResult,
    >,
    pub tpm_io_getphysicalpresence:
        Option<unsafe extern "C" fn(physical_presence: *mut TpmBool, tpm_number: u32) -> TpmResult>,
}

extern "C" {
    pub fn TPMLIB_GetVersion() -> u32;
    pub fn TPMLIB_ChooseTPMVersion(version: c_int) -> TpmResult;
    pub fn TPMLIB_RegisterCallbacks(callbacks: *mut LibtpmsCallbacks) -> TpmResult;
    pub fn TPMLIB_MainInit() -> TpmResult;
    pub fn TPMLIB_Terminate();
    pub fn TPMLIB_Process(
        resp_buffer: *mut *mut c_uchar,
        resp_size: *mut u32,
        resp_buf_size: *mut u32,
        command: *mut c_uchar,
        command_size: u32,
    ) -> TpmResult;
    pub fn TPMLIB_GetState(
        state_type: c_int,
        buffer: *mut *mut c_uchar,
        len: *mut u32,
    ) -> TpmResult;
    /// libtpms `free()`s what `tpm_nvram_loaddata` hands it, so that memory must come from here.
    pub fn TPM_Malloc(buffer: *mut *mut c_uchar, size: u32) -> TpmResult;
    pub fn TPM_Free(buffer: *mut c_uchar);
}
