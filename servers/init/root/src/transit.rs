//! A transition between normal worlds, carried out without blocking: once the old world's
//! servers are gone, init asks the secure world what they left behind and, for a machine
//! reset, resets it, each as an asynchronous request with a deadline; the next world boots
//! when the answer comes or the deadline passes. Meanwhile init keeps serving `init.ctl`.

use tee_proto::lifecycle::BootKind;
use tee_proto::secure::{SecureRequest, SecureResponse};
use teesys_init::{Transition, SERVERS};

use crate::control_state::{Stage, Transit};
use crate::secure_link::SecureAnswer;
use crate::shell::Host;

/// How long the secure world gets to say what the old world left behind; past it the report
/// shows nothing for the transition.
const LEFT_STATS_MS: u64 = 1_000;

/// How long a machine reset of the secure world may take before init boots anyway (the
/// fTPM's state file is read back, so it takes longer than a statistics request).
const RESET_MS: u64 = 5_000;

impl Host {
    /// Tears the normal world down and starts on the next one.
    pub(super) fn transition(&mut self, transition: Transition) {
        for kind in SERVERS {
            self.stop(kind);
        }
        let next = (!self.down.requested).then_some(match transition {
            Transition::Kexec => BootKind::Kexec,
            Transition::EnterCrashKernel => BootKind::CrashKernel,
            Transition::Reset => BootKind::Reset,
        });
        tracing::info!(?transition, "transition");
        let waiting = self.ask_secure(SecureRequest::Stats, LEFT_STATS_MS);
        self.transit = Some(Transit {
            next,
            stage: Stage::LeftStats,
            waiting,
        });
        if waiting.is_none() {
            self.transit_step(None);
        }
    }

    /// Sends a request to the secure world; `None` (logged) when it cannot be sent.
    pub(super) fn ask_secure(&mut self, request: SecureRequest, within_ms: u64) -> Option<u32> {
        let now = self.now();
        match self.secure.send(now, request, within_ms) {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(%error, ?request, "secure world request not sent");
                None
            }
        }
    }

    /// Answers (or failures) from the secure world, for the transition or for replies.
    pub(super) fn on_secure_answers(&mut self, answers: Vec<(u32, SecureAnswer)>) {
        for (id, answer) in answers {
            if self
                .transit
                .is_some_and(|transit| transit.waiting == Some(id))
            {
                self.transit_step(Some(answer));
            } else {
                self.record_secure(id, answer);
            }
        }
    }

    /// The transition's request was answered (`None`: it was never sent); on to the next step.
    fn transit_step(&mut self, answer: Option<SecureAnswer>) {
        let Some(transit) = self.transit else {
            return;
        };
        match transit.stage {
            Stage::LeftStats => {
                self.left_at_transition = match answer {
                    Some(SecureAnswer::Answered(SecureResponse::Stats(stats))) => Some(stats),
                    other => {
                        tracing::warn!(?other, "secure world statistics unavailable");
                        None
                    }
                };
                match transit.next {
                    None => {
                        tracing::info!("normal world down; not booting again");
                        self.transit = None;
                        self.down.finished = true;
                    }
                    Some(BootKind::Reset) => {
                        // The reset restarts the secure world's side: a fresh connection.
                        let failed = self.secure.reconnect();
                        self.on_secure_answers(failed);
                        let waiting = self.ask_secure(SecureRequest::Reset, RESET_MS);
                        self.transit = Some(Transit {
                            stage: Stage::Reset,
                            waiting,
                            ..transit
                        });
                        if waiting.is_none() {
                            self.transit_step(None);
                        }
                    }
                    Some(kind) => self.boot_next(kind),
                }
            }
            Stage::Reset => {
                match answer {
                    Some(SecureAnswer::Answered(SecureResponse::ResetDone)) => {
                        tracing::info!("secure world reset")
                    }
                    other => {
                        tracing::error!(?other, "secure world reset failed; booting anyway")
                    }
                }
                let failed = self.secure.reconnect();
                self.on_secure_answers(failed);
                self.boot_next(BootKind::Reset);
            }
        }
    }

    fn boot_next(&mut self, kind: BootKind) {
        self.transit = None;
        let now = self.now();
        self.sup.boot(now, kind);
    }
}
