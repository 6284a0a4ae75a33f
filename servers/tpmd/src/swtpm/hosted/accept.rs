//! Taking new connections into the front-end's slots: a free slot, else the stalest
//! connection's, else the newcomer is closed.

use tee_client::ConsumerId;
use tee_rt::clock::Millis;
use tee_rt::stream::slots::Admission;
use tracing::{debug, warn};

use super::channel::{ControlChannel, DataChannel};
use super::{Channel, SwtpmFrontEnd, MAX_CONTROL_CONNECTIONS, MAX_DATA_CONNECTIONS};

impl SwtpmFrontEnd {
    /// Accepts every pending connection on listener `index`.
    pub(super) fn accept(&mut self, now: Millis, index: usize) {
        while let Some((channel, listener)) = self.listeners.get(index) {
            let channel = *channel;
            let socket = match listener.accept() {
                Ok(Some(socket)) => socket,
                Ok(None) => return,
                Err(error) => {
                    warn!(%error, "swtpm accept failed");
                    return;
                }
            };
            match channel {
                Channel::Data => {
                    let id = ConsumerId(self.next_data);
                    match self.data_slots.admit(now, id) {
                        Admission::Admitted => {}
                        Admission::Evicted(victim) => {
                            warn!(
                                consumer = victim.0,
                                limit = MAX_DATA_CONNECTIONS,
                                "stalest swtpm data connection evicted for a new one"
                            );
                            self.drop_data(victim);
                        }
                        Admission::Refused => {
                            warn!(
                                limit = MAX_DATA_CONNECTIONS,
                                "swtpm data connection refused: every slot waits on tpmd"
                            );
                            continue;
                        }
                    }
                    self.next_data += 1;
                    debug!(consumer = id.0, "swtpm data connection");
                    self.data.insert(id, DataChannel::new(socket));
                }
                Channel::Control => {
                    let number = self.next_control;
                    match self.control_slots.admit(now, number) {
                        Admission::Admitted => {}
                        Admission::Evicted(victim) => {
                            warn!(
                                limit = MAX_CONTROL_CONNECTIONS,
                                "stalest swtpm control connection evicted for a new one"
                            );
                            self.control.remove(&victim);
                        }
                        Admission::Refused => {
                            warn!(
                                limit = MAX_CONTROL_CONNECTIONS,
                                "swtpm control connection refused"
                            );
                            continue;
                        }
                    }
                    self.next_control += 1;
                    self.control.insert(number, ControlChannel::new(socket));
                }
            }
        }
    }
}
