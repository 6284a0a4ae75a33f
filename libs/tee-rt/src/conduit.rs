//! The SMC conduit: one frame of eight registers (a0..a7) to the secure world, one frame back.
//!
//! The wire format is the same on every transport: exactly 64 bytes each way, eight u64 in
//! little-endian order. Only teed holds a conduit; the hosted secure-world process serves one.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Number of registers in one conduit frame (a0..a7).
pub const CONDUIT_REGS: usize = 8;
/// Bytes in one conduit frame on the wire.
pub const CONDUIT_FRAME_BYTES: usize = CONDUIT_REGS * 8;

/// Failures of the conduit transport (never of the SMC itself: that is in the returned a0).
#[derive(Debug, thiserror::Error)]
pub enum ConduitError {
    /// The underlying stream failed.
    #[error("conduit i/o failed")]
    Io(#[from] io::Error),
    /// The peer closed the stream on a frame boundary.
    #[error("conduit peer closed the stream")]
    Closed,
    /// The stream ended part-way through a frame.
    #[error("conduit frame cut short after {received} of {CONDUIT_FRAME_BYTES} bytes")]
    ShortFrame {
        /// Bytes of the frame that did arrive.
        received: usize,
    },
}

/// Something that carries one SMC: registers in, registers out.
pub trait SmcConduit {
    /// Sends `regs` to the secure world and returns its answer registers.
    fn call(&mut self, regs: [u64; 8]) -> Result<[u64; 8], ConduitError>;
}

impl<C: SmcConduit + ?Sized> SmcConduit for &mut C {
    fn call(&mut self, regs: [u64; 8]) -> Result<[u64; 8], ConduitError> {
        (**self).call(regs)
    }
}

impl<C: SmcConduit + ?Sized> SmcConduit for Box<C> {
    fn call(&mut self, regs: [u64; 8]) -> Result<[u64; 8], ConduitError> {
        (**self).call(regs)
    }
}

/// Encodes registers as one wire frame.
pub fn encode_regs(regs: &[u64; 8]) -> [u8; CONDUIT_FRAME_BYTES] {
    let mut frame = [0u8; CONDUIT_FRAME_BYTES];
    for (chunk, reg) in frame.chunks_exact_mut(8).zip(regs) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    frame
}

/// Decodes one wire frame into registers.
pub fn decode_regs(frame: &[u8; CONDUIT_FRAME_BYTES]) -> [u64; 8] {
    let mut regs = [0u64; 8];
    for (reg, chunk) in regs.iter_mut().zip(frame.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *reg = u64::from_le_bytes(word);
    }
    regs
}

/// Writes one frame of registers.
pub fn write_regs(writer: &mut (impl Write + ?Sized), regs: &[u64; 8]) -> Result<(), ConduitError> {
    writer.write_all(&encode_regs(regs))?;
    writer.flush()?;
    Ok(())
}

/// Reads one frame of registers; `Ok(None)` when the stream ends cleanly before a frame starts.
pub fn read_regs(reader: &mut (impl Read + ?Sized)) -> Result<Option<[u64; 8]>, ConduitError> {
    let mut frame = [0u8; CONDUIT_FRAME_BYTES];
    let mut received = 0;
    while received < CONDUIT_FRAME_BYTES {
        match reader.read(&mut frame[received..]) {
            Ok(0) if received == 0 => return Ok(None),
            Ok(0) => return Err(ConduitError::ShortFrame { received }),
            Ok(n) => received += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(decode_regs(&frame)))
}

/// Client end of a conduit over a Unix stream socket.
#[derive(Debug)]
pub struct UnixConduit {
    stream: UnixStream,
}

impl UnixConduit {
    /// Connects to a secure world listening at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ConduitError> {
        Ok(Self::from_stream(UnixStream::connect(path)?))
    }

    /// Wraps an already connected socket, for example one handed over by init.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self::from_stream(UnixStream::from(fd))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: UnixStream) -> Self {
        Self { stream }
    }

    /// The socket, to watch for the secure world hanging up between SMCs.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.stream)
    }
}

impl SmcConduit for UnixConduit {
    fn call(&mut self, regs: [u64; 8]) -> Result<[u64; 8], ConduitError> {
        tracing::trace!(a0 = regs[0], "smc out");
        write_regs(&mut self.stream, &regs)?;
        let answer = read_regs(&mut self.stream)?.ok_or(ConduitError::Closed)?;
        tracing::trace!(a0 = answer[0], "smc back");
        Ok(answer)
    }
}

/// Serves a conduit: answers every incoming frame with `handler`, until the peer hangs up.
///
/// Returns `Ok(())` on a clean end of stream (the peer closed between frames).
pub fn serve_conduit<S, H>(mut stream: S, mut handler: H) -> Result<(), ConduitError>
where
    S: Read + Write,
    H: FnMut([u64; 8]) -> [u64; 8],
{
    while let Some(regs) = read_regs(&mut stream)? {
        let answer = handler(regs);
        write_regs(&mut stream, &answer)?;
    }
    tracing::debug!("conduit peer closed");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
