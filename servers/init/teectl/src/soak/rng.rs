//! A tiny seeded generator (SplitMix64): a soak is reproducible from its seed (the chaos
//! driver's choices exactly; the consumers' requests up to thread timing).

#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// An independent generator for a consumer thread, derived from this one's seed.
    pub fn fork(&mut self, stream: u64) -> Rng {
        Rng(self.next() ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chaos_generator_replays_from_its_seed() {
        let draw = |seed| {
            let mut rng = Rng(seed);
            (0..8).map(|_| rng.below(100)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut a = Rng(7);
        let mut b = Rng(7);
        assert_eq!(a.fork(1).next(), b.fork(1).next());
        assert_ne!(Rng(7).fork(1).next(), Rng(7).fork(2).next());
    }
}
