//! What a simulation run is made of: the cores' configurations and the faults it may inject.

use secure_world::{Config as SecureConfig, Profile};
use teed::TeedConfig;
use teesys_init::InitConfig;
use tpmd::ClientConfig;

/// How often each operation is chosen; 0 turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub traffic: u32,
    pub kexec: u32,
    pub reboot: u32,
    pub crash_with_ipc: u32,
    pub crash_without_ipc: u32,
    pub kill_teed: u32,
    pub kill_client: u32,
    pub operator_restart: u32,
    pub hostile_frame: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            traffic: 30,
            kexec: 20,
            reboot: 4,
            crash_with_ipc: 6,
            crash_without_ipc: 6,
            kill_teed: 8,
            kill_client: 8,
            operator_restart: 3,
            hostile_frame: 6,
        }
    }
}

/// Faults and their rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Operations per run.
    pub ops: u32,
    pub weights: Weights,
    /// Chance, at each step, that a server dies there and then (kill -9 between two steps).
    pub kill_mid_step: f64,
    /// Chance, at each step, that the normal world crashes there and then, with no shutdown IPC.
    pub crash_mid_step: f64,
    /// Give foreign interrupts to yielding calls, so crashes can leave threads suspended.
    pub foreign_interrupts: bool,
    /// Chance, at each step, that a secure-world driver raises an asynchronous notification
    /// (a bottom half or a wake-up value) and its interrupt reaches teed. Only profiles with
    /// asynchronous notifications draw it, so a 3.14 seed replays as it always did.
    pub notif_interrupt: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            ops: 24,
            weights: Weights::default(),
            kill_mid_step: 0.002,
            crash_mid_step: 0.001,
            foreign_interrupts: true,
            notif_interrupt: 0.01,
        }
    }
}

/// Deliberately broken behaviours of the simulator itself, all off by default: tests turn one
/// on to show that the checks catch what they claim to (a run with a break must fail, and
/// replay from its seed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaks {
    /// Every answer of tpmd reaches its consumer as a typed error: a TPM that always fails.
    pub tpm_always_fails: bool,
    /// A forged request travels on the victim's own channel, as if the shell had labelled it
    /// with the victim's identity: teed cannot tell it from the victim's own.
    pub forged_requests_as_victim: bool,
    /// The conduit rewrites a registration's cookie to one the secure world already retired.
    pub reuse_retired_cookies: bool,
    /// teed's shutdown acknowledgement never reaches init: no shutdown completes.
    pub lose_teed_shutdown_ack: bool,
}

/// One simulation run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub teed: TeedConfig,
    pub tpmd: ClientConfig,
    pub bnxtd: ClientConfig,
    pub init: InitConfig,
    pub secure: SecureConfig,
    pub faults: Faults,
    /// Check the invariants that hold only with every fix of the series in place.
    pub expect_fixed: bool,
    /// Broken behaviours of the simulator, for tests of the checks; none by default.
    pub breaks: Breaks,
}

impl SimConfig {
    /// Defaults everywhere, for `seed`, with the secure world answering as `profile`.
    pub fn for_profile(seed: u64, profile: Profile) -> SimConfig {
        SimConfig {
            secure: SecureConfig::for_profile(profile),
            ..SimConfig::new(seed)
        }
    }

    /// The OP-TEE profile the secure world answers as.
    pub fn profile(&self) -> Profile {
        self.secure.profile
    }

    /// Defaults everywhere, for `seed` (OP-TEE 3.14).
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            teed: TeedConfig::new(),
            tpmd: ClientConfig::default(),
            bnxtd: ClientConfig::default(),
            init: InitConfig::default(),
            secure: SecureConfig::default(),
            faults: Faults::default(),
            expect_fixed: true,
            breaks: Breaks::default(),
        }
    }
}
