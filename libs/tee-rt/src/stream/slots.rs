//! Who keeps a connection slot: the fairness policy every server applies to the peers it
//! accepts, as plain state (no sockets, no clock), so it is tested alone.
//!
//! A server has a fixed number of slots per listener family. The shell reports what each
//! connection is doing after every event ([`Activity`]); [`Slots`] answers three questions:
//! * may a new connection in ([`Slots::admit`]): when every slot is taken, the stalest
//!   connection that waits on nothing from the server is evicted first, and only when every
//!   slot waits on the server is the newcomer refused;
//! * whose deadline passed ([`Slots::expired`]): a connection idle for `idle_ms`, or stalled for
//!   `frame_ms` inside a frame it started or on answers it does not read, loses its slot;
//! * when to look again ([`Slots::next_deadline`]).
//!
//! A connection the server owes an answer has no deadline here: it is waiting on the server,
//! whose own deadlines bound that wait. Bytes that do not complete a frame are no progress, so
//! a peer trickling a byte at a time is as stale as one that sends nothing, and one frame's
//! deadline runs from its first byte however the rest is paced.

use std::collections::BTreeMap;
use std::vec::Vec;

use crate::clock::Millis;

/// How many connections, and how long each may idle or stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Connections kept at once.
    pub capacity: usize,
    /// A connection with nothing started and nothing owed loses its slot after this long.
    pub idle_ms: Millis,
    /// A frame must arrive whole, and an answer be taken, within this long.
    pub frame_ms: Millis,
}

/// What a connection is doing, as its shell sees it after an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// A whole frame arrived or answer bytes went out since the last report.
    pub progressed: bool,
    /// Bytes of a frame that is not whole yet are held.
    pub partial: bool,
    /// Requests of this connection the server has not answered yet.
    pub owed: usize,
    /// Answer bytes wait for the peer to read.
    pub unsent: bool,
}

/// The verdict on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission<K> {
    /// A free slot took it.
    Admitted,
    /// It took the slot of this connection, which the shell must now close.
    Evicted(K),
    /// Every slot waits on the server: the newcomer is closed.
    Refused,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When the connection last made progress (connected, a whole frame, answer bytes out).
    progress_at: Millis,
    /// When the frame being received started, while the peer is the one to move.
    frame_since: Option<Millis>,
    /// When answers started waiting for the peer to read them.
    unsent_since: Option<Millis>,
    owed: usize,
}

impl Slot {
    fn deadline(&self, limits: &SlotLimits) -> Option<Millis> {
        let stalled = [self.frame_since, self.unsent_since]
            .into_iter()
            .flatten()
            .map(|since| since.saturating_add(limits.frame_ms))
            .min();
        let idle = (self.owed == 0 && self.frame_since.is_none() && self.unsent_since.is_none())
            .then(|| self.progress_at.saturating_add(limits.idle_ms));
        stalled.into_iter().chain(idle).min()
    }

    fn evictable(&self) -> bool {
        self.owed == 0
    }
}

/// The slots of one listener family, keyed by the shell's connection names.
#[derive(Debug, Clone)]
pub struct Slots<K> {
    limits: SlotLimits,
    slots: BTreeMap<K, Slot>,
}

impl<K: Ord + Copy> Slots<K> {
    pub fn new(limits: SlotLimits) -> Slots<K> {
        Slots {
            limits,
            slots: BTreeMap::new(),
        }
    }

    pub fn limits(&self) -> SlotLimits {
        self.limits
    }

    /// Connections holding a slot.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn contains(&self, key: K) -> bool {
        self.slots.contains_key(&key)
    }

    /// A connection `key` was accepted at `now`. Keys must be new.
    pub fn admit(&mut self, now: Millis, key: K) -> Admission<K> {
        let mut admission = Admission::Admitted;
        if self.slots.len() >= self.limits.capacity {
            match self.stalest() {
                Some(victim) => {
                    self.slots.remove(&victim);
                    admission = Admission::Evicted(victim);
                }
                None => return Admission::Refused,
            }
        }
        self.slots.insert(
            key,
            Slot {
                progress_at: now,
                frame_since: None,
                unsent_since: None,
                owed: 0,
            },
        );
        admission
    }

    /// The connection that made no progress for longest among those the server owes nothing;
    /// the oldest connection breaks a tie.
    pub fn stalest(&self) -> Option<K> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.evictable())
            .min_by_key(|(key, slot)| (slot.progress_at, **key))
            .map(|(key, _)| *key)
    }

    /// What connection `key` is doing at `now`; unknown keys are ignored.
    pub fn observe(&mut self, now: Millis, key: K, activity: Activity) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        if activity.progressed {
            slot.progress_at = now;
        }
        // A frame's clock runs from its first byte, and only while the peer is the one to
        // move: while an answer is owed, the shell may have stopped reading mid-frame itself.
        slot.frame_since = if activity.partial && activity.owed == 0 {
            match slot.frame_since {
                Some(since) if !activity.progressed => Some(since),
                _ => Some(now),
            }
        } else {
            None
        };
        slot.unsent_since = if activity.unsent {
            match slot.unsent_since {
                Some(since) if !activity.progressed => Some(since),
                _ => Some(now),
            }
        } else {
            None
        };
        slot.owed = activity.owed;
    }

    /// Forgets a connection that closed.
    pub fn remove(&mut self, key: K) {
        self.slots.remove(&key);
    }

    /// Connections whose deadline has passed at `now`; the shell closes each and
    /// [`removes`](Slots::remove) it.
    pub fn expired(&self, now: Millis) -> Vec<K> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.deadline(&self.limits).is_some_and(|at| at <= now))
            .map(|(key, _)| *key)
            .collect()
    }

    /// The earliest deadline of any connection.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.slots
            .values()
            .filter_map(|slot| slot.deadline(&self.limits))
            .min()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
