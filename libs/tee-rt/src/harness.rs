//! Process-test helpers: a secure-world process with its RAM file, and servers started the way
//! init starts them. Every wait is bounded and every child is killed when its handle drops, so a
//! failing test never leaves processes behind or hangs.
//!
//! Binaries are found with [`crate::spawn::sibling_binary`]; build them first
//! (`cargo build --workspace --bins`, as `cargo xtask test` does).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tee_proto::lifecycle::RamWindow;

use crate::endpoint::{Endpoint, EndpointError, ReceivedFrame};
use crate::event::{Interest, PollSet, Token};
use crate::ram::{RamError, RamFile, DEFAULT_RAM_BASE};
use crate::spawn::{sibling_binary, spawn_server};

/// Longest a harness waits for a process to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Top of RAM kept out of the frame window: teed's journal lives there, as in the simulator.
pub const CARVE_OUT: u64 = 1 << 20;
/// Size of teed's journal window.
pub const JOURNAL_BYTES: u64 = 128 << 10;

/// Failures of a harness wait.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("nothing arrived within {0:?}")]
    TimedOut(Duration),
    #[error("the peer closed the endpoint")]
    Closed,
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh directory named after `tag`, this process and a counter.
    pub fn new(tag: &str) -> io::Result<ScratchDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("teesys-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills and reaps a child when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(Some(status));
            }
            if started.elapsed() >= timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running secure-world process, its conduit socket and its RAM file.
#[derive(Debug)]
pub struct SecureWorldProcess {
    // Declared first: killed before the directory holding its socket goes.
    child: KillOnDrop,
    conduit: PathBuf,
    ram: PathBuf,
    ram_size: u64,
    _dir: ScratchDir,
}

impl SecureWorldProcess {
    /// Starts the sibling `secure-world` binary with a RAM of `ram_size` bytes and waits until
    /// its conduit socket exists.
    pub fn start(tag: &str, ram_size: u64) -> io::Result<SecureWorldProcess> {
        let dir = ScratchDir::new(tag)?;
        let conduit = dir.path().join("smc.sock");
        let ram = dir.path().join("ram");
        let child = Command::new(sibling_binary("secure-world")?)
            .arg("--conduit")
            .arg(&conduit)
            .arg("--ram")
            .arg(&ram)
            .arg("--ram-size")
            .arg(ram_size.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()?;
        let mut child = KillOnDrop(child);
        let started = Instant::now();
        while !conduit.exists() {
            if let Some(status) = child.0.try_wait()? {
                return Err(io::Error::other(format!("secure world exited: {status}")));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "secure world did not come up",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SecureWorldProcess {
            child,
            conduit,
            ram,
            ram_size,
            _dir: dir,
        })
    }

    /// A new conduit connection (what init hands teed).
    pub fn connect_conduit(&self) -> io::Result<UnixStream> {
        UnixStream::connect(&self.conduit)
    }

    /// The RAM file opened read-write (what init hands every server).
    pub fn open_ram(&self) -> io::Result<OwnedFd> {
        let file = OpenOptions::new().read(true).write(true).open(&self.ram)?;
        Ok(OwnedFd::from(file))
    }

    /// A mapping of the RAM file, to check what the servers and the secure world wrote.
    pub fn map_ram(&self) -> Result<RamFile, RamError> {
        RamFile::open_at(&self.ram, DEFAULT_RAM_BASE, self.ram_size)
    }

    /// The frames teed may allocate from: all RAM below the carve-out.
    pub fn frame_window(&self) -> RamWindow {
        RamWindow {
            base: DEFAULT_RAM_BASE,
            len: self.ram_size.saturating_sub(CARVE_OUT),
        }
    }

    /// teed's journal, at the start of the carve-out.
    pub fn journal_window(&self) -> RamWindow {
        RamWindow {
            base: DEFAULT_RAM_BASE + self.ram_size.saturating_sub(CARVE_OUT),
            len: JOURNAL_BYTES,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A server started as init starts it, with init's side of its lifecycle endpoint.
#[derive(Debug)]
pub struct ServerProcess {
    pub child: KillOnDrop,
    /// init's side; dropping it tells the server init is gone.
    pub lifecycle: Option<Endpoint>,
}

impl ServerProcess {
    /// Spawns `program` with a fresh lifecycle endpoint and `envs`.
    pub fn spawn(program: &Path, envs: &[(&str, &str)]) -> io::Result<ServerProcess> {
        let (init_side, server_side) = Endpoint::pair()?;
        let child = spawn_server(program, &[], server_side, envs)?;
        Ok(ServerProcess {
            child: KillOnDrop(child),
            lifecycle: Some(init_side),
        })
    }

    /// init's side of the lifecycle endpoint.
    pub fn lifecycle(&self) -> io::Result<&Endpoint> {
        self.lifecycle
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "lifecycle closed"))
    }

    /// Closes init's side of the lifecycle endpoint.
    pub fn close_lifecycle(&mut self) {
        self.lifecycle = None;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Waits up to `timeout` for one frame on `endpoint`.
pub fn recv_frame_within<T: DeserializeOwned>(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<ReceivedFrame<T>, HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut set = PollSet::new();
        set.register(endpoint.as_fd(), Token(0), Interest::READABLE);
        let ready = set.wait(Some(left))?;
        if ready.is_empty() {
            if left.is_zero() {
                return Err(HarnessError::TimedOut(timeout));
            }
            continue;
        }
        return endpoint.recv_frame()?.ok_or(HarnessError::Closed);
    }
}

/// The descriptors process `pid` holds, as `(number, link target)`, sorted by number.
pub fn open_descriptors(pid: u32) -> io::Result<Vec<(i32, String)>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Some(number) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let target = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        fds.push((number, target));
    }
    fds.sort();
    Ok(fds)
}
