//! The check behind the `swtpm` fuzz target (`fuzz/`), kept here so that the default test run
//! replays every committed corpus and regression input through the same code
//! (`tests/fuzz_corpus.rs`). It panics only when a property fails.
//!
//! Both swtpm channels read bytes from any local client, so both get hostile streams, cut into
//! hostile chunks.

use alloc::vec::Vec;

use tee_proto::tpm::{
    declared_size, tpm_error_response, TpmError, TpmRequest, TpmResponse, TPM_BUFFER_MAX,
    TPM_HEADER_SIZE,
};

use crate::swtpm::{
    answer, framing_error_response, ControlDecoder, ControlError, ControlRequest, DataConnection,
    DataDecoder, DataError, DataOutput, Ticket, CONTROL_RESPONSE_MAX,
};

/// Cuts `stream` into chunks whose sizes follow `seed` (1 to 64 bytes, or the whole rest).
struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let pick = (self.state >> 16) as usize;
        let len = if pick % 7 == 0 {
            self.rest.len()
        } else {
            1 + pick % 64
        };
        let (chunk, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

fn chunks(stream: &[u8], seed: u8) -> Chunks<'_> {
    Chunks {
        rest: stream,
        state: u32::from(seed),
    }
}

/// How a TPM byte stream frames, straight from the header rule: the commands, and the error
/// that ends framing (or the bytes of an unfinished command).
fn reference_framing(stream: &[u8]) -> (Vec<&[u8]>, Result<usize, DataError>) {
    let mut commands = Vec::new();
    let mut rest = stream;
    loop {
        if rest.len() < 6 {
            return (commands, Ok(rest.len()));
        }
        let declared = declared_size(rest).unwrap_or(0);
        let len = declared as usize;
        if len < TPM_HEADER_SIZE {
            return (commands, Err(DataError::CommandTooShort { declared }));
        }
        if len > TPM_BUFFER_MAX {
            return (commands, Err(DataError::CommandTooLarge { declared }));
        }
        if rest.len() < len {
            return (commands, Ok(rest.len()));
        }
        let (command, tail) = rest.split_at(len);
        commands.push(command);
        rest = tail;
    }
}

fn command_bytes(request: &TpmRequest) -> &[u8] {
    match request {
        TpmRequest::Command { bytes } => bytes,
    }
}

/// The data channel: the decoder frames exactly as the header rule says whatever the chunking,
/// and a connection writes one answer per command, in command order, then the framing error's
/// TPM_RC_COMMAND_SIZE, then closes.
fn check_data(stream: &[u8], seed: u8) {
    let (expected, outcome) = reference_framing(stream);

    let mut decoder = DataDecoder::new();
    let mut got = Vec::new();
    let mut error = None;
    'feed: for chunk in chunks(stream, seed) {
        decoder.push(chunk);
        loop {
            match decoder.next_command() {
                Ok(Some(request)) => got.push(request),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(got.len(), expected.len(), "commands framed");
    for (request, want) in got.iter().zip(&expected) {
        assert_eq!(command_bytes(request), *want);
    }
    match outcome {
        Err(want) => {
            assert_eq!(error, Some(want), "framing error");
            assert_eq!(decoder.finish(), Err(want), "the error sticks");
            assert_eq!(
                framing_error_response(want)[6..10],
                0x142u32.to_be_bytes(),
                "TPM_RC_COMMAND_SIZE"
            );
        }
        Ok(left) => {
            assert_eq!(error, None);
            assert_eq!(decoder.buffered(), left);
            let finished = decoder.finish();
            if left == 0 {
                assert_eq!(finished, Ok(()));
            } else {
                assert_eq!(finished, Err(DataError::Truncated { received: left }));
            }
        }
    }

    // A connection: commands answered in reverse order, written in command order.
    let mut conn = DataConnection::new();
    let mut tickets: Vec<(Ticket, TpmRequest)> = Vec::new();
    for chunk in chunks(stream, seed.wrapping_add(1)) {
        if !conn.wants_input() {
            break;
        }
        conn.receive(chunk);
        while let Some(next) = conn.next_command() {
            tickets.push(next);
        }
    }
    conn.input_closed();
    while let Some(next) = conn.next_command() {
        tickets.push(next);
    }
    assert_eq!(tickets.len(), expected.len(), "connection commands");
    for (i, (ticket, request)) in tickets.iter().enumerate().rev() {
        let response = if i % 3 == 2 {
            TpmResponse::Error(TpmError::Retryable)
        } else {
            TpmResponse::Response {
                bytes: heapless::Vec::from_slice(command_bytes(request)).unwrap_or_default(),
            }
        };
        assert_eq!(conn.answer(*ticket, &response), Ok(()));
        assert!(conn.answer(*ticket, &response).is_err(), "answered twice");
    }
    let mut writes = Vec::new();
    let mut closed = false;
    while let Some(output) = conn.poll_output() {
        assert!(!closed, "output after Close");
        match output {
            DataOutput::Write(bytes) => writes.push(bytes),
            DataOutput::Close => closed = true,
        }
    }
    assert!(closed, "the connection closes once its input ended");
    let framing = match outcome {
        Err(error) => Some(error),
        Ok(0) => None,
        Ok(received) => Some(DataError::Truncated { received }),
    };
    assert_eq!(conn.framing_error(), framing);
    assert_eq!(
        writes.len(),
        expected.len() + usize::from(framing.is_some())
    );
    for (i, (write, command)) in writes.iter().zip(&expected).enumerate() {
        if i % 3 == 2 {
            let retry = tpm_error_response(TpmError::Retryable.to_tpm_rc());
            assert_eq!(write.as_slice(), retry.as_slice());
        } else {
            assert_eq!(write.as_slice(), *command, "answers in command order");
        }
    }
    if let (Some(error), Some(last)) = (framing, writes.last()) {
        assert_eq!(last.as_slice(), framing_error_response(error).as_slice());
    }
}

/// Splits a control stream into its requests as a byte-at-a-time reader sees them: each
/// request's bytes, then the bytes of an unfinished one.
fn control_requests(stream: &[u8]) -> (Vec<(&[u8], ControlRequest)>, usize) {
    let mut decoder = ControlDecoder::new();
    let mut requests = Vec::new();
    let mut start = 0;
    for (i, byte) in stream.iter().enumerate() {
        if let Some(request) = decoder.push(core::slice::from_ref(byte)) {
            requests.push((&stream[start..=i], request));
            start = i + 1;
        }
    }
    (requests, stream.len() - start)
}

/// The control channel: a request decodes the same whether it comes byte by byte or whole;
/// each answer encodes within [`CONTROL_RESPONSE_MAX`] with its result code first; an
/// unfinished request is a typed truncation.
fn check_control(stream: &[u8], seed: u8) {
    let (requests, left) = control_requests(stream);
    for (bytes, request) in &requests {
        let mut whole = ControlDecoder::new();
        assert_eq!(whole.push(bytes), Some(*request), "byte by byte == whole");
        assert!(!whole.is_mid_request());
        let answer = answer(request);
        let encoded = answer.response.encode();
        assert!(encoded.len() >= 4 && encoded.len() <= CONTROL_RESPONSE_MAX);
        assert_eq!(encoded[..4], answer.response.result().to_be_bytes());
    }
    let mut tail = ControlDecoder::new();
    for byte in &stream[stream.len() - left..] {
        assert_eq!(tail.push(core::slice::from_ref(byte)), None);
    }
    match tail.finish() {
        Ok(()) => assert_eq!(left, 0),
        Err(ControlError::Truncated { .. }) => assert!(left > 0, "truncated, yet nothing left"),
    }
    // Hostile chunking: whatever a chunk completes, answered; never a panic.
    let mut decoder = ControlDecoder::new();
    for chunk in chunks(stream, seed) {
        if let Some(request) = decoder.push(chunk) {
            let _ = answer(&request).response.encode();
        }
    }
    let _ = decoder.finish().map_err(|error| error.response().encode());
}

/// swtpm's data and control decoders on hostile bytes. The first byte seeds the chunking; the
/// rest is fed to both channels.
pub fn check_swtpm(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    check_data(stream, seed);
    check_control(stream, seed);
}
