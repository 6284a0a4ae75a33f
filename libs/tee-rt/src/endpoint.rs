//! Endpoints: one side of a `SOCK_SEQPACKET` Unix socket pair.
//!
//! A packet carries exactly one tee-proto frame (at most [`FRAME_MAX`] bytes), so message
//! boundaries come from the kernel and no length prefix is needed. Capabilities (file
//! descriptors) travel with a packet as `SCM_RIGHTS`. Every descriptor made or received here is
//! close-on-exec, so nothing leaks into a child unless [`crate::spawn`] hands it over on purpose.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{de::DeserializeOwned, Serialize};
use tee_proto::{Frame, ProtoError, FRAME_MAX};

/// Most descriptors one received packet may carry; more is a protocol violation.
pub const MAX_FDS_PER_PACKET: usize = 8;

/// The kernel's own limit on descriptors in one `SCM_RIGHTS` message (SCM_MAX_FD). Receiving
/// with room for this many means control data is never cut short, so every descriptor the
/// kernel installs is seen here and closed if it is one too many, never leaked.
const KERNEL_MAX_FDS: usize = 253;

/// A received frame with the descriptors that came with it.
pub type ReceivedFrame<T> = (Frame<T>, Vec<OwnedFd>);

/// Failures of an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The socket call failed (`WouldBlock` on a non-blocking endpoint with nothing to do).
    #[error("endpoint i/o failed")]
    Io(#[from] io::Error),
    /// The packet to send is longer than any frame may be.
    #[error("packet of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Offered length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A received packet was longer than the buffer; its tail was discarded.
    #[error("received packet did not fit the {capacity}-byte buffer")]
    Truncated {
        /// Size of the receive buffer.
        capacity: usize,
    },
    /// Too many descriptors offered or received with one packet; received ones were closed.
    #[error("{count} descriptors with one packet; at most {max} are allowed")]
    TooManyFds {
        /// Descriptors offered or received.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A frame did not encode or decode.
    #[error("frame codec failed")]
    Proto(#[from] ProtoError),
}

impl EndpointError {
    /// True when a non-blocking endpoint had nothing to receive, or no room to send.
    pub fn is_would_block(&self) -> bool {
        matches!(self, EndpointError::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// One side of a connected `SOCK_SEQPACKET` socket pair.
#[derive(Debug)]
pub struct Endpoint {
    fd: OwnedFd,
}

impl Endpoint {
    /// A connected pair, both ends close-on-exec.
    pub fn pair() -> io::Result<(Endpoint, Endpoint)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        Ok((Endpoint { fd: a }, Endpoint { fd: b }))
    }

    /// Wraps a descriptor that is a connected `SOCK_SEQPACKET` socket (for example one received
    /// from init). The type is not checked here; [`crate::spawn::lifecycle_from_env`] checks it.
    pub fn from_fd(fd: OwnedFd) -> Endpoint {
        Endpoint { fd }
    }

    /// The socket, for polling or for passing on.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives up the endpoint, keeping the socket open.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Sends one packet with `fds` attached. Never raises SIGPIPE: a closed peer is `EPIPE`.
    pub fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), EndpointError> {
        if bytes.len() > FRAME_MAX {
            return Err(EndpointError::TooLarge {
                len: bytes.len(),
                max: FRAME_MAX,
            });
        }
        if fds.len() > MAX_FDS_PER_PACKET {
            return Err(EndpointError::TooManyFds {
                count: fds.len(),
                max: MAX_FDS_PER_PACKET,
            });
        }
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
        let iov = [IoSlice::new(bytes)];
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
    }

    /// Receives one packet into `buf` with its descriptors (close-on-exec). `Ok(None)` means the
    /// peer closed. At most [`MAX_FDS_PER_PACKET`] descriptors are accepted per packet.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<(usize, Vec<OwnedFd>)>, EndpointError> {
        let capacity = buf.len();
        let mut control = nix::cmsg_space!([RawFd; KERNEL_MAX_FDS]);
        let (len, truncated, raw_fds) = loop {
            let mut iov = [IoSliceMut::new(buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut raw = Vec::new();
                    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
                        if let ControlMessageOwned::ScmRights(fds) = cmsg {
                            raw.extend(fds);
                        }
                    }
                    break (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC), raw);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
            }
        };
        let fds: Vec<OwnedFd> = raw_fds
            .into_iter()
            // SAFETY: the kernel installed these descriptors into this process during the
            // recvmsg above; no other owner knows their numbers, so each is owned exactly once.
            .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
            .collect();
        if truncated {
            return Err(EndpointError::Truncated { capacity });
        }
        if fds.len() > MAX_FDS_PER_PACKET {
            return Err(EndpointError::TooManyFds {
                count: fds.len(),
                max: MAX_FDS_PER_PACKET,
            });
        }
        if len == 0 && fds.is_empty() {
            // Frames are never empty, so an empty read is the peer's orderly close.
            return Ok(None);
        }
        Ok(Some((len, fds)))
    }

    /// Encodes `frame` and sends it as one packet with `fds` attached.
    pub fn send_frame<T: Serialize>(
        &self,
        frame: &Frame<T>,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), EndpointError> {
        let mut buf = [0u8; FRAME_MAX];
        let encoded = tee_proto::encode(frame, &mut buf)?;
        self.send(encoded, fds)
    }

    /// Receives one packet and decodes it as a whole frame. `Ok(None)` means the peer closed.
    /// Servers that must answer malformed frames use [`Endpoint::recv`] and
    /// [`tee_proto::accept_request`] instead.
    pub fn recv_frame<T: DeserializeOwned>(
        &self,
    ) -> Result<Option<ReceivedFrame<T>>, EndpointError> {
        let mut buf = vec![0u8; FRAME_MAX];
        match self.recv(&mut buf)? {
            None => Ok(None),
            Some((len, fds)) => Ok(Some((tee_proto::decode(&buf[..len])?, fds))),
        }
    }

    /// Switches the socket between blocking and non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        set_nonblocking(self.fd.as_fd(), on)
    }
}

/// Sets or clears `O_NONBLOCK` on any descriptor.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let mut flags = OFlag::from_bits_retain(flags);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
