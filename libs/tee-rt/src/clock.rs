//! The shells' clock: monotonic milliseconds since the process started, the `now` every core is
//! handed. Cores never read a clock themselves.

use std::time::{Duration, Instant};

/// Milliseconds on a [`Clock`].
pub type Millis = u64;

/// A monotonic clock that starts at 0.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock reading 0 now.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Milliseconds since the clock started.
    pub fn now(&self) -> Millis {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long until `deadline` (zero if it has passed); `None` for no deadline. This is the
    /// event loop's poll timeout for a core's `poll_timeout()`.
    pub fn until(&self, deadline: Option<Millis>) -> Option<Duration> {
        deadline.map(|at| Duration::from_millis(at.saturating_sub(self.now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_near_zero_and_only_moves_forward() {
        let clock = Clock::new();
        let first = clock.now();
        assert!(first < 1_000);
        std::thread::sleep(Duration::from_millis(15));
        let second = clock.now();
        assert!(second >= first + 15, "{first} then {second}");
    }

    #[test]
    fn time_until_a_deadline_is_clamped_at_zero() {
        let clock = Clock::new();
        assert_eq!(clock.until(None), None);
        assert_eq!(clock.until(Some(0)), Some(Duration::ZERO));
        let ahead = clock.until(Some(clock.now() + 10_000)).unwrap_or_default();
        assert!(ahead > Duration::from_millis(9_000) && ahead <= Duration::from_millis(10_000));
    }
}
