//! Whose request goes to the core next: each consumer has at most one request in the core at
//! a time and a bounded queue of its own behind it, as plain state.
//!
//! A client core serves its queue in arrival order, one request at a time. With at most one
//! request per consumer in that queue, arrival order is round-robin: a consumer's next request
//! joins the back of the queue only once its previous one is answered, so a consumer that
//! floods delays another by at most one request per turn. What a consumer sends beyond that
//! waits in its own queue here (at most `depth`), and past that in its socket, unread.

use std::collections::{BTreeMap, VecDeque};

/// The consumer's queue is full: stop reading it until an answer goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the consumer's queue of {depth} requests is full")]
pub struct QueueFull {
    pub depth: usize,
}

#[derive(Debug)]
struct Lane<R> {
    in_core: bool,
    held: VecDeque<R>,
}

/// Per-consumer turns for requests of type `R`.
#[derive(Debug)]
pub struct Turns<K, R> {
    depth: usize,
    lanes: BTreeMap<K, Lane<R>>,
}

impl<K: Ord + Copy, R> Turns<K, R> {
    /// Up to `depth` requests wait per consumer besides the one in the core.
    pub fn new(depth: usize) -> Turns<K, R> {
        Turns {
            depth,
            lanes: BTreeMap::new(),
        }
    }

    /// A request from `key`: `Ok(Some(request))` when it may go to the core now, `Ok(None)`
    /// when it waits its turn, `Err` (with the request back) when the consumer's queue is full.
    pub fn push(&mut self, key: K, request: R) -> Result<Option<R>, (QueueFull, R)> {
        let depth = self.depth;
        let lane = self.lanes.entry(key).or_insert_with(|| Lane {
            in_core: false,
            held: VecDeque::new(),
        });
        if !lane.in_core {
            lane.in_core = true;
            return Ok(Some(request));
        }
        if lane.held.len() >= depth {
            return Err((QueueFull { depth }, request));
        }
        lane.held.push_back(request);
        Ok(None)
    }

    /// The core answered `key`'s request: its next one, if any, goes to the core now.
    pub fn answered(&mut self, key: K) -> Option<R> {
        let lane = self.lanes.get_mut(&key)?;
        match lane.held.pop_front() {
            Some(next) => Some(next),
            None => {
                self.lanes.remove(&key);
                None
            }
        }
    }

    /// Whether `key` may send more now (its queue has room).
    pub fn has_room(&self, key: K) -> bool {
        self.lanes
            .get(&key)
            .is_none_or(|lane| !lane.in_core || lane.held.len() < self.depth)
    }

    /// Requests of `key` in the core or waiting.
    pub fn pending(&self, key: K) -> usize {
        self.lanes
            .get(&key)
            .map_or(0, |lane| usize::from(lane.in_core) + lane.held.len())
    }

    /// The consumer left: what it had waiting is dropped.
    pub fn remove(&mut self, key: K) {
        self.lanes.remove(&key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A client core as far as order goes: one queue, served front first, one at a time.
    struct FifoCore(VecDeque<(char, u32)>);

    impl FifoCore {
        fn take(&mut self, turns: &mut Turns<char, (char, u32)>, key: char, n: u32) {
            if let Some(request) = turns.push(key, (key, n)).unwrap() {
                self.0.push_back(request);
            }
        }

        /// Serves the front request and lets its consumer's next one in.
        fn serve(&mut self, turns: &mut Turns<char, (char, u32)>) -> (char, u32) {
            let served = self.0.pop_front().unwrap();
            if let Some(next) = turns.answered(served.0) {
                self.0.push_back(next);
            }
            served
        }
    }

    #[test]
    fn a_flooding_consumer_delays_another_by_one_request_per_turn() {
        let mut turns = Turns::new(8);
        let mut core = FifoCore(VecDeque::new());
        for n in 0..6 {
            core.take(&mut turns, 'a', n);
        }
        core.take(&mut turns, 'b', 0);
        core.take(&mut turns, 'b', 1);
        core.take(&mut turns, 'c', 0);
        let order: Vec<_> = (0..9).map(|_| core.serve(&mut turns)).collect();
        assert_eq!(
            order,
            [
                ('a', 0),
                ('b', 0),
                ('c', 0),
                ('a', 1),
                ('b', 1),
                ('a', 2),
                ('a', 3),
                ('a', 4),
                ('a', 5)
            ]
        );
        assert!(core.0.is_empty());
        assert_eq!(turns.pending('a'), 0);
    }

    #[test]
    fn each_consumer_queue_is_bounded() {
        let mut turns: Turns<u8, u32> = Turns::new(2);
        assert_eq!(turns.push(1, 10), Ok(Some(10)));
        assert!(turns.has_room(1));
        assert_eq!(turns.push(1, 11), Ok(None));
        assert_eq!(turns.push(1, 12), Ok(None));
        assert!(!turns.has_room(1));
        assert_eq!(turns.push(1, 13), Err((QueueFull { depth: 2 }, 13)));
        assert_eq!(turns.pending(1), 3);
        // Another consumer is not held up by a full one.
        assert_eq!(turns.push(2, 20), Ok(Some(20)));
        assert_eq!(turns.answered(1), Some(11));
        assert!(turns.has_room(1));
        turns.remove(1);
        assert_eq!(turns.pending(1), 0);
        assert_eq!(turns.answered(1), None);
    }
}
