//! Request/answer over a stream socket with tee-rt framing (u32 LE length + postcard frame):
//! the operator protocols (`tee_proto::control`, `tee_proto::secure`) and the consumer sockets.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tee_proto::{decode, encode, Frame, Header, ProtoError, WireError, FRAME_MAX};
use tee_rt::framing::{read_frame, write_frame, FrameError};

/// A request that did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket setup failed: {0}")]
    Io(#[from] io::Error),
    #[error("framing failed: {0}")]
    Frame(#[from] FrameError),
    #[error("frame codec failed: {0}")]
    Proto(#[from] ProtoError),
    #[error("answer to request {got}, expected {expected}")]
    Mismatch { expected: u32, got: u32 },
    /// The peer answered with its protocol's error.
    #[error("refused: {0}")]
    Refused(WireError),
    /// The peer answered with a message that does not answer the request.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Writes one frame.
pub fn send_frame<T: Serialize>(
    stream: &mut (impl Write + ?Sized),
    frame: &Frame<T>,
) -> Result<(), CallError> {
    let mut buf = [0u8; FRAME_MAX];
    let bytes = encode(frame, &mut buf)?;
    write_frame(stream, bytes)?;
    Ok(())
}

/// Reads one frame.
pub fn recv_frame<T: DeserializeOwned>(
    stream: &mut (impl Read + ?Sized),
) -> Result<Frame<T>, CallError> {
    let mut buf = Vec::new();
    read_frame(stream, &mut buf, FRAME_MAX)?;
    Ok(decode(&buf)?)
}

/// One connection on which requests are answered in order.
#[derive(Debug)]
pub struct FramedStream {
    stream: UnixStream,
    next_request_id: u32,
}

impl FramedStream {
    /// Connects to `path`; every later read and write gives up after `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, CallError> {
        let stream = UnixStream::connect(path).map_err(|source| CallError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(FramedStream {
            stream,
            next_request_id: 1,
        })
    }

    /// Changes how long reads and writes may take (long operations wait longer).
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), CallError> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// Sends `body` to a peer whose generation is unknown and returns its answer's body.
    pub fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        body: Req,
    ) -> Result<Resp, CallError> {
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        send_frame(
            &mut self.stream,
            &Frame {
                header: Header::new(0, 0, request_id),
                body,
            },
        )?;
        let answer: Frame<Resp> = recv_frame(&mut self.stream)?;
        if answer.header.request_id != request_id {
            return Err(CallError::Mismatch {
                expected: request_id,
                got: answer.header.request_id,
            });
        }
        Ok(answer.body)
    }
}
