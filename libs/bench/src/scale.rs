//! Registration at scale: register and unregister cost per operation with 1k, 10k and 100k
//! live registrations (the secure heap sized for them), in the secure-world model driven by a
//! minimal driver and in teed's core over the same model; and teed's shutdown of n
//! registrations against n bare UNREGISTER_SHM round trips.

use std::time::Instant;

use secure_world::{Config as SecureConfig, SecureWorld};
use tee_proto::lifecycle::{BootKind, ServerEvent, ServerKind, ShutdownReason};
use tee_proto::teed::{ShmId, TeedResponse};
use tee_sim::{TeedHarness, TPMD};
use tee_test_support::normal_world::NormalWorld;
use teed::TeedConfig;

use crate::stats::Samples;

/// Core heap for the scale runs: 100k one-page registrations charge about 11 MiB.
const SCALE_HEAP_BYTES: usize = 64 << 20;

/// Per-operation cost at one number of live registrations.
#[derive(Debug, Clone, Copy)]
pub struct ScaleRow {
    pub live: usize,
    pub register_us: f64,
    pub unregister_us: f64,
    /// Unregistering the newest registration instead of a spread-out one: the same lookups
    /// and bookkeeping on memory the CPU caches still hold.
    pub unregister_newest_us: f64,
}

/// A deterministic index stream (xorshift), so every run unregisters the same spread of
/// registrations: old, new and middle ones alike.
struct Spread(u64);

impl Spread {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

fn secure_config() -> SecureConfig {
    SecureConfig {
        core_heap_bytes: SCALE_HEAP_BYTES,
        ..SecureConfig::default()
    }
}

/// The model with the least a driver can do per registration: one page list written once
/// (OP-TEE reads it only during the call; no overlap check), one message page per call.
pub struct ModelDriver {
    sw: SecureWorld,
    nw: NormalWorld,
    buf_ptr: u64,
    next_cookie: u64,
    pub live: Vec<u64>,
}

impl ModelDriver {
    pub fn new() -> Result<ModelDriver, String> {
        let config = secure_config();
        let mut nw = NormalWorld::new(&config);
        let sw = SecureWorld::new(config, 7);
        let data = nw.alloc_frame();
        let list = nw.alloc_frame();
        optee_abi::pagelist::write_page_list(&mut nw.ram, &[list], &[data])
            .map_err(|e| format!("page list: {e}"))?;
        Ok(ModelDriver {
            sw,
            nw,
            buf_ptr: list,
            next_cookie: 0x10_0000,
            live: Vec::new(),
        })
    }

    pub fn register(&mut self) -> Result<(), String> {
        self.next_cookie += 1;
        let cookie = self.next_cookie;
        match self
            .nw
            .register_list(&mut self.sw, cookie, self.buf_ptr, 4096)
        {
            Ok(0) => {
                self.live.push(cookie);
                Ok(())
            }
            other => Err(format!("REGISTER_SHM {cookie:#x}: {other:?}")),
        }
    }

    pub fn unregister_at(&mut self, index: usize) -> Result<(), String> {
        let cookie = self.live.swap_remove(index);
        match self.nw.unregister(&mut self.sw, cookie) {
            Ok(0) => Ok(()),
            other => Err(format!("UNREGISTER_SHM {cookie:#x}: {other:?}")),
        }
    }

    /// Unregisters everything, oldest first (the order teed's shutdown goes in).
    pub fn unregister_all(&mut self) -> Result<(), String> {
        let cookies = std::mem::take(&mut self.live);
        for cookie in cookies {
            match self.nw.unregister(&mut self.sw, cookie) {
                Ok(0) => {}
                other => return Err(format!("UNREGISTER_SHM {cookie:#x}: {other:?}")),
            }
        }
        Ok(())
    }

    pub fn registrations(&self) -> usize {
        self.sw.stats().registrations
    }
}

/// teed's core over the model (the simulator's harness), one client with no quota and no
/// journal (the journal's window holds a few hundred entries by design).
pub struct TeedDriver {
    h: TeedHarness,
    pub live: Vec<ShmId>,
}

fn harness_error(e: impl std::fmt::Display) -> String {
    format!("teed harness: {e}")
}

impl TeedDriver {
    pub fn new() -> Result<TeedDriver, String> {
        let mut config = TeedConfig::new();
        config.policy.unlimited();
        config.hardening.journal = false;
        let mut h = TeedHarness::new(config, secure_config());
        // Time teed, not the harness reading every message to watch cookies.
        h.watch_cookies = false;
        match h.boot(BootKind::Cold, 1).map_err(harness_error)? {
            ServerEvent::Ready { .. } => {}
            other => return Err(format!("teed did not come up: {other:?}")),
        }
        h.connect(TPMD, ServerKind::Tpmd);
        Ok(TeedDriver {
            h,
            live: Vec::new(),
        })
    }

    pub fn register(&mut self) -> Result<(), String> {
        match self.h.alloc(TPMD, 4096).map_err(harness_error)? {
            TeedResponse::ShmAllocated { shm, .. } => {
                self.live.push(shm);
                Ok(())
            }
            other => Err(format!("ShmAlloc: {other:?}")),
        }
    }

    pub fn unregister_at(&mut self, index: usize) -> Result<(), String> {
        let shm = self.live.swap_remove(index);
        match self.h.free(TPMD, shm).map_err(harness_error)? {
            TeedResponse::ShmFreed => Ok(()),
            other => Err(format!("ShmFree: {other:?}")),
        }
    }

    /// teed's shutdown, which unregisters every registration still held.
    pub fn shutdown(&mut self) -> Result<(), String> {
        match self
            .h
            .shutdown(ShutdownReason::Kexec)
            .map_err(harness_error)?
        {
            ServerEvent::ShutdownAck(report) if report.errors == 0 => {
                self.live.clear();
                Ok(())
            }
            other => Err(format!("shutdown: {other:?}")),
        }
    }

    pub fn registrations(&self) -> usize {
        self.h.secure.stats().registrations
    }
}

/// What both drivers offer the scale run.
pub trait Driver {
    fn register(&mut self) -> Result<(), String>;
    fn unregister_at(&mut self, index: usize) -> Result<(), String>;
    fn live(&self) -> usize;
}

impl Driver for ModelDriver {
    fn register(&mut self) -> Result<(), String> {
        ModelDriver::register(self)
    }
    fn unregister_at(&mut self, index: usize) -> Result<(), String> {
        ModelDriver::unregister_at(self, index)
    }
    fn live(&self) -> usize {
        self.live.len()
    }
}

impl Driver for TeedDriver {
    fn register(&mut self) -> Result<(), String> {
        TeedDriver::register(self)
    }
    fn unregister_at(&mut self, index: usize) -> Result<(), String> {
        TeedDriver::unregister_at(self, index)
    }
    fn live(&self) -> usize {
        self.live.len()
    }
}

/// For each size (ascending): fill to it, then `rounds` times register `ops` more and
/// unregister `ops` spread over all live ones, timing each batch.
pub fn scale<D: Driver>(
    driver: &mut D,
    sizes: &[usize],
    rounds: usize,
    ops: usize,
) -> Result<Vec<ScaleRow>, String> {
    let mut spread = Spread(0x9e37_79b9_7f4a_7c15);
    let mut rows = Vec::new();
    for &size in sizes {
        while driver.live() < size {
            driver.register()?;
        }
        let (mut register, mut unregister) = (Samples::default(), Samples::default());
        let mut newest = Samples::default();
        let per_op = u32::try_from(ops.max(1)).unwrap_or(u32::MAX);
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..ops {
                driver.register()?;
            }
            register.push(start.elapsed() / per_op);
            let start = Instant::now();
            for _ in 0..ops {
                let at = spread.below(driver.live());
                driver.unregister_at(at)?;
            }
            unregister.push(start.elapsed() / per_op);
            for _ in 0..ops {
                driver.register()?;
            }
            let start = Instant::now();
            for _ in 0..ops {
                driver.unregister_at(driver.live().saturating_sub(1))?;
            }
            newest.push(start.elapsed() / per_op);
        }
        rows.push(ScaleRow {
            live: size,
            register_us: register.median_us(),
            unregister_us: unregister.median_us(),
            unregister_newest_us: newest.median_us(),
        });
    }
    Ok(rows)
}

/// A record the size of one registration's books in the model or in teed (roughly).
type FloorRecord = [u64; 32];

/// The memory floor under the scale figures: a bare `BTreeMap` of as many 256-byte records,
/// with the same spread of removals and the same appends, per operation (an insert and a
/// removal averaged) at each size. No registration logic at all, so its growth from the
/// smallest size to the largest is what the memory hierarchy alone costs.
pub fn memory_floor(sizes: &[usize], rounds: usize, ops: usize) -> Vec<(usize, f64)> {
    let mut spread = Spread(0x9e37_79b9_7f4a_7c15);
    let mut map: std::collections::BTreeMap<u64, FloorRecord> = Default::default();
    let mut live: Vec<u64> = Vec::new();
    let mut next_key = 0u64;
    let mut insert = |map: &mut std::collections::BTreeMap<u64, FloorRecord>,
                      live: &mut Vec<u64>| {
        next_key += 1;
        map.insert(next_key, [next_key; 32]);
        live.push(next_key);
    };
    let mut rows = Vec::new();
    let per_op = u32::try_from((2 * ops).max(1)).unwrap_or(u32::MAX);
    for &size in sizes {
        while live.len() < size {
            insert(&mut map, &mut live);
        }
        let mut samples = Samples::default();
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..ops {
                insert(&mut map, &mut live);
            }
            for _ in 0..ops {
                let key = live.swap_remove(spread.below(live.len()));
                std::hint::black_box(map.remove(&key));
            }
            samples.push(start.elapsed() / per_op);
        }
        rows.push((size, samples.median_us()));
    }
    rows
}

/// Largest over smallest per-operation cost across the sizes.
pub fn spread_of(values: impl Iterator<Item = f64>) -> f64 {
    let (mut low, mut high) = (f64::MAX, 0.0f64);
    for v in values {
        low = low.min(v);
        high = high.max(v);
    }
    if low > 0.0 && low < f64::MAX {
        high / low
    } else {
        0.0
    }
}

/// teed's shutdown of `n` registrations, and `n` bare UNREGISTER_SHM round trips on the
/// model, in seconds.
pub fn shutdown_vs_bare(n: usize) -> Result<(f64, f64), String> {
    let mut teed = TeedDriver::new()?;
    for _ in 0..n {
        teed.register()?;
    }
    if teed.registrations() != n {
        return Err(format!(
            "{} registrations, {n} wanted",
            teed.registrations()
        ));
    }
    let start = Instant::now();
    teed.shutdown()?;
    let shutdown = start.elapsed().as_secs_f64();
    if teed.registrations() != 0 {
        return Err(format!(
            "{} registrations left after shutdown",
            teed.registrations()
        ));
    }
    let mut model = ModelDriver::new()?;
    for _ in 0..n {
        model.register()?;
    }
    let start = Instant::now();
    model.unregister_all()?;
    let bare = start.elapsed().as_secs_f64();
    if model.registrations() != 0 {
        return Err("the bare driver left registrations".into());
    }
    Ok((shutdown, bare))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_drivers_register_and_unregister_for_real() {
        let mut model = ModelDriver::new().unwrap_or_else(|e| panic!("{e}"));
        let rows = scale(&mut model, &[8, 16], 2, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), 2);
        assert_eq!(model.registrations(), 16);
        let mut teed = TeedDriver::new().unwrap_or_else(|e| panic!("{e}"));
        scale(&mut teed, &[8], 1, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(teed.registrations(), 8);
        teed.shutdown().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(teed.registrations(), 0);
    }

    #[test]
    fn the_memory_floor_keeps_its_sizes() {
        let rows = memory_floor(&[10, 100], 2, 5);
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![10, 100]);
        assert!(rows.iter().all(|r| r.1 >= 0.0));
    }

    #[test]
    fn the_spread_is_flat_only_when_costs_are() {
        assert_eq!(spread_of([2.0, 3.0, 4.0].into_iter()), 2.0);
        assert_eq!(spread_of([5.0].into_iter()), 1.0);
    }
}
