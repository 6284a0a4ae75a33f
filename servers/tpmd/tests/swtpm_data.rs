//! The swtpm data channel: framing by the TPM header's size field, the mapping of tpmd's
//! answers to TPM wire bytes, and per-connection answer order.
#![allow(clippy::unwrap_used)]

use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse};
use tpmd::swtpm::{
    framing_error_response, response_bytes, DataConnection, DataDecoder, DataError, DataOutput,
    ResponseBytes, Ticket, UnknownTicket,
};

/// TPM2_Startup(SU_CLEAR), as tpm2_startup -c sends it.
const STARTUP_CLEAR: [u8; 12] = [
    0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x44, 0x00, 0x00,
];
/// TPM2_GetRandom(8).
const GET_RANDOM_8: [u8; 12] = [
    0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x7b, 0x00, 0x08,
];
/// TPM_ST_NO_SESSIONS, size 10, TPM_RC_COMMAND_SIZE.
const RC_COMMAND_SIZE: [u8; 10] = [0x80, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x42];
/// TPM_ST_NO_SESSIONS, size 10, TPM_RC_RETRY.
const RC_RETRY: [u8; 10] = [0x80, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x09, 0x22];
/// TPM_ST_NO_SESSIONS, size 10, TPM_RC_FAILURE.
const RC_FAILURE: [u8; 10] = [0x80, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x01];

fn command_bytes(request: TpmRequest) -> Vec<u8> {
    let TpmRequest::Command { bytes } = request;
    bytes.to_vec()
}

/// A syntactically framed command of `len` bytes (tag, size, then filler).
fn command_of_len(len: u32) -> Vec<u8> {
    let mut bytes = vec![0xa5; len as usize];
    bytes[0..2].copy_from_slice(&[0x80, 0x01]);
    bytes[2..6].copy_from_slice(&len.to_be_bytes());
    bytes
}

fn tpm_response(bytes: &[u8]) -> TpmResponse {
    TpmResponse::Response {
        bytes: heapless::Vec::from_slice(bytes).unwrap(),
    }
}

// ---- DataDecoder ----

#[test]
fn a_whole_command_in_one_read_is_yielded_as_is() {
    let mut decoder = DataDecoder::new();
    decoder.push(&STARTUP_CLEAR);
    let command = decoder.next_command().unwrap().unwrap();
    assert_eq!(command_bytes(command), STARTUP_CLEAR);
    assert_eq!(decoder.next_command(), Ok(None));
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(decoder.finish(), Ok(()));
}

#[test]
fn a_command_fed_byte_by_byte_appears_only_when_complete() {
    let mut decoder = DataDecoder::new();
    for (index, byte) in GET_RANDOM_8.iter().enumerate() {
        assert_eq!(decoder.next_command(), Ok(None), "early at byte {index}");
        decoder.push(&[*byte]);
    }
    let command = decoder.next_command().unwrap().unwrap();
    assert_eq!(command_bytes(command), GET_RANDOM_8);
}

#[test]
fn several_commands_in_one_read_come_out_in_order() {
    let mut input = Vec::new();
    input.extend_from_slice(&STARTUP_CLEAR);
    input.extend_from_slice(&GET_RANDOM_8);
    input.extend_from_slice(&GET_RANDOM_8[..7]);
    let mut decoder = DataDecoder::new();
    decoder.push(&input);
    assert_eq!(
        command_bytes(decoder.next_command().unwrap().unwrap()),
        STARTUP_CLEAR
    );
    assert_eq!(
        command_bytes(decoder.next_command().unwrap().unwrap()),
        GET_RANDOM_8
    );
    assert_eq!(decoder.next_command(), Ok(None));
    assert_eq!(decoder.buffered(), 7);
    decoder.push(&GET_RANDOM_8[7..]);
    assert_eq!(
        command_bytes(decoder.next_command().unwrap().unwrap()),
        GET_RANDOM_8
    );
}

#[test]
fn the_smallest_and_largest_commands_are_accepted() {
    for len in [10u32, 4096] {
        let mut decoder = DataDecoder::new();
        let command = command_of_len(len);
        decoder.push(&command);
        assert_eq!(
            command_bytes(decoder.next_command().unwrap().unwrap()),
            command
        );
    }
}

#[test]
fn a_size_below_a_header_is_a_framing_error_that_sticks() {
    let mut decoder = DataDecoder::new();
    decoder.push(&[0x80, 0x01, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x01]);
    let error = DataError::CommandTooShort { declared: 9 };
    assert_eq!(decoder.next_command(), Err(error));
    assert!(decoder.has_failed());
    // Later bytes, even a good command, cannot resynchronise the stream.
    decoder.push(&STARTUP_CLEAR);
    assert_eq!(decoder.next_command(), Err(error));
    assert_eq!(decoder.finish(), Err(error));
}

#[test]
fn an_oversized_declaration_is_refused_from_the_first_six_bytes() {
    let mut decoder = DataDecoder::new();
    decoder.push(&[0x80, 0x01, 0x00, 0x00, 0x10, 0x01]);
    assert_eq!(
        decoder.next_command(),
        Err(DataError::CommandTooLarge { declared: 4097 })
    );
    let mut huge = DataDecoder::new();
    huge.push(&[0x80, 0x01, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        huge.next_command(),
        Err(DataError::CommandTooLarge { declared: u32::MAX })
    );
}

#[test]
fn fewer_than_six_bytes_wait_for_more() {
    let mut decoder = DataDecoder::new();
    decoder.push(&[0x80, 0x01, 0x00, 0x00, 0x00]);
    assert_eq!(decoder.next_command(), Ok(None));
    assert!(!decoder.has_failed());
}

#[test]
fn input_ending_inside_a_command_is_truncation() {
    let mut decoder = DataDecoder::new();
    decoder.push(&GET_RANDOM_8[..11]);
    assert_eq!(decoder.next_command(), Ok(None));
    assert_eq!(decoder.finish(), Err(DataError::Truncated { received: 11 }));
}

#[test]
fn every_framing_error_is_answered_with_tpm_rc_command_size() {
    for error in [
        DataError::CommandTooShort { declared: 0 },
        DataError::CommandTooLarge { declared: 5000 },
        DataError::Truncated { received: 3 },
    ] {
        assert_eq!(framing_error_response(error), RC_COMMAND_SIZE, "{error}");
    }
}

// ---- response mapping ----

#[test]
fn a_tpm_response_goes_out_unchanged() {
    let tpm_bytes = [
        0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34,
    ];
    let response = tpm_response(&tpm_bytes);
    let wire = response_bytes(&response);
    assert_eq!(wire, ResponseBytes::Tpm(&tpm_bytes));
    assert_eq!(&*wire, &tpm_bytes);
}

#[test]
fn tpmd_errors_become_ten_byte_tpm_error_responses() {
    let cases = [
        (TpmError::Retryable, RC_RETRY),
        (TpmError::ServerRestarted { generation: 4 }, RC_RETRY),
        (TpmError::TeeUnavailable, RC_FAILURE),
        (TpmError::ShuttingDown, RC_FAILURE),
        (TpmError::CommandTooLarge { len: 5000 }, RC_COMMAND_SIZE),
        (
            TpmError::Tee {
                code: 0xffff_000d,
                origin: 3,
            },
            RC_RETRY,
        ),
    ];
    for (error, expected) in cases {
        let response = TpmResponse::Error(error);
        assert_eq!(&*response_bytes(&response), &expected, "{error}");
    }
}

// ---- DataConnection ----

fn written(connection: &mut DataConnection) -> Vec<DataOutput> {
    std::iter::from_fn(|| connection.poll_output()).collect()
}

#[test]
fn answers_are_written_in_command_order_whatever_order_they_arrive_in() {
    let mut connection = DataConnection::new();
    let mut input = STARTUP_CLEAR.to_vec();
    input.extend_from_slice(&GET_RANDOM_8);
    connection.receive(&input);
    let (first, startup) = connection.next_command().unwrap();
    let (second, get_random) = connection.next_command().unwrap();
    assert_eq!(command_bytes(startup), STARTUP_CLEAR);
    assert_eq!(command_bytes(get_random), GET_RANDOM_8);
    assert!(connection.next_command().is_none());
    assert_ne!(first, second);

    connection
        .answer(second, &TpmResponse::Error(TpmError::Retryable))
        .unwrap();
    assert_eq!(
        written(&mut connection),
        vec![],
        "second must wait for first"
    );
    connection
        .answer(first, &TpmResponse::Error(TpmError::TeeUnavailable))
        .unwrap();
    assert_eq!(
        written(&mut connection),
        vec![
            DataOutput::Write(RC_FAILURE.to_vec()),
            DataOutput::Write(RC_RETRY.to_vec())
        ]
    );
    assert_eq!(connection.awaiting(), 0);
    assert!(!connection.is_closed());
}

#[test]
fn a_tcti_swtpm_exchange_answers_then_closes_at_end_of_input() {
    let mut connection = DataConnection::new();
    connection.receive(&GET_RANDOM_8);
    let (ticket, _) = connection.next_command().unwrap();
    connection.input_closed();
    assert!(connection.next_command().is_none());
    assert!(!connection.wants_input());
    assert_eq!(
        written(&mut connection),
        vec![],
        "nothing before the answer"
    );
    let answer = [
        0x80, 0x01, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 1, 2, 3, 4, 5, 6,
        7, 8,
    ];
    connection.answer(ticket, &tpm_response(&answer)).unwrap();
    assert_eq!(
        written(&mut connection),
        vec![DataOutput::Write(answer.to_vec()), DataOutput::Close]
    );
    assert!(connection.is_closed());
    assert_eq!(connection.poll_output(), None);
}

#[test]
fn a_framing_error_is_answered_after_the_answers_owed_and_then_closes() {
    let mut connection = DataConnection::new();
    let mut input = STARTUP_CLEAR.to_vec();
    input.extend_from_slice(&[0x80, 0x01, 0x00, 0x00, 0x00, 0x02]);
    connection.receive(&input);
    let (ticket, _) = connection.next_command().unwrap();
    assert!(connection.next_command().is_none());
    assert_eq!(
        connection.framing_error(),
        Some(DataError::CommandTooShort { declared: 2 })
    );
    assert!(!connection.wants_input());
    assert_eq!(written(&mut connection), vec![]);

    connection
        .answer(ticket, &TpmResponse::Error(TpmError::Retryable))
        .unwrap();
    assert_eq!(
        written(&mut connection),
        vec![
            DataOutput::Write(RC_RETRY.to_vec()),
            DataOutput::Write(RC_COMMAND_SIZE.to_vec()),
            DataOutput::Close
        ]
    );
}

#[test]
fn input_ending_inside_a_command_is_answered_with_command_size() {
    let mut connection = DataConnection::new();
    connection.receive(&STARTUP_CLEAR[..8]);
    assert!(connection.next_command().is_none());
    connection.input_closed();
    assert!(connection.next_command().is_none());
    assert_eq!(
        connection.framing_error(),
        Some(DataError::Truncated { received: 8 })
    );
    assert_eq!(
        written(&mut connection),
        vec![
            DataOutput::Write(RC_COMMAND_SIZE.to_vec()),
            DataOutput::Close
        ]
    );
}

#[test]
fn an_idle_connection_closes_quietly_at_end_of_input() {
    let mut connection = DataConnection::new();
    assert_eq!(connection.poll_output(), None);
    connection.input_closed();
    assert!(connection.next_command().is_none());
    assert_eq!(written(&mut connection), vec![DataOutput::Close]);
}

#[test]
fn answers_for_unknown_or_answered_tickets_are_refused() {
    let mut connection = DataConnection::new();
    let response = TpmResponse::Error(TpmError::Retryable);
    assert_eq!(
        connection.answer(Ticket(0), &response),
        Err(UnknownTicket(Ticket(0)))
    );
    connection.receive(&STARTUP_CLEAR);
    let (ticket, _) = connection.next_command().unwrap();
    connection.answer(ticket, &response).unwrap();
    assert_eq!(
        connection.answer(ticket, &response),
        Err(UnknownTicket(ticket))
    );
    assert_eq!(written(&mut connection).len(), 1);
    assert_eq!(
        connection.answer(ticket, &response),
        Err(UnknownTicket(ticket))
    );
}
