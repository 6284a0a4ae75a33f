//! The Redox-only shell, compiled only for `target_os = "redox"`: everything here needs relibc
//! and the Redox kernel, so none of it runs on the host; `cargo xtask test` type-checks it for
//! x86_64-unknown-redox and aarch64-unknown-redox. It is kept to what cannot be plain code:
//! the `SchemeSync` shim over a [`crate::SchemeAdapter`], the event loop, and the start-up
//! calls (logging, identity, physical memory, the null namespace, `INIT_NOTIFY`).

pub mod client;
mod runtime;
mod shim;

use std::fmt;
use std::process::ExitCode;
use std::ptr::NonNull;

use libredox::flag;
use libredox::Fd;
use tee_proto::lifecycle::RamWindow;

use crate::notify::{self, INIT_NOTIFY_ENV, READY_BYTE};
use crate::policy::DaemonPolicy;

pub use self::runtime::{Daemon, Runtime};
pub use self::shim::Shim;

/// A start-up step that failed: what was being done, and the errno or reason.
#[derive(Debug)]
pub struct StartError {
    pub step: &'static str,
    pub reason: String,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.reason)
    }
}

impl std::error::Error for StartError {}

/// Maps any displayable failure of `step` into a [`StartError`].
pub fn failed<E: fmt::Display>(step: &'static str) -> impl FnOnce(E) -> StartError {
    move |error| StartError {
        step,
        reason: error.to_string(),
    }
}

/// Logs to stderr, which Redox's init connects to the `log` scheme; `RUST_LOG` names the level
/// (`error` .. `trace`, default `info`). Payloads are never logged.
pub fn logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse::<tracing::level_filters::LevelFilter>().ok())
        .unwrap_or(tracing::level_filters::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Drops from root to the daemon's own uid and gid (tpmd, bnxtd), so that teed knows it by
/// them; group first, while the process may still change it.
pub fn become_identity(policy: &DaemonPolicy) -> Result<(), StartError> {
    if policy.uid == 0 {
        return Ok(());
    }
    // SAFETY: plain relibc calls with integer arguments.
    let group = unsafe { libc::setresgid(policy.gid, policy.gid, policy.gid) };
    if group != 0 {
        return Err(failed("setresgid")(std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    let user = unsafe { libc::setresuid(policy.uid, policy.uid, policy.uid) };
    if user != 0 {
        return Err(failed("setresuid")(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Enters the null namespace: from here on the daemon can open nothing new, so what it opened
/// is all it will ever reach (`policy`).
pub fn enter_null_namespace() -> Result<(), StartError> {
    libredox::call::setrens(0, 0)
        .map(|_| ())
        .map_err(failed("setrens(0, 0)"))
}

/// Tells init the daemon serves: one byte on the `INIT_NOTIFY` pipe, which is then closed.
/// Started by hand (no `INIT_NOTIFY`), there is no one to tell.
pub fn notify_ready() -> Result<(), StartError> {
    let value = std::env::var(INIT_NOTIFY_ENV).ok();
    let Some(fd) = notify::notify_fd(value.as_deref()).map_err(failed("INIT_NOTIFY"))? else {
        return Ok(());
    };
    let pipe = Fd::new(fd);
    pipe.write(&READY_BYTE)
        .map_err(failed("write INIT_NOTIFY"))?;
    Ok(())
}

/// Maps `window` of physical memory, cacheable (OP-TEE maps non-secure shared memory as normal
/// cacheable memory), through the kernel's `memory` scheme; root only. The mapping stays for
/// the life of the process.
pub fn map_physical(window: RamWindow) -> Result<(NonNull<u8>, usize), StartError> {
    let len = usize::try_from(window.len).map_err(failed("window length"))?;
    let memory = Fd::open(
        "/scheme/memory/physical@wb",
        flag::O_RDWR | flag::O_CLOEXEC,
        0,
    )
    .map_err(failed("open /scheme/memory/physical@wb"))?;
    map_shared(&memory, window.base, len, "mmap physical memory")
}

/// Maps `len` bytes at `offset` of `fd`, shared and writable.
pub fn map_shared(
    fd: &Fd,
    offset: u64,
    len: usize,
    step: &'static str,
) -> Result<(NonNull<u8>, usize), StartError> {
    // SAFETY: a fresh mapping at an address the kernel chooses; nothing else refers to it.
    let addr = unsafe {
        libredox::call::mmap(libredox::call::MmapArgs {
            addr: core::ptr::null_mut(),
            length: len,
            prot: flag::PROT_READ | flag::PROT_WRITE,
            flags: flag::MAP_SHARED,
            fd: fd.raw(),
            offset,
        })
    }
    .map_err(failed(step))?;
    let ptr = NonNull::new(addr.cast::<u8>()).ok_or(StartError {
        step,
        reason: "null mapping".into(),
    })?;
    Ok((ptr, len))
}

/// The exit status of a daemon that could not start.
pub fn start_failed(daemon: &str, error: &StartError) -> ExitCode {
    tracing::error!(daemon, %error, "could not start");
    ExitCode::FAILURE
}
