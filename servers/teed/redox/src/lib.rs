//! teed on Redox, the bgad shape: the core is `teed::Teed`, unchanged; [`TeeScheme`] is the
//! `tee` scheme adapter (plain code, tested on the host); `main.rs` is the Redox-only main.
//!
//! The SMC conduit is the kernel `smc` scheme described in `libs/tee-redox/SMC.md`, which Redox
//! does not have: teed opens one handle per function id it issues ([`smc`]), the same shape as
//! seL4's badged SMC capabilities (`smc_caps`). Physical memory (its frames, the journal and the
//! clients' windows) comes from a carve-out named on the command line ([`args`]) and mapped from
//! the kernel's `memory` scheme; each client maps its own window through teed's `window` path.

pub mod args;
pub mod scheme;
pub mod smc;

pub use crate::args::{Layout, TeedArgs};
pub use crate::scheme::{Placed, TeeScheme, WindowMap};
pub use crate::smc::{cap_path, SchemeCap, SmcFile, SmcFileError};
