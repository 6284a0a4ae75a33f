//! Property tests: the swtpm decoders take any byte string in any chunking without panicking,
//! and chunking never changes what they decode.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse};
use tpmd::swtpm::{
    answer, ControlDecoder, ControlRequest, DataConnection, DataDecoder, DataError, DataOutput,
    CONTROL_RESPONSE_MAX,
};

/// Splits `bytes` at the given (unsorted, possibly out-of-range) cut points.
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points {
        pieces.push(bytes[start..point].to_vec());
        start = point;
    }
    pieces.push(bytes[start..].to_vec());
    pieces
}

/// Every command the decoder yields for `pieces`, then the error that ended it (if any),
/// including the end-of-input check.
fn decode_data(pieces: &[Vec<u8>]) -> (Vec<Vec<u8>>, Option<DataError>) {
    let mut decoder = DataDecoder::new();
    let mut commands = Vec::new();
    for piece in pieces {
        decoder.push(piece);
        loop {
            match decoder.next_command() {
                Ok(Some(TpmRequest::Command { bytes })) => commands.push(bytes.to_vec()),
                Ok(None) => break,
                Err(error) => return (commands, Some(error)),
            }
        }
    }
    (commands, decoder.finish().err())
}

/// A framed TPM command of a valid size with arbitrary contents.
fn valid_command() -> impl Strategy<Value = Vec<u8>> {
    (10usize..=4096, any::<u8>()).prop_map(|(len, fill)| {
        let mut bytes = vec![fill; len];
        bytes[0..2].copy_from_slice(&[0x80, 0x01]);
        bytes[2..6].copy_from_slice(&(len as u32).to_be_bytes());
        bytes
    })
}

/// One whole control request, as a client would send it.
fn control_request() -> impl Strategy<Value = Vec<u8>> {
    (0u32..0x14, proptest::collection::vec(any::<u8>(), 0..24)).prop_map(|(code, payload)| {
        let mut bytes = code.to_be_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    })
}

proptest! {
    #[test]
    fn data_decoding_is_total_and_independent_of_chunking(
        bytes in proptest::collection::vec(any::<u8>(), 0..9000),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = decode_data(std::slice::from_ref(&bytes));
        let chunked = decode_data(&chunks(&bytes, &cuts));
        prop_assert_eq!(&whole, &chunked);
        for command in &whole.0 {
            prop_assert!((10..=4096).contains(&command.len()));
        }
        // What was yielded plus what stopped it accounts for every input byte.
        let yielded: usize = whole.0.iter().map(Vec::len).sum();
        match whole.1 {
            None => prop_assert_eq!(yielded, bytes.len()),
            Some(DataError::Truncated { received }) => {
                prop_assert_eq!(yielded + received, bytes.len())
            }
            Some(_) => prop_assert!(yielded + 6 <= bytes.len()),
        }
    }

    #[test]
    fn valid_commands_come_out_exactly_as_sent(
        commands in proptest::collection::vec(valid_command(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream: Vec<u8> = commands.concat();
        let (decoded, error) = decode_data(&chunks(&stream, &cuts));
        prop_assert_eq!(decoded, commands);
        prop_assert_eq!(error, None);
    }

    #[test]
    fn control_decoding_is_total_and_every_answer_is_well_formed(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut decoder = ControlDecoder::new();
        for piece in chunks(&bytes, &cuts) {
            if let Some(request) = decoder.push(&piece) {
                let encoded = answer(&request).response.encode();
                prop_assert!(encoded.len() >= 4 && encoded.len() <= CONTROL_RESPONSE_MAX);
                prop_assert_eq!(encoded.len() % 4, 0);
            }
        }
        if let Err(error) = decoder.finish() {
            prop_assert_eq!(&*error.response().encode(), &[0, 0, 0, 3]);
        }
        prop_assert!(!decoder.is_mid_request());
    }

    #[test]
    fn a_control_request_decodes_the_same_in_two_reads(
        request in control_request(),
        cut in any::<usize>(),
    ) {
        let mut whole = ControlDecoder::new();
        let expected = whole.push(&request);
        let mut split = ControlDecoder::new();
        let cut = cut % (request.len() + 1);
        let first = split.push(&request[..cut]);
        let decoded = match first {
            Some(decoded) => Some(decoded),
            None => split.push(&request[cut..]),
        };
        prop_assert_eq!(decoded, expected);
        if let Some(ControlRequest::Unknown { code }) = decoded {
            prop_assert!(code == 0 || code > 0x12);
        }
    }

    #[test]
    fn a_data_connection_answers_every_command_once_and_in_order(
        commands in proptest::collection::vec(valid_command(), 1..5),
        tail in proptest::collection::vec(any::<u8>(), 0..12),
        answer_order_seed in any::<u64>(),
    ) {
        let mut connection = DataConnection::new();
        let mut stream: Vec<u8> = commands.concat();
        stream.extend_from_slice(&tail);
        connection.receive(&stream);
        connection.input_closed();
        let mut tickets = Vec::new();
        while let Some((ticket, _)) = connection.next_command() {
            tickets.push(ticket);
        }
        prop_assert!(tickets.len() >= commands.len());
        // Answer in a scrambled order; each answer's size tells the commands apart.
        let mut order: Vec<usize> = (0..tickets.len()).collect();
        let mut seed = answer_order_seed;
        for index in (1..order.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(index, (seed >> 33) as usize % (index + 1));
        }
        for &index in &order {
            let len = 10 + index as u32;
            let mut bytes = vec![0u8; len as usize];
            bytes[2..6].copy_from_slice(&len.to_be_bytes());
            let response = TpmResponse::Response { bytes: heapless::Vec::from_slice(&bytes).unwrap() };
            connection.answer(tickets[index], &response).unwrap();
        }
        let outputs: Vec<DataOutput> = std::iter::from_fn(|| connection.poll_output()).collect();
        prop_assert_eq!(outputs.last(), Some(&DataOutput::Close));
        let writes: Vec<usize> = outputs
            .iter()
            .filter_map(|output| match output {
                DataOutput::Write(bytes) => Some(bytes.len()),
                DataOutput::Close => None,
            })
            .collect();
        let expected_answers: Vec<usize> = (0..tickets.len()).map(|index| 10 + index).collect();
        prop_assert_eq!(&writes[..tickets.len()], &expected_answers[..]);
        // A trailing fragment or bad frame adds exactly one TPM_RC_COMMAND_SIZE answer.
        let extra = writes.len() - tickets.len();
        prop_assert_eq!(extra, usize::from(connection.framing_error().is_some()));
        prop_assert!(connection.is_closed());
    }

    #[test]
    fn no_tpmd_error_leaves_a_client_without_a_tpm_answer(
        retryable in any::<bool>(),
        code in any::<u32>(),
    ) {
        let error = if retryable {
            TpmError::Retryable
        } else {
            TpmError::Tee { code, origin: 3 }
        };
        let response = TpmResponse::Error(error);
        let wire = tpmd::swtpm::response_bytes(&response);
        prop_assert_eq!(wire.len(), 10);
        prop_assert_eq!(&wire[0..6], &[0x80, 0x01, 0, 0, 0, 10]);
        prop_assert_eq!(u32::from_be_bytes(wire[6..10].try_into().unwrap()), error.to_tpm_rc());
    }
}
