//! Scripted runs for the seed scenarios: the same machine as the random runs, with the random
//! faults off and the operations chosen by the test.

use secure_world::Stats as SecureStats;
use tee_proto::bnxt::{BnxtRequest, BnxtResponse};
use tee_proto::lifecycle::ServerKind;
use tee_proto::tpm::{TpmRequest, TpmResponse};
use tee_proto::{Frame, Header};
use teed::Teed;
use teesys_init::{BootSummary, StartOutcome, SupervisorView};

use super::{Sim, SimConfig, SimFailure};
use crate::ram::SharedRam;

/// What the secure world held when the normal world went away, and how the next boot went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    pub secure: SecureStats,
    /// The orderly shutdown before it completed (the invariants' own test of completion).
    pub shutdown_completed: bool,
    pub booted: Option<BootSummary>,
}

/// The consumer id of TPM commands a script sends itself.
pub const SCRIPT_CONSUMER: u64 = 2;

impl Sim {
    /// Sends one TPM command through tpmd, as a consumer would, and settles; returns tpmd's
    /// answer (`None` when tpmd is not running or never answered).
    pub fn tpm(&mut self, command: &[u8]) -> Result<Option<TpmResponse>, SimFailure> {
        use super::net::{Channel, Message};
        let Ok(bytes) = heapless::Vec::from_slice(command) else {
            return Err(self.fail("scripted TPM command over 4096 bytes"));
        };
        self.script_answers.clear();
        let id = self.step as u32;
        let frame = Frame {
            header: Header::new(0, 0, id),
            body: TpmRequest::Command { bytes },
        };
        self.net.push(
            Channel::ConsumerToTpmd,
            Message::TpmRequest(SCRIPT_CONSUMER, frame),
        );
        self.settle()?;
        Ok(self.script_answers.pop())
    }

    /// Sends one request to bnxtd, as the NIC driver would, and settles; returns the answer.
    pub fn bnxt(&mut self, body: BnxtRequest) -> Result<Option<BnxtResponse>, SimFailure> {
        use super::net::{Channel, Message};
        self.script_bnxt_answers.clear();
        let frame = Frame {
            header: Header::new(0, 0, self.step as u32),
            body,
        };
        self.net.push(
            Channel::NicToBnxtd,
            Message::BnxtRequest(SCRIPT_CONSUMER, frame),
        );
        self.settle()?;
        Ok(self.script_bnxt_answers.pop())
    }

    /// Like [`Sim::tpm`], for a command that must succeed: the response bytes.
    pub fn tpm_ok(&mut self, command: &[u8]) -> Result<Vec<u8>, SimFailure> {
        match self.tpm(command)? {
            Some(TpmResponse::Response { bytes }) => Ok(bytes.to_vec()),
            other => Err(self.fail(format!("scripted TPM command answered {other:?}"))),
        }
    }

    /// A machine whose faults come only from the script.
    pub fn scripted(mut cfg: SimConfig) -> Sim {
        cfg.faults.ops = 0;
        cfg.faults.kill_mid_step = 0.0;
        cfg.faults.crash_mid_step = 0.0;
        cfg.faults.foreign_interrupts = false;
        Sim::new(cfg)
    }

    /// Boots the normal world (cold on a new machine) and lets it settle.
    pub fn power_on(&mut self) -> Result<(), SimFailure> {
        self.boot_pending()?;
        self.settle()
    }

    /// An orderly kexec, up to the next boot settling.
    pub fn kexec(&mut self) -> Result<(), SimFailure> {
        self.stats.kexecs += 1;
        self.init.request_kexec(self.now);
        self.drain_init()?;
        self.settle()
    }

    /// A machine reset, up to the next boot settling.
    pub fn reboot(&mut self) -> Result<(), SimFailure> {
        self.stats.resets += 1;
        self.init.request_reboot(self.now);
        self.drain_init()?;
        self.settle()
    }

    /// A crash (with or without the best-effort shutdown IPC), up to the crash kernel settling.
    pub fn crash(&mut self, shutdown_ipc: bool) -> Result<(), SimFailure> {
        self.stats.crashes += 1;
        self.init.request_crash(self.now, shutdown_ipc);
        self.drain_init()?;
        self.settle()
    }

    /// `rounds` rounds of consumer traffic, each settled.
    pub fn traffic(&mut self, rounds: u32) -> Result<(), SimFailure> {
        for _ in 0..rounds {
            self.consumer_traffic();
            self.settle()?;
        }
        Ok(())
    }

    /// kill -9 of a server; init restarts it.
    pub fn kill_server(&mut self, server: ServerKind) -> Result<(), SimFailure> {
        self.kill(server);
        self.drain_init()?;
        self.settle()
    }

    /// An operator's restart of `server` through init, settled.
    pub fn restart_server(&mut self, server: ServerKind) -> Result<(), SimFailure> {
        self.init.request_restart(self.now, server);
        self.drain_init()?;
        self.settle()
    }

    /// One forged request of a client naming the other's session or buffer, settled; the
    /// invariants check teed refuses it.
    pub fn forge(&mut self) -> Result<(), SimFailure> {
        self.hostile_frame();
        self.settle()
    }

    /// Starts consumer traffic and runs only `steps` steps of it, leaving the rest in flight.
    pub fn traffic_steps(&mut self, steps: u64) -> Result<(), SimFailure> {
        self.consumer_traffic();
        for _ in 0..steps {
            if !self.step_once()? {
                break;
            }
        }
        Ok(())
    }

    /// Asks init for a kexec and runs only `steps` steps of it.
    pub fn request_kexec_and_step(&mut self, steps: u64) -> Result<(), SimFailure> {
        self.stats.kexecs += 1;
        self.init.request_kexec(self.now);
        self.drain_init()?;
        for _ in 0..steps {
            if !self.step_once()? {
                break;
            }
        }
        Ok(())
    }

    /// The running teed, if any.
    pub fn teed(&self) -> Option<&Teed<SharedRam>> {
        self.teed.as_ref()
    }

    /// init's view.
    pub fn init_view(&self) -> SupervisorView {
        self.init.snapshot()
    }

    /// The summary of the last boot that finished.
    pub fn last_boot(&self) -> Option<BootSummary> {
        self.transitions
            .last()
            .and_then(|t| t.booted)
            .or(self.first_boot)
    }

    /// How `server` came up in the last boot.
    pub fn outcome(&self, server: ServerKind) -> Option<StartOutcome> {
        let boot = self.booted?;
        boot.servers
            .iter()
            .find(|s| s.server == server)
            .map(|s| s.outcome)
    }

    /// The typed errors teed answered `server`'s requests with since the last boot began (the
    /// first few hundred).
    pub fn teed_refusals(&self, server: ServerKind) -> Vec<tee_proto::WireError> {
        self.refusals
            .iter()
            .filter(|(kind, _)| *kind == server)
            .map(|(_, error)| *error)
            .collect()
    }

    /// One record per transition so far.
    pub fn transitions(&self) -> &[TransitionRecord] {
        &self.transitions
    }

    /// Virtual time, in milliseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The NIC driver's checked coredump chunks and the TPM consumer's answers.
    pub fn consumer_counts(&self) -> (u64, u64) {
        (self.nic.chunks_checked, self.tpm_consumer.answered)
    }
}
