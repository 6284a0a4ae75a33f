//! The OP-TEE normal-world ABI: SMC function ids and return codes (`optee_smc.h`), the message
//! format (`optee_msg.h`), RPC commands (`optee_rpc_cmd.h`), TEE Client API result codes, UUIDs in
//! OP-TEE's octet order and non-contiguous page lists.
//!
//! Declarations and pure encode/decode only: no loops, retries or state. Decoding is total: any
//! byte string gives a value or an [`AbiError`], never a panic.
#![no_std]

pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod mem;
pub mod msg;
pub mod pagelist;
pub mod smc;
pub mod teec;
pub mod uuid;

pub use error::AbiError;
