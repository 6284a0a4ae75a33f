//! Test support for teesys, linked by tests only (dev-dependency), never by a product binary.
//!
//! * [`normal_world`]: a minimal normal world driving the OP-TEE model in process, so the
//!   model's tests read as a sequence of commands.
//! * [`fuzz`]: the replay of the committed fuzz inputs through each target's check.
//! * [`hosted`]: the secure-world process and servers started the way init starts them, with
//!   init's side of the lifecycle protocol, for process tests.
//!
//! Server tests reach the secure world and the TPM engine only through this crate (the
//! re-exports below), so no server crate depends on the secure world, even in its tests.

pub mod fuzz;
pub mod hosted;
pub mod normal_world;

pub use bnxt_image;
pub use libtpms;
pub use secure_world;
