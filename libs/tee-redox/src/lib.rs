//! teesys on Redox: the platform layer the three Redox daemons (`teed`, `tpmd`, `bnxtd`) share.
//!
//! A Redox daemon here has three layers, as Redox's own drivers do (bgad: device logic,
//! `scheme.rs`, `main.rs`):
//! * the **core**, unchanged: `teed::Teed`, or `tee_client::engine::Client` for tpmd and bnxtd;
//! * a **scheme adapter** (a [`SchemeAdapter`]): plain code that parses paths and buffers,
//!   checks the [`Caller`], calls the core and maps its own failures to errno
//!   ([`SchemeError::errno`]). Adapters never see redox-scheme's `CallerCtx` (tests cannot build
//!   one), so all of them are tested on the host;
//! * a **Redox-only main** (module `sys`, compiled only for `target_os = "redox"`): logging,
//!   resources, the scheme socket and its registration, the null namespace (`setrens(0, 0)`),
//!   readiness through `INIT_NOTIFY`, and one event loop that turns redox-scheme requests into
//!   adapter calls.
//!
//! Redox's init starts each daemon itself, so there is no teesys init to send `Hello`: each
//! daemon builds its own from its command line ([`boot`]), and the lifecycle protocol
//! (`Status`, `Shutdown`) reaches it through its scheme's `control` path, opened by root alone
//! ([`lifecycle`]). What the platform lacks (an SMC path, kexec, a crash kernel, restarts) is in
//! `sysroot/redox/README.md` and `libs/tee-redox/SMC.md`.

pub mod adapter;
pub mod boot;
pub mod caller;
pub mod client;
pub mod error;
pub mod handles;
pub mod lifecycle;
pub mod notify;
pub mod outbox;
pub mod policy;
pub mod ram;
#[cfg(target_os = "redox")]
pub mod sys;

pub use crate::adapter::{Ready, SchemeAdapter, Startup};
pub use crate::caller::Caller;
pub use crate::error::SchemeError;
pub use crate::ram::RegionRam;

/// Milliseconds on the daemon's monotonic clock, as the cores count them.
pub type Millis = u64;
