//! The check behind the `init_control` fuzz target (`fuzz/`), kept here so that the default
//! test run replays every committed corpus and regression input through the same code
//! (`tests/fuzz_corpus.rs`). It panics only when a property fails.
//!
//! The input is what a hostile control client writes to `init.ctl`, cut into hostile chunks,
//! and the state init is in when each request arrives.

use tee_proto::control::{ControlRequest, ControlResponse, OpKind};
use tee_proto::{decode, decode_header, encode, WireError, FRAME_MAX};
use tee_rt::framing::FRAME_HEADER_BYTES;
use tee_rt::stream::{FrameReader, StreamError};
use teesys_init::server_index;

use crate::control_screen::{admit, screen, Admission, Screened};
use crate::control_state::{op_kind, CONTROL_GENERATION};

/// How the length-prefixed stream frames: the payloads, then `Err(len)` for a header over
/// [`FRAME_MAX`], or `Ok(bytes)` of an unfinished frame.
fn reference_frames(stream: &[u8]) -> (Vec<&[u8]>, Result<usize, usize>) {
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        let Some(header) = rest.get(..FRAME_HEADER_BYTES) else {
            return (frames, Ok(rest.len()));
        };
        let mut len = [0u8; FRAME_HEADER_BYTES];
        len.copy_from_slice(header);
        let len = u32::from_le_bytes(len) as usize;
        if len > FRAME_MAX {
            return (frames, Err(len));
        }
        let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
            return (frames, Ok(rest.len()));
        };
        frames.push(payload);
        rest = &rest[FRAME_HEADER_BYTES + len..];
    }
}

/// One screened frame: a request decodes as exactly that request with a current header; an
/// answer replies to the same request id with ServerRestarted (stale) or BadRequest and
/// encodes within a frame; a drop is a header that does not decode. An operation is admitted
/// only as [`admit`] documents.
fn check_frame(frame: &[u8], admission: &Admission) {
    let header = decode_header(frame).map(|(header, _)| header);
    match screen(frame) {
        Screened::Request {
            header: got,
            request,
            op,
        } => {
            assert_eq!(header, Ok(got));
            assert!(
                !got.is_stale_for(CONTROL_GENERATION),
                "a stale request served"
            );
            let decoded = decode::<ControlRequest>(frame).map(|f| f.body);
            assert_eq!(decoded, Ok(request));
            assert_eq!(op, op_kind(request));
            assert_eq!(op.is_none(), request == ControlRequest::Status);
            if let Some(op) = op {
                check_admission(op, admission);
            }
        }
        Screened::Answer(answer) => {
            let Ok(header) = header else {
                panic!("answered a frame whose header does not decode");
            };
            assert_eq!(answer.header.request_id, header.request_id);
            let expected = if header.is_stale_for(CONTROL_GENERATION) {
                WireError::ServerRestarted {
                    generation: CONTROL_GENERATION,
                }
            } else {
                assert!(
                    decode::<ControlRequest>(frame).is_err(),
                    "a good request refused"
                );
                WireError::BadRequest
            };
            assert_eq!(answer.body, ControlResponse::Error(expected));
            let mut buf = [0u8; FRAME_MAX];
            assert!(encode(&*answer, &mut buf).is_ok(), "the answer must encode");
        }
        Screened::Drop(error) => assert_eq!(header, Err(error)),
    }
}

fn check_admission(op: OpKind, now: &Admission) {
    let verdict = admit(op, now);
    if now.op_running || now.down_requested {
        assert_eq!(verdict, Err(WireError::Busy), "one operation at a time");
        return;
    }
    match op {
        OpKind::Kexec | OpKind::Reboot | OpKind::Crash { .. } | OpKind::Down => {
            assert_eq!(verdict.is_ok(), now.world_up);
        }
        OpKind::Restart(kind) => {
            assert_eq!(
                verdict.is_ok(),
                now.world_up && now.started[server_index(kind)]
            );
        }
        OpKind::Kill(kind) => {
            let live = now.process[server_index(kind)];
            assert_eq!(
                verdict,
                if live {
                    Ok(())
                } else {
                    Err(WireError::NotFound)
                }
            );
        }
    }
}

/// init's control-socket frame reader and request screening on a hostile client's bytes. The
/// first two bytes are init's state (operation running, Down asked, world up, servers started
/// and alive), the third seeds the chunking, the rest is the stream.
pub fn check_init_control(data: &[u8]) {
    let [a, b, seed, ref stream @ ..] = *data else {
        return;
    };
    let bit = |byte: u8, n: u8| byte >> n & 1 == 1;
    let admission = Admission {
        op_running: bit(a, 0),
        down_requested: bit(a, 1) && bit(a, 2),
        world_up: !bit(a, 3),
        started: [bit(a, 4), bit(a, 5), bit(a, 6)],
        process: [bit(b, 0), bit(b, 1), bit(b, 2)],
    };
    let (expected, outcome) = reference_frames(stream);
    let mut reader = FrameReader::new(FRAME_MAX);
    let mut got = Vec::new();
    let mut error = None;
    let mut state = u32::from(seed);
    let mut rest = stream;
    'feed: while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let pick = (state >> 16) as usize;
        let len = if pick % 5 == 0 {
            rest.len()
        } else {
            1 + pick % 97
        };
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        reader.push(chunk);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    check_frame(&frame, &admission);
                    got.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(got.len(), expected.len(), "frames read");
    for (frame, want) in got.iter().zip(&expected) {
        assert_eq!(frame.as_slice(), *want);
    }
    match (outcome, error) {
        (Err(len), Some(StreamError::TooLong { len: got, max })) => {
            assert_eq!((got, max), (len, FRAME_MAX));
        }
        (Ok(partial), None) => assert_eq!(reader.partial_bytes(), partial),
        (outcome, error) => panic!("framing {outcome:?}, reader {error:?}"),
    }
}
