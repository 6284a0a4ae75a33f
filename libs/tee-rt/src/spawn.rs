//! Starting a server with its lifecycle endpoint, and finding that endpoint inside the server.
//!
//! The contract: a server inherits exactly one descriptor besides stdin, stdout and stderr, its
//! lifecycle endpoint, whose number is in [`LIFECYCLE_FD_ENV`]. Everything else arrives later as
//! attachments of lifecycle frames, so a server never opens paths itself.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{getsockopt, sockopt, SockType};

use crate::endpoint::Endpoint;

/// Environment variable naming the inherited lifecycle descriptor.
pub const LIFECYCLE_FD_ENV: &str = "TEESYS_LIFECYCLE_FD";

/// Environment variable naming the inherited end of the secure world's control channel (in the
/// secure-world process and in init; the launcher holds neither end afterwards).
pub const SECURE_CONTROL_FD_ENV: &str = "TEESYS_SECURE_CONTROL_FD";

/// Failures to take the lifecycle endpoint in a server.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The variable is not set: the process was not started by [`spawn_server`].
    #[error("no inherited endpoint: {LIFECYCLE_FD_ENV} or {SECURE_CONTROL_FD_ENV} is not set")]
    Missing,
    /// The variable does not hold a descriptor number above stderr.
    #[error("inherited endpoint variable holds {value:?}, not a descriptor number above 2")]
    NotANumber {
        /// What the variable held.
        value: String,
    },
    /// No descriptor with that number is open.
    #[error("lifecycle descriptor {fd} is not open")]
    NotOpen {
        /// The number.
        fd: RawFd,
    },
    /// The descriptor is not a `SOCK_SEQPACKET` socket (it was closed here).
    #[error("lifecycle descriptor {fd} is not a seqpacket socket")]
    NotSeqpacket {
        /// The number.
        fd: RawFd,
    },
    /// The endpoint was already taken by an earlier call.
    #[error("the lifecycle endpoint was already taken")]
    AlreadyTaken,
    /// Inspecting the descriptor failed.
    #[error("lifecycle descriptor i/o failed")]
    Io(#[from] io::Error),
}

/// Serialises the window in which a handed-over descriptor is inheritable, so a concurrent
/// spawn in this process cannot pick it up too.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// Set once a server took its lifecycle endpoint, so the descriptor is owned only once.
static LIFECYCLE_TAKEN: AtomicBool = AtomicBool::new(false);

/// Likewise for the secure world's control channel.
static SECURE_CONTROL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Starts `program` with exactly one inherited descriptor: the child's lifecycle endpoint (its
/// number in [`LIFECYCLE_FD_ENV`]). Everything else this process holds is close-on-exec (what
/// it inherited itself without that flag is marked so here) and does not leak. stdin, stdout and
/// stderr are inherited unless the caller's process redirects them. The parent's copy of
/// `lifecycle` is closed before returning.
pub fn spawn_server(
    program: &Path,
    args: &[&OsStr],
    lifecycle: Endpoint,
    envs: &[(&str, &str)],
) -> io::Result<Child> {
    let mut command = Command::new(program);
    command.args(args).envs(envs.iter().copied());
    spawn_with_endpoint(command, LIFECYCLE_FD_ENV, lifecycle)
}

/// Runs `command` so that the child inherits `endpoint`, and nothing else this process holds,
/// under the number named in its environment variable `env`. How a launcher hands the secure
/// world and init the two ends of their control channel, and init a server its lifecycle
/// endpoint: a capability passed down, never a path. The parent's copy is closed.
pub fn spawn_with_endpoint(
    mut command: Command,
    env: &str,
    endpoint: Endpoint,
) -> io::Result<Child> {
    let _window = SPAWN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // dup(2) never sets close-on-exec, so this copy (and only this one) survives the exec.
    let inheritable = nix::unistd::dup(endpoint.as_fd()).map_err(io::Error::from)?;
    // Descriptors this process inherited without close-on-exec would pass on too.
    seal_descriptors(inheritable.as_raw_fd());
    let number = inheritable.as_raw_fd().to_string();
    let child = command.env(env, &number).spawn();
    drop(inheritable);
    drop(endpoint);
    let child = child?;
    tracing::debug!(pid = child.id(), env, fd = %number, "spawned with an endpoint");
    Ok(child)
}

/// Marks every open descriptor above stderr close-on-exec, except `keep`.
fn seal_descriptors(keep: RawFd) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        tracing::warn!("/proc/self/fd unreadable; inherited descriptors may leak to children");
        return;
    };
    let numbers: Vec<RawFd> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in numbers.into_iter().filter(|fd| *fd > 2 && *fd != keep) {
        // SAFETY: borrowed for one fcntl call only. The number was listed as open; should it
        // be closed meanwhile, fcntl fails with EBADF, and should it be reused, marking the new
        // descriptor close-on-exec is what this function wants for every descriptor anyway.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(flags) = fcntl(borrowed, FcntlArg::F_GETFD) else {
            continue;
        };
        let flags = FdFlag::from_bits_retain(flags);
        if !flags.contains(FdFlag::FD_CLOEXEC) {
            tracing::debug!(fd, "inherited descriptor made close-on-exec");
            let _ = fcntl(borrowed, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC));
        }
    }
}

/// In a server: takes the lifecycle endpoint init gave it, and makes it close-on-exec so it
/// does not leak further.
pub fn lifecycle_from_env() -> Result<Endpoint, SpawnError> {
    take_lifecycle(std::env::var(LIFECYCLE_FD_ENV).ok(), &LIFECYCLE_TAKEN)
}

/// In the secure world or in init: takes the end of the secure world's control channel the
/// launcher handed down ([`SECURE_CONTROL_FD_ENV`]), close-on-exec from here on.
pub fn secure_control_from_env() -> Result<Endpoint, SpawnError> {
    take_lifecycle(
        std::env::var(SECURE_CONTROL_FD_ENV).ok(),
        &SECURE_CONTROL_TAKEN,
    )
}

/// [`lifecycle_from_env`] with the variable's value and the taken flag passed in.
fn take_lifecycle(value: Option<String>, taken: &AtomicBool) -> Result<Endpoint, SpawnError> {
    let value = value.ok_or(SpawnError::Missing)?;
    let fd = parse_fd(&value)?;
    // /proc tells whether the number is open without touching a descriptor we do not own.
    if std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
        return Err(SpawnError::NotOpen { fd });
    }
    if taken.swap(true, Ordering::SeqCst) {
        return Err(SpawnError::AlreadyTaken);
    }
    // SAFETY: the number is open (checked above), the spawn contract makes it this process's
    // lifecycle endpoint with no other owner, and `taken` lets only one call take it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match getsockopt(&owned, sockopt::SockType) {
        Ok(SockType::SeqPacket) => {}
        _ => return Err(SpawnError::NotSeqpacket { fd }),
    }
    fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    Ok(Endpoint::from_fd(owned))
}

fn parse_fd(value: &str) -> Result<RawFd, SpawnError> {
    match value.trim().parse::<RawFd>() {
        Ok(fd) if fd > 2 => Ok(fd),
        _ => Err(SpawnError::NotANumber {
            value: value.to_owned(),
        }),
    }
}

/// Path of a sibling binary of the current executable. From a test executable (which lives in
/// `target/<profile>/deps/`) the binaries one level up are found as well.
pub fn sibling_binary(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "executable has no directory"))?;
    let mut tried = vec![dir.join(name)];
    if dir.file_name() == Some(OsStr::new("deps")) {
        if let Some(profile_dir) = dir.parent() {
            tried.push(profile_dir.join(name));
        }
    }
    if let Some(found) = tried.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    let listed: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "binary `{name}` not found (tried {}); build the workspace binaries first \
             (`cargo build --workspace --bins`, which `cargo xtask test` does)",
            listed.join(", ")
        ),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
