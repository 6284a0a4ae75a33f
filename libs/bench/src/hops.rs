//! One hop at a time: a null request client → teed → reply, and one fast SMC teed → secure
//! world → teed, each on the real processes and sockets.

use std::io;
use std::time::Duration;

use optee_abi::smc::func;
use tee_proto::lifecycle::ServerKind;
use tee_proto::teed::{TeedRequest, TeedResponse};
use tee_proto::{Frame, Header, WireError, FRAME_MAX};
use tee_rt::conduit::{SmcConduit, UnixConduit};
use tee_rt::endpoint::Endpoint;
use tee_test_support::hosted::{
    connect_client, start_teed, SecureWorldProcess, ServerProcess, COLD_BOOT,
};

/// RAM of the secure world these hops run against (sparse).
const RAM_BYTES: u64 = 1 << 30;

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// A secure-world process and a teed on it, with one client endpoint.
pub struct TeedHop {
    client: Endpoint,
    buf: Vec<u8>,
    next_id: u32,
    /// Bytes of one encoded null request.
    pub request_bytes: usize,
    _teed: ServerProcess,
    _world: SecureWorldProcess,
}

/// teed answers this at once, with no SMC: the session does not exist (client.rs
/// owned_session), so the request is decoded, dispatched and answered, nothing else.
fn null_request(id: u32) -> Frame<TeedRequest> {
    Frame {
        header: Header::new(1, 1, id),
        body: TeedRequest::CloseSession { session: 0xdead },
    }
}

impl TeedHop {
    pub fn start() -> io::Result<TeedHop> {
        let world = SecureWorldProcess::start("bench-teed", RAM_BYTES)?;
        let teed = start_teed(&world, 1, COLD_BOOT, Duration::from_secs(20)).map_err(other)?;
        let client = connect_client(&teed, 1, 2, ServerKind::Tpmd, 1).map_err(other)?;
        let mut scratch = [0u8; FRAME_MAX];
        let request_bytes = tee_proto::encode(&null_request(0), &mut scratch)
            .map_err(other)?
            .len();
        Ok(TeedHop {
            client,
            buf: vec![0u8; FRAME_MAX],
            next_id: 1,
            request_bytes,
            _teed: teed,
            _world: world,
        })
    }

    /// One null request and its answer (`NotFound`, as teed gives for an unknown session).
    pub fn null_round_trip(&mut self) -> io::Result<()> {
        self.next_id = self.next_id.wrapping_add(1);
        self.client
            .send_frame(&null_request(self.next_id), &[])
            .map_err(other)?;
        let (len, _) = self
            .client
            .recv(&mut self.buf)
            .map_err(other)?
            .ok_or_else(|| other("teed closed the endpoint"))?;
        let reply: Frame<TeedResponse> = tee_proto::decode(&self.buf[..len]).map_err(other)?;
        match reply.body {
            TeedResponse::Error(WireError::NotFound) if reply.header.request_id == self.next_id => {
                Ok(())
            }
            other_reply => Err(other(format!("unexpected {other_reply:?}"))),
        }
    }
}

/// The conduit of a secure-world process, held as teed holds it.
pub struct SmcHop {
    conduit: UnixConduit,
    _world: SecureWorldProcess,
}

impl SmcHop {
    pub fn start() -> io::Result<SmcHop> {
        let world = SecureWorldProcess::start("bench-smc", RAM_BYTES)?;
        let conduit = UnixConduit::from_stream(world.connect_conduit()?);
        Ok(SmcHop {
            conduit,
            _world: world,
        })
    }

    /// One fast call (GET_OS_REVISION: entry_fast.c answers it from constants).
    pub fn fast_call(&mut self) -> io::Result<()> {
        let regs = [u64::from(func::GET_OS_REVISION), 0, 0, 0, 0, 0, 0, 0];
        let answer = self.conduit.call(regs).map_err(other)?;
        if answer[0] == u64::from(optee_abi::smc::ret::UNKNOWN_FUNCTION) {
            return Err(other("GET_OS_REVISION unknown"));
        }
        Ok(())
    }
}
