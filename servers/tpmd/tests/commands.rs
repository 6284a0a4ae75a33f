//! TPM commands: the buffer layout, refusals, bad responses, TEE errors, FIFO order.
#![allow(clippy::unwrap_used)]

mod common;

use common::{expected_response, tpm_command, Harness, TeedMode, TpmCommands, TPMD_GENERATION};
use optee_abi::teec;
use tee_proto::teed::{Param, TeedRequest};
use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse};
use tee_proto::{accept_request, encode, Frame, Header, Incoming, TpmInterface, FRAME_MAX};
use tpmd::ConsumerId;

const GET_RANDOM: u32 = 0x17b;

fn response_bytes(response: &TpmResponse) -> Vec<u8> {
    match response {
        TpmResponse::Response { bytes } => bytes.to_vec(),
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn a_command_goes_in_at_offset_0_and_its_response_comes_from_offset_4096() {
    let mut h = Harness::serving();
    let command = tpm_command(GET_RANDOM, &[0, 8]);
    let sent = h.teed.log.len();
    let id = h.command(1, &command);

    let (&shm, &(pa, _)) = h.teed.shms.iter().next().unwrap();
    let TeedRequest::Invoke {
        func,
        params,
        session,
        ..
    } = &h.teed_requests_since(sent)[0]
    else {
        panic!("not an invoke");
    };
    assert_eq!(*func, 0, "SUBMIT_COMMAND");
    assert!(h.teed.sessions.contains_key(session));
    assert_eq!(
        params.as_slice(),
        &[
            Param::MemrefIn {
                shm,
                offset: 0,
                size: command.len() as u32
            },
            Param::MemrefInOut {
                shm,
                offset: 4096,
                size: 4096
            },
            Param::None,
            Param::None,
        ]
    );
    assert_eq!(h.ram.slice(pa, command.len()), command.as_slice());
    assert_eq!(h.teed.ta.commands, vec![command.clone()]);
    assert_eq!(response_bytes(h.response(id)), expected_response(&command));

    let reply = &h.to_consumers[0];
    assert_eq!(reply.0, ConsumerId(1));
    assert_eq!(reply.1.header.from_generation, TPMD_GENERATION);
}

#[test]
fn the_response_is_cut_at_its_declared_size() {
    let mut h = Harness::serving();
    // Declares 12 bytes; the TA left 4 more bytes of junk behind it.
    let raw = vec![
        0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
    ];
    h.teed.ta.raw_response = Some(raw.clone());
    let id = h.command(1, &tpm_command(GET_RANDOM, &[0, 2]));
    assert_eq!(response_bytes(h.response(id)), raw[..12].to_vec());
}

#[test]
fn the_buffer_is_cleared_before_each_command() {
    let mut h = Harness::serving();
    let long = tpm_command(GET_RANDOM, &[0xee; 100]);
    h.command(1, &long);
    let short = tpm_command(GET_RANDOM, &[0, 8]);
    h.command(1, &short);
    let (_, &(pa, _)) = h.teed.shms.iter().next().unwrap();
    // The fake TA wrote a 14-byte response; the rest of both halves must be zero.
    assert!(h
        .ram
        .slice(pa + short.len() as u64, 4096 - short.len())
        .iter()
        .all(|b| *b == 0));
    assert!(h
        .ram
        .slice(pa + 4096 + 14, 4096 - 14)
        .iter()
        .all(|b| *b == 0));
}

#[test]
fn too_short_commands_are_refused_and_nothing_is_sent() {
    let mut h = Harness::serving();
    let sent = h.teed.log.len();
    let id = h.command(1, &[0x80, 0x01, 0, 0, 0, 9, 0, 0, 1]);
    assert_eq!(
        h.response(id),
        &TpmResponse::Error(TpmError::CommandTooShort { len: 9 })
    );
    let id = h.command(1, &[]);
    assert_eq!(
        h.response(id),
        &TpmResponse::Error(TpmError::CommandTooShort { len: 0 })
    );
    assert_eq!(h.teed.log.len(), sent);
}

#[test]
fn too_large_commands_are_refused_and_nothing_is_sent() {
    let mut h = Harness::serving();
    let sent = h.teed.log.len();
    // A header that claims more than the buffer holds.
    let mut command = tpm_command(GET_RANDOM, &[0, 8]);
    command[2..6].copy_from_slice(&5000u32.to_be_bytes());
    let id = h.command(1, &command);
    assert_eq!(
        h.response(id),
        &TpmResponse::Error(TpmError::CommandTooLarge { len: 5000 })
    );
    assert_eq!(h.teed.log.len(), sent);
}

#[test]
fn more_than_4096_command_bytes_do_not_even_decode() {
    // The frame type bounds a command at the buffer half: a 4097-byte body is a bad request
    // the shell answers before the core sees it.
    let bytes: heapless::Vec<u8, 8192> = heapless::Vec::from_slice(&[0u8; 4097]).unwrap();
    #[derive(serde::Serialize)]
    enum Oversized {
        Command { bytes: heapless::Vec<u8, 8192> },
    }
    let frame = Frame {
        header: Header::new(0, TPMD_GENERATION, 9),
        body: Oversized::Command { bytes },
    };
    let mut buf = vec![0u8; 2 * FRAME_MAX];
    let encoded = postcard::to_slice(&frame, &mut buf).unwrap();
    match accept_request::<TpmInterface>(encoded, TPMD_GENERATION) {
        Incoming::Answer(answer) => {
            assert_eq!(answer.body, TpmResponse::Error(TpmError::BadRequest))
        }
        other => panic!("expected a bad-request answer: {other:?}"),
    }
    // While the largest allowed command does encode.
    let max = Frame {
        header: Header::new(0, TPMD_GENERATION, 9),
        body: TpmRequest::Command {
            bytes: heapless::Vec::from_slice(&[0u8; 4096]).unwrap(),
        },
    };
    assert!(encode(&max, &mut buf).is_ok());
}

#[test]
fn a_response_declaring_an_impossible_size_is_a_bad_response() {
    for declared in [0u32, 9, 4097, 0xffff_ffff] {
        let mut h = Harness::serving();
        let mut raw = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        raw[2..6].copy_from_slice(&declared.to_be_bytes());
        h.teed.ta.raw_response = Some(raw);
        let id = h.command(1, &tpm_command(GET_RANDOM, &[0, 8]));
        assert_eq!(
            h.response(id),
            &TpmResponse::Error(TpmError::BadResponse { declared }),
            "declared {declared}"
        );
    }
}

#[test]
fn a_tee_failure_is_reported_with_its_code_and_origin() {
    let mut h = Harness::serving();
    h.teed.ta.invoke_result = Some((teec::ERROR_TARGET_DEAD, teec::origin::TEE));
    let id = h.command(1, &tpm_command(GET_RANDOM, &[0, 8]));
    assert_eq!(
        h.response(id),
        &TpmResponse::Error(TpmError::Tee {
            code: teec::ERROR_TARGET_DEAD,
            origin: teec::origin::TEE
        })
    );
}

#[test]
fn commands_from_three_consumers_run_one_at_a_time_in_arrival_order() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    let commands: Vec<Vec<u8>> = (0..3)
        .map(|i| tpm_command(0x100 + i, &[i as u8; 4]))
        .collect();
    let ids: Vec<u32> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| h.command(10 + i as u64, c))
        .collect();

    for (turn, command) in commands.iter().enumerate() {
        assert_eq!(h.held.len(), 1, "turn {turn}: exactly one call in flight");
        h.answer_held();
        assert_eq!(h.teed.ta.commands.last().unwrap(), command);
        assert_eq!(h.to_consumers.len(), turn + 1);
    }
    for (i, id) in ids.iter().enumerate() {
        let (consumer, frame) = &h.to_consumers[i];
        assert_eq!(*consumer, ConsumerId(10 + i as u64));
        assert_eq!(frame.header.request_id, *id);
        assert_eq!(response_bytes(&frame.body), expected_response(&commands[i]));
    }
}

#[test]
fn a_consumer_that_left_gets_nothing_and_its_queued_commands_are_dropped() {
    let mut h = Harness::serving();
    h.teed.mode = TeedMode::Hold;
    h.command(1, &tpm_command(0x101, &[]));
    h.command(1, &tpm_command(0x102, &[]));
    let other = h.command(2, &tpm_command(0x103, &[]));
    h.core.consumer_gone(ConsumerId(1));

    h.answer_held(); // consumer 1's first command still runs to completion
    h.answer_held(); // then consumer 2's; consumer 1's second never ran
    assert!(h.held.is_empty());
    assert_eq!(h.teed.ta.commands.len(), 2);
    assert_eq!(h.to_consumers.len(), 1);
    assert_eq!(h.to_consumers[0].0, ConsumerId(2));
    assert_eq!(
        response_bytes(h.response(other)),
        expected_response(&tpm_command(0x103, &[]))
    );
}

#[test]
fn a_frame_for_an_older_tpmd_is_answered_server_restarted() {
    let mut h = Harness::serving();
    let sent = h.teed.log.len();
    let frame = Frame {
        header: Header::new(0, TPMD_GENERATION - 1, 5),
        body: TpmRequest::Command {
            bytes: heapless::Vec::from_slice(&tpm_command(GET_RANDOM, &[0, 8])).unwrap(),
        },
    };
    h.core
        .handle_consumer(h.now, &mut h.ram, ConsumerId(1), frame);
    h.pump();
    assert_eq!(
        h.response(5),
        &TpmResponse::Error(TpmError::ServerRestarted {
            generation: TPMD_GENERATION
        })
    );
    assert_eq!(h.teed.log.len(), sent);
}
