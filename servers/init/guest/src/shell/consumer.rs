//! The consumer calls the launcher asks for (a TPM command for tpmd, a firmware load or the
//! whole crash dump from bnxtd), each on a thread of its own so init's loop never waits on a
//! server: the answer comes back through a channel and a pipe that wakes the loop.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use bnxt_image::{checksum, coredump_checksum};
use tee_proto::bnxt::{BnxtRequest, BnxtResponse, COREDUMP_CHUNK_MAX};
use tee_proto::tpm::{TpmRequest, TpmResponse};
use teesys_guest::ctl::{from_hex, to_hex, GuestEvent};
use teesys_root::wire::FramedStream;
use teesys_root::StatePaths;

/// Bound on each consumer read and write.
const CALL_BOUND: Duration = Duration::from_secs(20);

/// One consumer request.
#[derive(Debug, Clone)]
pub enum Call {
    Tpm(String),
    BnxtLoad,
    Coredump,
}

pub struct Consumers {
    paths: StatePaths,
    done_tx: Sender<GuestEvent>,
    done_rx: Receiver<GuestEvent>,
    wake_read: OwnedFd,
    wake_write: OwnedFd,
}

impl Consumers {
    pub fn new(paths: StatePaths) -> std::io::Result<Consumers> {
        let (done_tx, done_rx) = channel();
        let (wake_read, wake_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(Consumers {
            paths,
            done_tx,
            done_rx,
            wake_read,
            wake_write,
        })
    }

    /// The descriptor that becomes readable when an answer is ready.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    /// Starts `call`; its reply (to `id`) comes from [`Consumers::finished`].
    pub fn start(&self, id: u32, call: Call) {
        let paths = self.paths.clone();
        let done = self.done_tx.clone();
        let wake = self.wake_write.try_clone();
        let spawned = std::thread::Builder::new()
            .name("consumer".into())
            .spawn(move || {
                let (ok, detail, hex) = match run(&paths, call) {
                    Ok((detail, hex)) => (true, detail, hex),
                    Err(detail) => (false, detail, None),
                };
                let _ = done.send(GuestEvent::Reply {
                    id,
                    ok,
                    detail,
                    hex,
                });
                if let Ok(wake) = wake {
                    let _ = nix::unistd::write(&wake, &[1]);
                }
            });
        if let Err(error) = spawned {
            let _ = self.done_tx.send(GuestEvent::Reply {
                id,
                ok: false,
                detail: format!("no thread: {error}"),
                hex: None,
            });
        }
    }

    /// The replies that are ready.
    pub fn finished(&self) -> Vec<GuestEvent> {
        let mut drain = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake_read, &mut drain), Ok(n) if n > 0) {}
        self.done_rx.try_iter().collect()
    }
}

/// Carries out one call: `Ok((detail, response hex))` or `Err(detail)`.
fn run(paths: &StatePaths, call: Call) -> Result<(String, Option<String>), String> {
    match call {
        Call::Tpm(hex) => {
            let command = from_hex(&hex).ok_or("TPM command is not hex")?;
            let mut bytes = heapless::Vec::new();
            bytes
                .extend_from_slice(&command)
                .map_err(|_| "TPM command too large")?;
            let mut tpm = FramedStream::connect(&paths.tpm_sock(), CALL_BOUND)
                .map_err(|e| format!("tpmd: {e}"))?;
            match tpm
                .call::<_, TpmResponse>(TpmRequest::Command { bytes })
                .map_err(|e| format!("tpmd: {e}"))?
            {
                TpmResponse::Response { bytes } => {
                    Ok(("tpm response".into(), Some(to_hex(&bytes))))
                }
                TpmResponse::Error(error) => Err(format!("tpmd: {error}")),
            }
        }
        Call::BnxtLoad => match bnxt(paths)?.call::<_, BnxtResponse>(BnxtRequest::Load) {
            Ok(BnxtResponse::Loaded) => Ok(("firmware loaded".into(), None)),
            Ok(other) => Err(format!("bnxtd: {other:?}")),
            Err(error) => Err(format!("bnxtd: {error}")),
        },
        Call::Coredump => coredump(paths),
    }
}

fn bnxt(paths: &StatePaths) -> Result<FramedStream, String> {
    FramedStream::connect(&paths.bnxt_sock(), CALL_BOUND).map_err(|e| format!("bnxtd: {e}"))
}

/// The whole dump in chunks, checked against the image the BNXT TA serves.
fn coredump(paths: &StatePaths) -> Result<(String, Option<String>), String> {
    let mut nic = bnxt(paths)?;
    let fail = |e: teesys_root::wire::CallError| format!("bnxtd: {e}");
    let len = match nic
        .call::<_, BnxtResponse>(BnxtRequest::CoredumpLen)
        .map_err(fail)?
    {
        BnxtResponse::CoredumpLen { len } => len,
        other => return Err(format!("bnxtd: {other:?}")),
    };
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    let chunk = u32::try_from(COREDUMP_CHUNK_MAX).unwrap_or(4096);
    let mut offset = 0u32;
    while offset < len {
        let size = chunk.min(len - offset);
        match nic
            .call::<_, BnxtResponse>(BnxtRequest::CopyCoredump { offset, size })
            .map_err(fail)?
        {
            BnxtResponse::Coredump { offset: at, data } if at == offset && !data.is_empty() => {
                bytes.extend_from_slice(&data);
                offset = offset.saturating_add(u32::try_from(data.len()).unwrap_or(chunk));
            }
            other => return Err(format!("bnxtd at {offset}: {other:?}")),
        }
    }
    let got = checksum(&bytes);
    let expected = coredump_checksum(0, u64::from(len));
    if expected == Some(got) {
        Ok((
            format!("{len} bytes, checksum {got:#018x} matches the image"),
            None,
        ))
    } else {
        Err(format!(
            "{len} bytes, checksum {got:#018x}, the image's {expected:?}"
        ))
    }
}
