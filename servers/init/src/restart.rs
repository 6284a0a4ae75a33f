//! Per-server crash accounting: how long to wait before the next incarnation, and when to stop
//! trying. Pure arithmetic on the times it is given.

use std::collections::VecDeque;

use crate::config::RestartPolicy;

/// What to do about a server that just died on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartDecision {
    RestartAfter {
        delay_ms: u64,
        deaths_in_window: u32,
    },
    GiveUp {
        deaths_in_window: u32,
        failed_starts: u32,
    },
}

/// Deaths of one server during one boot.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestartTracker {
    /// Times of recent deaths, oldest first; only those inside the window are kept.
    deaths: VecDeque<u64>,
    /// Incarnations in a row that died or timed out before answering `Hello`. Counted apart
    /// from the window because a start deadline can be longer than the window itself.
    failed_starts: u32,
}

impl RestartTracker {
    /// Records a death at `now`; `was_ready` says whether this incarnation ever reported
    /// `Ready`.
    pub(crate) fn record_death(
        &mut self,
        now: u64,
        was_ready: bool,
        policy: &RestartPolicy,
    ) -> RestartDecision {
        while let Some(&oldest) = self.deaths.front() {
            if now.saturating_sub(oldest) >= policy.window_ms {
                self.deaths.pop_front();
            } else {
                break;
            }
        }
        self.deaths.push_back(now);
        // Only "more than max_restarts" matters, so the history never needs to grow further.
        let keep = usize::try_from(policy.max_restarts)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        while self.deaths.len() > keep {
            self.deaths.pop_front();
        }
        if was_ready {
            self.failed_starts = 0;
        } else {
            self.failed_starts = self.failed_starts.saturating_add(1);
        }

        let deaths_in_window = u32::try_from(self.deaths.len()).unwrap_or(u32::MAX);
        if deaths_in_window > policy.max_restarts || self.failed_starts > policy.max_restarts {
            return RestartDecision::GiveUp {
                deaths_in_window,
                failed_starts: self.failed_starts,
            };
        }
        let doublings = deaths_in_window.saturating_sub(1).min(63);
        let delay_ms = policy
            .backoff_initial_ms
            .saturating_mul(1u64 << doublings)
            .min(policy.backoff_max_ms);
        RestartDecision::RestartAfter {
            delay_ms,
            deaths_in_window,
        }
    }

    /// The incarnation answered `Hello`: the next death is not a failed start.
    pub(crate) fn record_ready(&mut self) {
        self.failed_starts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial_ms: 10,
            backoff_max_ms: 50,
            max_restarts: 3,
            window_ms: 1_000,
        }
    }

    fn delay(decision: RestartDecision) -> u64 {
        match decision {
            RestartDecision::RestartAfter { delay_ms, .. } => delay_ms,
            RestartDecision::GiveUp { .. } => u64::MAX,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let mut tracker = RestartTracker::default();
        let p = policy();
        assert_eq!(delay(tracker.record_death(0, true, &p)), 10);
        assert_eq!(delay(tracker.record_death(100, true, &p)), 20);
        assert_eq!(delay(tracker.record_death(200, true, &p)), 40);
        assert_eq!(
            tracker.record_death(300, true, &p),
            RestartDecision::GiveUp {
                deaths_in_window: 4,
                failed_starts: 0
            }
        );
    }

    #[test]
    fn cap_limits_the_delay() {
        let mut tracker = RestartTracker::default();
        let p = RestartPolicy {
            max_restarts: 10,
            ..policy()
        };
        let delays: Vec<u64> = (0..5)
            .map(|i| delay(tracker.record_death(i, true, &p)))
            .collect();
        assert_eq!(delays, [10, 20, 40, 50, 50]);
    }

    #[test]
    fn deaths_outside_the_window_are_forgotten() {
        let mut tracker = RestartTracker::default();
        let p = policy();
        for at in [0, 10, 20] {
            tracker.record_death(at, true, &p);
        }
        // A server that then runs longer than the window starts over at the first delay.
        assert_eq!(
            tracker.record_death(5_000, true, &p),
            RestartDecision::RestartAfter {
                delay_ms: 10,
                deaths_in_window: 1
            }
        );
    }

    #[test]
    fn slow_failed_starts_are_given_up_even_outside_the_window() {
        let mut tracker = RestartTracker::default();
        let p = policy();
        for i in 0..3 {
            let decision = tracker.record_death(i * 10_000, false, &p);
            assert!(matches!(decision, RestartDecision::RestartAfter { .. }));
        }
        assert_eq!(
            tracker.record_death(30_000, false, &p),
            RestartDecision::GiveUp {
                deaths_in_window: 1,
                failed_starts: 4
            }
        );
    }

    #[test]
    fn ready_resets_failed_starts() {
        let mut tracker = RestartTracker::default();
        let p = policy();
        for i in 0..3 {
            tracker.record_death(i * 10_000, false, &p);
        }
        tracker.record_ready();
        assert!(matches!(
            tracker.record_death(30_000, false, &p),
            RestartDecision::RestartAfter { .. }
        ));
    }
}
