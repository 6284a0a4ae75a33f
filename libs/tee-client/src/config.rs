//! Deadlines and test-only switches of a TEE client server (tpmd, bnxtd).
//!
//! Every wait the core can enter is bounded by one of these deadlines, so a silent teed or
//! secure world never hangs a consumer, init or the shutdown path.

/// Milliseconds on the shell's monotonic clock; the core never reads a clock itself.
pub type Millis = u64;

/// Every bound the client core applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// One request to teed, from send to reply. A little above teed's own call bound, so that
    /// teed's typed answer normally arrives before this fires.
    pub teed_call_ms: Millis,
    /// From `Hello` to `Ready`: failed start steps are retried until here, then the server
    /// declines.
    pub start_ms: Millis,
    /// First pause before retrying a failed session open or buffer allocation; it doubles on
    /// every further failure, up to `retry_max_ms`.
    pub retry_initial_ms: Millis,
    pub retry_max_ms: Millis,
    /// How long a consumer request may wait in the queue before it is answered "retry".
    pub queue_wait_ms: Millis,
    /// From an orderly `Shutdown` (kexec, reboot) to the ack; below init's own wait.
    pub shutdown_ms: Millis,
    /// From a `Shutdown` on the crash path to the ack; init waits only briefly there.
    pub crash_shutdown_ms: Millis,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            teed_call_ms: 6_000,
            start_ms: 15_000,
            retry_initial_ms: 20,
            retry_max_ms: 1_000,
            queue_wait_ms: 30_000,
            shutdown_ms: 1_500,
            crash_shutdown_ms: 150,
        }
    }
}

/// Test-only switches that restore the behaviour of Linux before a fix of the series. Not
/// reachable from any production binary's flags; only tests and the simulator set them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientSeedBugs {
    /// The client has no shutdown hook (tee_bnxt_fw before 914ab19e471d): on `Shutdown` it
    /// acknowledges at once and releases nothing, so its registration and session outlive the
    /// normal world.
    pub no_shutdown_hook: bool,
}

/// Everything a client core is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientConfig {
    pub deadlines: Deadlines,
    #[doc(hidden)]
    pub seed_bugs: ClientSeedBugs,
}
