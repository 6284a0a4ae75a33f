//! What every hosted server shell shares: waiting for init's `Hello` and its attachments,
//! mapping the RAM attachment, and how a server ends.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use nix::sys::socket::{getsockopt, sockopt, SockType};

use tee_proto::lifecycle::{InitRequest, ServerEvent};
use tee_proto::{Frame, FRAME_MAX};

use crate::endpoint::{Endpoint, EndpointError, ReceivedFrame};
use crate::ram::{RamError, RamFile, DEFAULT_RAM_BASE};

/// How a server shell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown was acknowledged, then init closed the lifecycle endpoint.
    Clean,
    /// init closed the lifecycle endpoint without a finished shutdown (init died, or never
    /// sent Hello).
    InitGone,
}

/// Process exit status when init closed the lifecycle endpoint before an acknowledged shutdown.
pub const EXIT_INIT_GONE: u8 = 3;

impl Exit {
    /// The process exit status: 0 after a clean shutdown, [`EXIT_INIT_GONE`] when init went
    /// away (failures to start or serve exit with 1).
    pub fn code(self) -> ExitCode {
        match self {
            Exit::Clean => ExitCode::SUCCESS,
            Exit::InitGone => ExitCode::from(EXIT_INIT_GONE),
        }
    }
}

/// Blocks until init's `Hello` arrives and returns it with its attachments; `Ok(None)` when init
/// closed the lifecycle endpoint first. Anything else is answered `Error(BadRequest)` (when its
/// header decodes) and its attachments are closed.
pub fn await_hello(
    lifecycle: &Endpoint,
) -> Result<Option<ReceivedFrame<InitRequest>>, EndpointError> {
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        let (len, fds) = match lifecycle.recv(&mut buf) {
            Ok(Some(packet)) => packet,
            Ok(None) => return Ok(None),
            Err(error @ (EndpointError::Truncated { .. } | EndpointError::TooManyFds { .. })) => {
                tracing::warn!(%error, "lifecycle packet refused before Hello");
                continue;
            }
            Err(error) => return Err(error),
        };
        let bytes = &buf[..len];
        match tee_proto::decode::<InitRequest>(bytes) {
            Ok(frame) if matches!(frame.body, InitRequest::Hello { .. }) => {
                return Ok(Some((frame, fds)));
            }
            Ok(frame) => {
                tracing::warn!(request = ?frame.body, "request before Hello refused");
                refuse(lifecycle, frame.header)?;
            }
            Err(error) => match tee_proto::decode_header(bytes) {
                Ok((header, _)) => {
                    tracing::warn!(%error, "malformed lifecycle frame before Hello");
                    refuse(lifecycle, header)?;
                }
                Err(_) => tracing::warn!(%error, "undecodable lifecycle packet dropped"),
            },
        }
    }
}

/// Answers a lifecycle request with `Error(BadRequest)` from a server that has no generation yet.
pub fn refuse(lifecycle: &Endpoint, request: tee_proto::Header) -> Result<(), EndpointError> {
    let frame = Frame {
        header: request.reply_to(0),
        body: ServerEvent::Error(tee_proto::WireError::BadRequest),
    };
    lifecycle.send_frame(&frame, &[])
}

/// Refuses a `Hello` whose attachments a server cannot use: logs why, answers init with
/// `Error(BadRequest)`.
pub fn refuse_hello(
    lifecycle: &Endpoint,
    hello: tee_proto::Header,
    why: &dyn std::error::Error,
) -> Result<(), EndpointError> {
    tracing::error!(error = %crate::logging::error_chain(why), "Hello refused");
    refuse(lifecycle, hello)
}

/// Takes a stream-socket attachment (the SMC conduit); anything else is refused.
pub fn stream_socket(fd: OwnedFd) -> io::Result<UnixStream> {
    match getsockopt(&fd, sockopt::SockType).map_err(io::Error::from)? {
        SockType::Stream => Ok(UnixStream::from(fd)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("expected a stream socket, got {other:?}"),
        )),
    }
}

/// Maps the RAM file attachment: the whole file, at the hosted RAM base.
pub fn map_ram(fd: OwnedFd) -> Result<RamFile, RamError> {
    RamFile::from_fd_whole(fd, DEFAULT_RAM_BASE)
}

/// Maps teed's RAM grant: hosted, the whole RAM file ([`map_ram`]); in the QEMU guest, where
/// the grant is `/dev/mem`, the one span of physical memory that covers every window `hello`
/// names (the shm frames, the clients' windows and the journal: the carve-out), and no more.
pub fn map_ram_for(fd: OwnedFd, hello: &InitRequest) -> Result<RamFile, RamError> {
    if !crate::physmem::is_dev_mem(&fd) {
        return map_ram(fd);
    }
    let span = hello_span(hello).ok_or(RamError::ZeroSize)?;
    RamFile::from_phys_grant(fd, span.base, span.len)
}

/// The smallest window covering every non-empty window of teed's `Hello`.
fn hello_span(hello: &InitRequest) -> Option<tee_proto::lifecycle::RamWindow> {
    let InitRequest::Hello {
        ram,
        journal,
        windows,
        ..
    } = hello
    else {
        return None;
    };
    let all = [*ram, *journal, windows.tpmd, windows.bnxtd];
    let mut present = all.iter().filter(|window| window.len > 0);
    let first = present.next()?;
    let (mut start, mut end) = (first.base, first.base.checked_add(first.len)?);
    for window in present {
        start = start.min(window.base);
        end = end.max(window.base.checked_add(window.len)?);
    }
    Some(tee_proto::lifecycle::RamWindow {
        base: start,
        len: end - start,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tee_proto::lifecycle::{BootInfo, BootKind, RamWindow};
    use tee_proto::{Header, WireError};

    fn hello() -> InitRequest {
        let window = RamWindow { base: 0, len: 0 };
        InitRequest::Hello {
            generation: 4,
            teed_generation: 2,
            boot: BootInfo {
                boot_id: 9,
                kind: BootKind::Cold,
                crash_flag: false,
            },
            ram: window,
            journal: window,
            windows: tee_proto::lifecycle::ClientWindows::NONE,
            grants: tee_proto::grants::GrantKinds::NONE,
        }
    }

    #[test]
    fn everything_before_hello_is_refused_and_hello_comes_with_its_attachments() {
        let (init, server) = Endpoint::pair().unwrap();
        let waiter = std::thread::spawn(move || {
            let got = await_hello(&server).unwrap().unwrap();
            (got.0, got.1.len())
        });
        init.send_frame(
            &Frame {
                header: Header::new(0, 4, 1),
                body: InitRequest::Status,
            },
            &[],
        )
        .unwrap();
        // A good header with a bad body is answered too; garbage is not.
        let mut garbage = vec![0u8; 16];
        let header_only = tee_proto::encode(
            &Frame {
                header: Header::new(0, 4, 2),
                body: (),
            },
            &mut garbage,
        )
        .unwrap()
        .to_vec();
        let mut bad_body = header_only.clone();
        bad_body.push(0xEE);
        init.send(&bad_body, &[]).unwrap();
        init.send(&[0xFF, 0xFF], &[]).unwrap();
        let (keep, _) = Endpoint::pair().unwrap();
        let hello = Frame {
            header: Header::new(0, 4, 3),
            body: hello(),
        };
        init.send_frame(&hello, &[keep.as_fd(), keep.as_fd()])
            .unwrap();

        let (frame, fds) = waiter.join().unwrap();
        assert_eq!(frame, hello);
        assert_eq!(fds, 2);
        for id in [1, 2] {
            let (answer, _) = init.recv_frame::<ServerEvent>().unwrap().unwrap();
            assert_eq!(answer.header.request_id, id);
            assert_eq!(answer.body, ServerEvent::Error(WireError::BadRequest));
        }
    }

    #[test]
    fn only_stream_sockets_pass_as_a_conduit() {
        let (stream, mut peer) = UnixStream::pair().unwrap();
        let mut conduit = stream_socket(OwnedFd::from(stream)).unwrap();
        use std::io::{Read, Write};
        conduit.write_all(b"regs").unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"regs");
        let (seqpacket, _) = Endpoint::pair().unwrap();
        let error = stream_socket(seqpacket.into_fd()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn teeds_physical_span_covers_every_window_of_its_hello() {
        use tee_proto::lifecycle::ClientWindows;
        let window = |base, len| RamWindow { base, len };
        let mut body = hello();
        if let InitRequest::Hello {
            ram,
            journal,
            windows,
            ..
        } = &mut body
        {
            *ram = window(0xB800_0000, 100 << 20);
            *windows = ClientWindows {
                tpmd: window(0xBE40_0000, 64 << 10),
                bnxtd: window(0xBE41_0000, 16 << 20),
            };
            *journal = window(0xBF41_0000, 128 << 10);
        }
        assert_eq!(
            hello_span(&body),
            Some(window(0xB800_0000, 0xBF43_0000 - 0xB800_0000))
        );
        assert_eq!(hello_span(&hello()), None);
        assert_eq!(hello_span(&InitRequest::Status), None);
    }

    #[test]
    fn init_closing_first_ends_the_wait() {
        let (init, server) = Endpoint::pair().unwrap();
        drop(init);
        assert!(await_hello(&server).unwrap().is_none());
    }
}
