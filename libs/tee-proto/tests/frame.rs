//! Framing rules: version checked before the body, no trailing bytes, typed failures, stale
//! generations, and the generic request screening.
#![allow(clippy::unwrap_used)]

mod common;

use common::encode_to_vec;
use tee_proto::bnxt::{BnxtError, BnxtRequest, BnxtResponse};
use tee_proto::lifecycle::{InitRequest, ServerEvent};
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::tpm::{TpmError, TpmResponse};
use tee_proto::{
    accept_request, decode, decode_header, encode, BnxtInterface, Frame, FramePart, Header,
    Incoming, Interface, LifecycleInterface, ProtoError, TeedInterface, TpmInterface, WireError,
    FRAME_MAX, PROTOCOL_VERSION,
};

fn close_session_frame(header: Header) -> Vec<u8> {
    encode_to_vec(header, &TeedRequest::CloseSession { session: 9 })
}

#[test]
fn header_new_uses_current_version() {
    let header = Header::new(4, 5, 6);
    assert_eq!(header.version, PROTOCOL_VERSION);
    assert_eq!(
        (
            header.from_generation,
            header.to_generation,
            header.request_id
        ),
        (4, 5, 6)
    );
}

#[test]
fn version_mismatch_is_typed() {
    let header = Header {
        version: PROTOCOL_VERSION + 1,
        ..Header::new(1, 1, 1)
    };
    let bytes = close_session_frame(header);
    assert_eq!(
        decode::<TeedRequest>(&bytes),
        Err(ProtoError::Version {
            got: PROTOCOL_VERSION + 1,
            expected: PROTOCOL_VERSION
        })
    );
}

#[test]
fn version_is_checked_before_anything_else() {
    // A future version followed by bytes that are no valid header or body at all.
    let mut bytes = vec![(PROTOCOL_VERSION + 1) as u8];
    bytes.extend_from_slice(&[0xff; 40]);
    assert_eq!(
        decode::<TeedRequest>(&bytes),
        Err(ProtoError::Version {
            got: PROTOCOL_VERSION + 1,
            expected: PROTOCOL_VERSION
        })
    );
    assert!(matches!(
        decode_header(&bytes),
        Err(ProtoError::Version { .. })
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = close_session_frame(Header::new(1, 1, 1));
    bytes.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        decode::<TeedRequest>(&bytes),
        Err(ProtoError::TrailingBytes { count: 3 })
    );
}

#[test]
fn decode_failures_name_the_part() {
    assert_eq!(
        decode::<TeedRequest>(&[]),
        Err(ProtoError::Decode {
            part: FramePart::Header
        })
    );
    // Version only: the rest of the header is missing.
    assert_eq!(
        decode::<TeedRequest>(&[PROTOCOL_VERSION as u8]),
        Err(ProtoError::Decode {
            part: FramePart::Header
        })
    );
    // A good header followed by a variant tag no TeedRequest has.
    let mut bytes = encode_to_vec(Header::new(1, 1, 1), &());
    bytes.push(99);
    assert_eq!(
        decode::<TeedRequest>(&bytes),
        Err(ProtoError::Decode {
            part: FramePart::Body
        })
    );
    // The header still decodes, so a receiver can address its error reply.
    let (header, body) = decode_header(&bytes).unwrap();
    assert_eq!(header, Header::new(1, 1, 1));
    assert_eq!(body, &[99]);
}

#[test]
fn oversized_input_is_rejected_before_decoding() {
    let mut bytes = close_session_frame(Header::new(1, 1, 1));
    bytes.resize(FRAME_MAX + 1, 0);
    assert_eq!(
        decode::<TeedRequest>(&bytes),
        Err(ProtoError::FrameTooLarge {
            len: FRAME_MAX + 1,
            max: FRAME_MAX
        })
    );
}

#[test]
fn encode_reports_small_buffer() {
    let frame = Frame {
        header: Header::new(1, 1, 1),
        body: TeedRequest::CloseSession { session: 9 },
    };
    let mut tiny = [0u8; 3];
    assert_eq!(encode(&frame, &mut tiny), Err(ProtoError::BufferTooSmall));
    let mut exact = vec![0u8; close_session_frame(frame.header).len()];
    assert!(encode(&frame, &mut exact).is_ok());
}

#[test]
fn encode_refuses_frames_over_the_limit() {
    // Not a protocol message: an over-long body shows the sender-side guard.
    let long_body = vec![7u8; FRAME_MAX];
    let frame = Frame {
        header: Header::new(1, 1, 1),
        body: long_body.as_slice(),
    };
    let mut buf = vec![0u8; 2 * FRAME_MAX];
    assert!(matches!(
        encode(&frame, &mut buf),
        Err(ProtoError::FrameTooLarge { max: FRAME_MAX, .. })
    ));
}

#[test]
fn staleness_ignores_unknown_and_matches_own_generation() {
    assert!(!Header::new(1, 0, 1).is_stale_for(5), "0 means unknown");
    assert!(!Header::new(1, 5, 1).is_stale_for(5));
    assert!(Header::new(1, 4, 1).is_stale_for(5));
    assert!(Header::new(1, 6, 1).is_stale_for(5));
}

#[test]
fn reply_header_addresses_the_requester() {
    let request = Header::new(11, 3, 77);
    let reply = request.reply_to(4);
    assert_eq!(reply, Header::new(4, 11, 77));
}

#[test]
fn accept_request_passes_current_and_first_contact_frames() {
    for to_generation in [0, 5] {
        let bytes = close_session_frame(Header::new(2, to_generation, 8));
        match accept_request::<TeedInterface>(&bytes, 5) {
            Incoming::Request(frame) => {
                assert_eq!(frame.body, TeedRequest::CloseSession { session: 9 });
                assert_eq!(frame.header.request_id, 8);
            }
            other => panic!("expected a request, got {other:?}"),
        }
    }
}

#[test]
fn accept_request_answers_stale_frames_with_server_restarted() {
    let bytes = close_session_frame(Header::new(2, 4, 8));
    assert_eq!(
        accept_request::<TeedInterface>(&bytes, 5),
        Incoming::Answer(Frame {
            header: Header::new(5, 2, 8),
            body: TeedResponse::Error(WireError::ServerRestarted { generation: 5 }),
        })
    );
}

#[test]
fn accept_request_checks_staleness_before_the_body() {
    // A predecessor's client with a body this server cannot parse still learns of the restart.
    let mut bytes = encode_to_vec(Header::new(2, 4, 8), &());
    bytes.push(99);
    assert!(matches!(
        accept_request::<TeedInterface>(&bytes, 5),
        Incoming::Answer(Frame {
            body: TeedResponse::Error(WireError::ServerRestarted { generation: 5 }),
            ..
        })
    ));
}

#[test]
fn accept_request_answers_malformed_bodies_with_bad_request() {
    let mut bytes = encode_to_vec(Header::new(2, 5, 8), &());
    bytes.push(99);
    assert_eq!(
        accept_request::<BnxtInterface>(&bytes, 5),
        Incoming::Answer(Frame {
            header: Header::new(5, 2, 8),
            body: BnxtResponse::Error(BnxtError::BadRequest),
        })
    );
}

#[test]
fn accept_request_drops_what_it_cannot_address() {
    assert_eq!(
        accept_request::<TpmInterface>(&[], 1),
        Incoming::Drop(ProtoError::Decode {
            part: FramePart::Header
        })
    );
    let future = Header {
        version: PROTOCOL_VERSION + 1,
        ..Header::new(1, 1, 1)
    };
    let bytes = encode_to_vec(future, &BnxtRequest::Load);
    assert!(matches!(
        accept_request::<BnxtInterface>(&bytes, 1),
        Incoming::Drop(ProtoError::Version { .. })
    ));
}

#[test]
fn every_interface_has_its_restart_and_bad_request_answers() {
    assert_eq!(
        TeedInterface::server_restarted(3),
        TeedResponse::Error(WireError::ServerRestarted { generation: 3 })
    );
    assert_eq!(
        LifecycleInterface::server_restarted(3),
        ServerEvent::Error(WireError::ServerRestarted { generation: 3 })
    );
    assert_eq!(
        TpmInterface::server_restarted(3),
        TpmResponse::Error(TpmError::ServerRestarted { generation: 3 })
    );
    assert_eq!(
        BnxtInterface::server_restarted(3),
        BnxtResponse::Error(BnxtError::ServerRestarted { generation: 3 })
    );
    assert_eq!(
        LifecycleInterface::bad_request(),
        ServerEvent::Error(WireError::BadRequest)
    );
    assert_eq!(
        TpmInterface::bad_request(),
        TpmResponse::Error(TpmError::BadRequest)
    );
    let names = [
        TeedInterface::NAME,
        LifecycleInterface::NAME,
        TpmInterface::NAME,
        BnxtInterface::NAME,
    ];
    for (index, name) in names.iter().enumerate() {
        assert!(!names[index + 1..].contains(name), "duplicate name {name}");
    }
    // The lifecycle interface carries init's requests.
    let bytes = encode_to_vec(Header::new(0, 2, 1), &InitRequest::Status);
    assert!(matches!(
        accept_request::<LifecycleInterface>(&bytes, 2),
        Incoming::Request(Frame {
            body: InitRequest::Status,
            ..
        })
    ));
}
