//! Samples of one measurement and their order statistics.

use std::time::{Duration, Instant};

/// Durations of repeated runs of one operation, in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ns: Vec<u64>,
    sorted: bool,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples {
            ns: Vec::with_capacity(n),
            sorted: true,
        }
    }

    pub fn push(&mut self, took: Duration) {
        self.ns
            .push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        self.sorted = false;
    }

    /// Adds another run's samples to these.
    pub fn extend(&mut self, other: Samples) {
        self.ns.extend(other.ns);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.ns.len()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.ns.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q`-quantile (0..=1) in microseconds, nearest rank; 0 with no samples.
    pub fn quantile_us(&mut self, q: f64) -> f64 {
        self.sort();
        if self.ns.is_empty() {
            return 0.0;
        }
        let rank = ((self.ns.len() as f64 * q).ceil() as usize).clamp(1, self.ns.len());
        self.ns[rank - 1] as f64 / 1_000.0
    }

    pub fn median_us(&mut self) -> f64 {
        self.quantile_us(0.5)
    }

    pub fn p99_us(&mut self) -> f64 {
        self.quantile_us(0.99)
    }
}

/// Runs `op` `warmup` times unmeasured, then `runs` times, one sample each.
pub fn sample<E>(
    warmup: usize,
    runs: usize,
    mut op: impl FnMut() -> Result<(), E>,
) -> Result<Samples, E> {
    for _ in 0..warmup {
        op()?;
    }
    let mut samples = Samples::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        op()?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let mut samples = Samples::default();
        for us in (1..=100).rev() {
            samples.push(Duration::from_micros(us));
        }
        assert_eq!(samples.median_us(), 50.0);
        assert_eq!(samples.p99_us(), 99.0);
        assert_eq!(samples.quantile_us(1.0), 100.0);
        assert_eq!(Samples::default().median_us(), 0.0);
    }
}
