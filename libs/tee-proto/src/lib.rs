//! The one declaration of every teesys IPC protocol.
//!
//! Six interfaces, each in its own module, each a request enum and a response enum:
//!
//! | module        | requester          | responder            |
//! |---------------|--------------------|----------------------|
//! | [`teed`]      | tpmd, bnxtd        | teed                 |
//! | [`lifecycle`] | init               | every server         |
//! | [`tpm`]       | a TPM consumer     | tpmd                 |
//! | [`bnxt`]      | the NIC driver     | bnxtd                |
//! | [`control`]   | teectl (operator)  | init (hosted)        |
//! | [`secure`]    | init, teectl       | the secure world (hosted) |
//!
//! Every message travels inside a [`Frame`]: a versioned [`Header`] that names the sender's
//! generation and its view of the receiver's, then the body. Frames are postcard-encoded and
//! bounded by [`FRAME_MAX`]; decoding is total (any byte string gives a value or a typed
//! [`ProtoError`], never a panic). Bounded collections are heapless 0.9 types; postcard's own
//! `heapless` feature would pin heapless 0.7, so it is not used.
//!
//! A receiver answers a frame addressed to an older incarnation of itself
//! ([`Header::is_stale_for`]) with the interface's "server restarted" error
//! ([`Interface::server_restarted`]), so clients learn of restarts from the transport;
//! [`accept_request`] does that screening for any [`Interface`].
#![no_std]

pub mod bnxt;
mod byte_vec;
pub mod control;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod grants;
pub mod interface;
pub mod lifecycle;
pub mod secure;
mod shared;
pub mod teed;
pub mod tpm;

pub use error::{ProtoError, WireError};
pub use frame::{
    decode, decode_header, encode, Frame, FramePart, Generation, Header, FRAME_MAX,
    PROTOCOL_VERSION,
};
pub use interface::{
    accept_request, BnxtInterface, Incoming, Interface, LifecycleInterface, TeedInterface,
    TpmInterface,
};
