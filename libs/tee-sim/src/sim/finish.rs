//! The end of every run. The random faults stop; a last orderly kexec must complete its
//! shutdown and leave nothing in the secure world (no registration, no session, no cached
//! buffer); and the boot after it must serve: the TPM consumer gets correct answers, so a TPM
//! that only ever answers with (typed, acceptable) errors cannot pass a run.

use super::net::{Channel, Message};
use super::{Sim, SimFailure};

/// Correct TPM answers the boot after the last kexec must give: Startup, then GetRandom.
pub const MIN_TPM_CORRECT: u64 = 2;
/// TPM commands the last boot gets to give them (a retryable answer may cost one).
const MAX_COMMANDS: u32 = 4;

impl Sim {
    /// Ends the run: a last orderly kexec must leave nothing behind, and the next boot serve.
    pub(crate) fn finish(&mut self) -> Result<(), SimFailure> {
        self.cfg.faults.kill_mid_step = 0.0;
        self.cfg.faults.crash_mid_step = 0.0;
        if let Some(aim) = self.cover.as_mut().and_then(|c| c.aim.as_mut()) {
            aim.on = false;
        }
        self.settle()?;
        if self.cfg.expect_fixed {
            // A world that does not serve (the crash kernel, a declined probe) cannot release
            // what earlier ones left: the next normal boot's probe reclaims it first.
            if !self.teed.as_ref().is_some_and(|t| t.is_serving()) {
                self.last_kexec()?;
            }
            self.checker.expect_clean_transition();
            self.last_kexec()?;
            self.consumers_answer()?;
        }
        self.stats.orphans_resumed = self.checker.orphans_resumed;
        self.stats.reclaimed = self.checker.reclaimed;
        Ok(())
    }

    /// An orderly kexec, up to the next boot settling; it must happen.
    fn last_kexec(&mut self) -> Result<(), SimFailure> {
        let before = self.transitions.len();
        self.note("finish: orderly kexec".into());
        self.stats.kexecs += 1;
        self.init.request_kexec(self.now);
        self.drain_init()?;
        self.settle()?;
        if self.transitions.len() == before {
            return Err(self.fail("the last orderly kexec never happened"));
        }
        Ok(())
    }

    /// The boot after the last kexec answers the TPM consumer correctly.
    fn consumers_answer(&mut self) -> Result<(), SimFailure> {
        let before = self.tpm_consumer.correct;
        for _ in 0..MAX_COMMANDS {
            if self.tpm_consumer.correct - before >= MIN_TPM_CORRECT {
                break;
            }
            if self.tpmd.is_some() && self.tpm_consumer.idle() {
                let frame = self.tpm_consumer.next_request();
                self.net
                    .push(Channel::ConsumerToTpmd, Message::TpmRequest(1, frame));
            }
            self.settle()?;
        }
        let correct = self.tpm_consumer.correct - before;
        if correct < MIN_TPM_CORRECT {
            return Err(self.fail(format!(
                "tpm: {correct} correct answers after the last kexec, {MIN_TPM_CORRECT} \
                 required ({} answers this run, {} of them typed errors)",
                self.tpm_consumer.answered, self.tpm_consumer.errors
            )));
        }
        Ok(())
    }
}
