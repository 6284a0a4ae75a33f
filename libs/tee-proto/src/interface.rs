//! Each interface as a type, so a runtime can serve or call any of them generically and answer
//! stale or malformed frames without knowing the interface.

use core::fmt::Debug;

use serde::{de::DeserializeOwned, Serialize};

use crate::bnxt::{BnxtError, BnxtRequest, BnxtResponse};
use crate::error::{ProtoError, WireError};
use crate::frame::{decode, decode_header, Frame, Generation};
use crate::lifecycle::{InitRequest, ServerEvent};
use crate::teed::{TeedRequest, TeedResponse};
use crate::tpm::{TpmError, TpmRequest, TpmResponse};

/// A request/response protocol between two parties.
pub trait Interface {
    /// Short name for logs.
    const NAME: &'static str;
    /// What the requester sends.
    type Request: Serialize + DeserializeOwned + Debug + Clone + PartialEq + Eq;
    /// What the responder answers, one per request.
    type Response: Serialize + DeserializeOwned + Debug + Clone + PartialEq + Eq;

    /// The answer to a frame addressed to an earlier incarnation of the responder, which is now
    /// `generation`.
    fn server_restarted(generation: Generation) -> Self::Response;

    /// The answer to a frame whose header decoded but whose body did not.
    fn bad_request() -> Self::Response;
}

/// Client ↔ teed ([`crate::teed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeedInterface {}

/// init ↔ every server ([`crate::lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleInterface {}

/// TPM consumer ↔ tpmd ([`crate::tpm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmInterface {}

/// NIC driver ↔ bnxtd ([`crate::bnxt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnxtInterface {}

impl Interface for TeedInterface {
    const NAME: &'static str = "teed";
    type Request = TeedRequest;
    type Response = TeedResponse;

    fn server_restarted(generation: Generation) -> TeedResponse {
        TeedResponse::Error(WireError::ServerRestarted { generation })
    }

    fn bad_request() -> TeedResponse {
        TeedResponse::Error(WireError::BadRequest)
    }
}

impl Interface for LifecycleInterface {
    const NAME: &'static str = "lifecycle";
    type Request = InitRequest;
    type Response = ServerEvent;

    fn server_restarted(generation: Generation) -> ServerEvent {
        ServerEvent::Error(WireError::ServerRestarted { generation })
    }

    fn bad_request() -> ServerEvent {
        ServerEvent::Error(WireError::BadRequest)
    }
}

impl Interface for TpmInterface {
    const NAME: &'static str = "tpm";
    type Request = TpmRequest;
    type Response = TpmResponse;

    fn server_restarted(generation: Generation) -> TpmResponse {
        TpmResponse::Error(TpmError::ServerRestarted { generation })
    }

    fn bad_request() -> TpmResponse {
        TpmResponse::Error(TpmError::BadRequest)
    }
}

impl Interface for BnxtInterface {
    const NAME: &'static str = "bnxt";
    type Request = BnxtRequest;
    type Response = BnxtResponse;

    fn server_restarted(generation: Generation) -> BnxtResponse {
        BnxtResponse::Error(BnxtError::ServerRestarted { generation })
    }

    fn bad_request() -> BnxtResponse {
        BnxtResponse::Error(BnxtError::BadRequest)
    }
}

/// What a responder should do with one received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<I: Interface> {
    /// A request for this incarnation: handle it.
    Request(Frame<I::Request>),
    /// Answer at once with this frame (stale generation or malformed body) and handle nothing.
    Answer(Frame<I::Response>),
    /// Not even the header decoded (or the version differs): there is no one to answer.
    Drop(ProtoError),
}

/// Screens a received frame for a responder of generation `my_generation`: staleness is checked
/// before the body is decoded, so a predecessor's client always learns of the restart.
pub fn accept_request<I: Interface>(bytes: &[u8], my_generation: Generation) -> Incoming<I> {
    let header = match decode_header(bytes) {
        Ok((header, _)) => header,
        Err(error) => return Incoming::Drop(error),
    };
    let reply_header = header.reply_to(my_generation);
    if header.is_stale_for(my_generation) {
        return Incoming::Answer(Frame {
            header: reply_header,
            body: I::server_restarted(my_generation),
        });
    }
    match decode::<I::Request>(bytes) {
        Ok(frame) => Incoming::Request(frame),
        Err(_) => Incoming::Answer(Frame {
            header: reply_header,
            body: I::bad_request(),
        }),
    }
}
