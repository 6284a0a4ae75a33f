//! The NIC driver's side of bnxtd's socket: firmware load and the crash-dump copy.

use std::time::{Duration, Instant};

use bnxt_image::{checksum, coredump_checksum};
use tee_proto::bnxt::{BnxtRequest, BnxtResponse, COREDUMP_CHUNK_MAX};

use crate::CliError;
use teesys_root::wire::{CallError, FramedStream};
use teesys_root::StatePaths;

pub struct BnxtDriver {
    stream: FramedStream,
}

/// A whole crash dump and what it should have been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coredump {
    pub bytes: Vec<u8>,
    pub checksum: u64,
    /// The checksum of the image the secure world's BNXT TA serves.
    pub expected: Option<u64>,
    pub took: Duration,
}

impl Coredump {
    pub fn matches(&self) -> bool {
        self.expected == Some(self.checksum)
    }
}

impl BnxtDriver {
    /// Connects with `deadline` on every later read and write; a failure is returned as is.
    pub fn connect_within(paths: &StatePaths, deadline: Duration) -> Result<Self, CallError> {
        let stream = FramedStream::connect(&paths.bnxt_sock(), deadline)?;
        Ok(BnxtDriver { stream })
    }

    pub fn connect(paths: &StatePaths) -> Result<Self, CliError> {
        let stream = FramedStream::connect(&paths.bnxt_sock(), Duration::from_secs(30))
            .map_err(|_| CliError::NotRunning(paths.dir().to_path_buf()))?;
        Ok(BnxtDriver { stream })
    }

    fn call(&mut self, request: BnxtRequest) -> Result<BnxtResponse, CliError> {
        match self.stream.call(request)? {
            BnxtResponse::Error(error) => Err(CliError::Bnxt(error)),
            response => Ok(response),
        }
    }

    pub fn load(&mut self) -> Result<(), CliError> {
        match self.call(BnxtRequest::Load)? {
            BnxtResponse::Loaded => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// The dump's length.
    pub fn coredump_len(&mut self) -> Result<u32, CliError> {
        match self.call(BnxtRequest::CoredumpLen)? {
            BnxtResponse::CoredumpLen { len } => Ok(len),
            other => Err(unexpected(&other)),
        }
    }

    /// One chunk of the dump as bnxtd answered it: the offset it names and the bytes.
    pub fn chunk(&mut self, offset: u32, size: u32) -> Result<(u32, Vec<u8>), CliError> {
        match self.call(BnxtRequest::CopyCoredump { offset, size })? {
            BnxtResponse::Coredump { offset, data } => Ok((offset, data.to_vec())),
            other => Err(unexpected(&other)),
        }
    }

    /// Copies the whole dump in frame-sized chunks.
    pub fn coredump(&mut self) -> Result<Coredump, CliError> {
        let start = Instant::now();
        let len = match self.call(BnxtRequest::CoredumpLen)? {
            BnxtResponse::CoredumpLen { len } => len,
            other => return Err(unexpected(&other)),
        };
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let chunk = u32::try_from(COREDUMP_CHUNK_MAX).unwrap_or(u32::MAX);
        let mut offset = 0u32;
        while offset < len {
            let size = chunk.min(len - offset);
            match self.call(BnxtRequest::CopyCoredump { offset, size })? {
                BnxtResponse::Coredump { offset: at, data } if at == offset && !data.is_empty() => {
                    bytes.extend_from_slice(&data);
                    offset = offset.saturating_add(u32::try_from(data.len()).unwrap_or(chunk));
                }
                other => return Err(unexpected(&other)),
            }
        }
        // The copy is done: the checks below are the consumer's, not the transfer's time.
        let took = start.elapsed();
        Ok(Coredump {
            checksum: checksum(&bytes),
            expected: coredump_checksum(0, u64::from(len)),
            bytes,
            took,
        })
    }
}

fn unexpected(response: &BnxtResponse) -> CliError {
    CliError::Call(CallError::Unexpected(format!("{response:?}")))
}
