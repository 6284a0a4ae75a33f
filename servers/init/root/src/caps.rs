//! The capabilities init holds for the whole life of the stack and hands out per incarnation:
//! the RAM file and the consumer listeners. (The way to the secure world is the control
//! channel, `tee_rt::secure_link`.)
//!
//! Listeners and the RAM file are created once and survive kexecs (a new tpmd gets the same
//! listening socket, so consumers keep one address). A conduit is obtained afresh for every
//! teed incarnation and given to that teed alone.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use tee_proto::grants::SwtpmGrants;
use tee_proto::lifecycle::{ClientWindows, ServerKind};
use tee_rt::window::create_window;

use crate::paths::StatePaths;

/// What could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("ram file {}: {source}", path.display())]
    Ram {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the {name}: {source}")]
    Window {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds `path`, replacing a stale socket file an earlier run left behind.
pub fn bind_fresh(path: &Path) -> Result<UnixListener, CapsError> {
    let listen_error = |source| CapsError::Listen {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(listen_error(error)),
    }
    UnixListener::bind(path).map_err(listen_error)
}

/// A client's consumer listener and its swtpm listeners, if any.
pub type ClientListeners<'a> = (BorrowedFd<'a>, Option<SwtpmGrants<BorrowedFd<'a>>>);

/// The clients' windows (sealed memory objects), created once for the life of the stack.
#[derive(Debug)]
pub struct Windows {
    pub tpmd: OwnedFd,
    pub bnxtd: OwnedFd,
}

#[derive(Debug)]
pub struct Capabilities {
    ram: File,
    tpm: UnixListener,
    bnxt: UnixListener,
    /// The swtpm data and control listeners, when the stack serves the swtpm protocol.
    swtpm: Option<SwtpmGrants<UnixListener>>,
    /// Each client's window of RAM: the only RAM a client maps.
    pub windows: Windows,
}

impl Capabilities {
    /// Opens (or creates, sparse) the RAM file, creates the clients' windows of `windows`'
    /// sizes and binds the consumer listeners.
    pub fn create(
        paths: &StatePaths,
        ram_size: u64,
        windows: &ClientWindows,
        swtpm: bool,
    ) -> Result<Self, CapsError> {
        let window = |name: &'static str, len: u64| {
            create_window(name, len).map_err(|source| CapsError::Window { name, source })
        };
        let windows = Windows {
            tpmd: window("tpmd-window", windows.tpmd.len)?,
            bnxtd: window("bnxtd-window", windows.bnxtd.len)?,
        };
        let ram_path = paths.ram();
        let ram_error = |source| CapsError::Ram {
            path: ram_path.clone(),
            source,
        };
        let ram = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&ram_path)
            .map_err(ram_error)?;
        // Never shrink: the secure world maps the same file.
        if ram.metadata().map_err(ram_error)?.len() < ram_size {
            ram.set_len(ram_size).map_err(ram_error)?;
        }
        let swtpm = if swtpm {
            Some(SwtpmGrants {
                data: bind_fresh(&paths.swtpm_sock())?,
                control: bind_fresh(&paths.swtpm_ctrl())?,
            })
        } else {
            None
        };
        Ok(Capabilities {
            ram,
            tpm: bind_fresh(&paths.tpm_sock())?,
            bnxt: bind_fresh(&paths.bnxt_sock())?,
            swtpm,
            windows,
        })
    }

    pub fn ram(&self) -> BorrowedFd<'_> {
        self.ram.as_fd()
    }

    /// The window of client `kind`; `None` for teed.
    pub fn window(&self, kind: ServerKind) -> Option<BorrowedFd<'_>> {
        match kind {
            ServerKind::Teed => None,
            ServerKind::Tpmd => Some(self.windows.tpmd.as_fd()),
            ServerKind::Bnxtd => Some(self.windows.bnxtd.as_fd()),
        }
    }

    /// The listener a client serves its consumers on, and tpmd's swtpm listeners when the
    /// stack serves the swtpm protocol; `None` for teed, which serves no consumers.
    pub fn consumer_listeners(&self, kind: ServerKind) -> Option<ClientListeners<'_>> {
        match kind {
            ServerKind::Teed => None,
            ServerKind::Tpmd => Some((
                self.tpm.as_fd(),
                self.swtpm.as_ref().map(|s| SwtpmGrants {
                    data: s.data.as_fd(),
                    control: s.control.as_fd(),
                }),
            )),
            ServerKind::Bnxtd => Some((self.bnxt.as_fd(), None)),
        }
    }
}
