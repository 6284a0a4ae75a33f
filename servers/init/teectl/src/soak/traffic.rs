//! The live consumers' traffic, one thread each: NV counter increments and reads, GetRandom,
//! PCR extends between reads, and coredump chunks; plus the watchdog that reports a consumer
//! stuck in one request.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tee_proto::bnxt::COREDUMP_CHUNK_MAX;
use teesys_root::StatePaths;

use super::checks::{
    check_chunk, check_dump_len, check_pcr_extend, check_random, NvBook, Violation,
};
use super::consumers::{lock, BnxtLink, ConsumerStats, Ctx, ErrorClass, Failure, Shared, TpmLink};
use super::consumers::{Beat, STUCK_AFTER};
use super::rng::Rng;
use crate::tpm::{self, TpmAnswer};
use crate::CliError;

/// The PCR the soak extends: PCR 16, the debug PCR, which nothing in the stack measures into.
pub const PCR: u8 = 16;
/// Coredump chunks copied in one sequential run from a random offset.
const CHUNKS_PER_RUN: u32 = 16;

/// A TPM answer that must be TPM_RC_SUCCESS; `None` when the TPM was reset and wants Startup.
fn success(answer: TpmAnswer, what: &'static str) -> Result<Option<TpmAnswer>, Failure> {
    match answer.rc {
        0 => Ok(Some(answer)),
        tpm::TPM_RC_INITIALIZE => Ok(None),
        rc if tpm::rc_is_retry(rc) => Err(Failure::tpm_retry(what, rc)),
        rc => Err(Violation::TpmCode { what, rc }.into()),
    }
}

/// `success` for commands sent with [`TpmLink::send_started`], which already started the TPM.
fn started(answer: TpmAnswer, what: &'static str) -> Result<TpmAnswer, Failure> {
    success(answer, what)?.ok_or_else(|| Failure::tpm_retry(what, tpm::TPM_RC_INITIALIZE))
}

pub fn nv_increment(
    ctx: &Ctx,
    link: &mut TpmLink,
    book: &Mutex<NvBook>,
    index: u32,
) -> Result<&'static str, Failure> {
    lock(book).sending();
    started(
        link.send_started(ctx, &tpm::nv_increment(index))?,
        "NV_Increment",
    )?;
    lock(book).acknowledge();
    Ok("nv_increment")
}

/// The counter's value.
pub fn read_counter(ctx: &Ctx, link: &mut TpmLink, index: u32) -> Result<u64, Failure> {
    let answer = started(
        link.send_started(ctx, &tpm::nv_read_counter(index))?,
        "NV_Read",
    )?;
    Ok(tpm::counter_value(&answer).ok_or(Violation::Malformed("NV_Read"))?)
}

/// Reads the counter and checks it against the books.
fn nv_read(
    ctx: &Ctx,
    link: &mut TpmLink,
    book: &Mutex<NvBook>,
    index: u32,
) -> Result<&'static str, Failure> {
    let value = read_counter(ctx, link, index)?;
    lock(book).check_read(value)?;
    Ok("nv_read")
}

fn nv_loop(ctx: &mut Ctx, book: &Mutex<NvBook>, index: u32) {
    let mut link = TpmLink::default();
    while !ctx.stopping() {
        let outcome = if ctx.rng.below(4) == 0 {
            nv_read(ctx, &mut link, book, index)
        } else {
            nv_increment(ctx, &mut link, book, index)
        };
        ctx.record(outcome);
    }
}

pub fn random_once(
    ctx: &mut Ctx,
    link: &mut TpmLink,
    previous: &mut Option<Vec<u8>>,
) -> Result<&'static str, Failure> {
    let asked = 1 + u16::try_from(ctx.rng.below(32)).unwrap_or(0);
    let answer = started(
        link.send_started(ctx, &tpm::get_random(asked))?,
        "GetRandom",
    )?;
    let bytes = tpm::random_bytes(&answer).ok_or(Violation::Malformed("GetRandom"))?;
    check_random(asked, &bytes, previous.as_deref())?;
    *previous = Some(bytes);
    Ok("get_random")
}

fn random_loop(ctx: &mut Ctx) {
    let mut link = TpmLink::default();
    let mut previous = None;
    while !ctx.stopping() {
        let outcome = random_once(ctx, &mut link, &mut previous);
        ctx.record(outcome);
    }
}

/// How a read, extend, read sequence ended.
enum PcrStep {
    Checked,
    /// The TPM was reset under the sequence: start it, nothing to check.
    NeedsStartup,
}

/// PCR_Read, PCR_Extend, PCR_Read, all in one TPM lifetime (the lifetime's read lock is held,
/// so no Startup can happen between them; a reset makes the next command answer
/// TPM_RC_INITIALIZE); the value must have changed.
fn pcr_sequence(ctx: &Ctx, link: &mut TpmLink, digest: &[u8; 32]) -> Result<PcrStep, Failure> {
    let _lifetime = ctx
        .shared
        .lifetime
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let read = tpm::pcr_read_sha256(PCR);
    let extend = tpm::pcr_extend_sha256(u32::from(PCR), digest);
    let mut digests = Vec::with_capacity(2);
    for (step, command) in [&read, &extend, &read].into_iter().enumerate() {
        let what = if step == 1 { "PCR_Extend" } else { "PCR_Read" };
        let Some(answer) = success(link.send(ctx, command)?, what)? else {
            return Ok(PcrStep::NeedsStartup);
        };
        if step == 1 {
            ctx.ok("pcr_extend");
        } else {
            digests.push(tpm::first_digest(&answer).ok_or(Violation::Malformed("PCR_Read"))?);
            ctx.ok("pcr_read");
        }
    }
    check_pcr_extend(&digests[0], &digests[1])?;
    Ok(PcrStep::Checked)
}

/// One checked extend of [`PCR`] with the `sequence`th digest of `tag`. A reset under the
/// sequence starts the TPM again and counts as a retryable failure: nothing to check.
pub fn pcr_once(
    ctx: &Ctx,
    link: &mut TpmLink,
    tag: u64,
    sequence: u64,
) -> Result<&'static str, Failure> {
    // Never the same digest twice: the soak's tag, then the sequence number.
    let mut digest = [0xA5u8; 32];
    digest[..8].copy_from_slice(&tag.to_be_bytes());
    digest[8..16].copy_from_slice(&sequence.to_be_bytes());
    match pcr_sequence(ctx, link, &digest)? {
        PcrStep::Checked => Ok("pcr_check"),
        PcrStep::NeedsStartup => {
            ctx.ok("tpm_reset_seen");
            link.startup(ctx)?;
            Err(Failure::new(
                ErrorClass::Retryable,
                "PCR check interrupted by a TPM reset",
            ))
        }
    }
}

fn pcr_loop(ctx: &mut Ctx, tag: u64) {
    let mut link = TpmLink::default();
    let mut sequence = 0u64;
    while !ctx.stopping() {
        sequence += 1;
        let outcome = pcr_once(ctx, &mut link, tag, sequence);
        ctx.record(outcome);
    }
}

/// The dump's length, then a run of chunks from a random offset, each against the image.
pub fn coredump_run(ctx: &mut Ctx, link: &mut BnxtLink) -> Result<&'static str, Failure> {
    let len = link.call(ctx, |driver| driver.coredump_len())?;
    check_dump_len(len)?;
    ctx.ok("coredump_len");
    let chunk = u32::try_from(COREDUMP_CHUNK_MAX).unwrap_or(4096);
    let mut offset = u32::try_from(ctx.rng.below(u64::from(len))).unwrap_or(0);
    for _ in 0..CHUNKS_PER_RUN {
        if offset >= len || ctx.stopping() {
            break;
        }
        // Mostly whole chunks; now and then a short one.
        let size = if ctx.rng.below(8) == 0 {
            1 + u32::try_from(ctx.rng.below(u64::from(chunk))).unwrap_or(0)
        } else {
            chunk
        };
        let (got, data) = link.call(ctx, |driver| driver.chunk(offset, size))?;
        check_chunk(offset, size, got, &data)?;
        ctx.ok("coredump_chunk");
        offset = offset.saturating_add(size);
    }
    Ok("coredump_run")
}

fn coredump_loop(ctx: &mut Ctx) {
    let mut link = BnxtLink::default();
    while !ctx.stopping() {
        let outcome = coredump_run(ctx, &mut link);
        ctx.record(outcome);
    }
}

struct Worker {
    handle: JoinHandle<()>,
    stats: Arc<Mutex<ConsumerStats>>,
    beat: Arc<Beat>,
}

/// The running consumers.
pub struct Consumers {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
    watchdog: Option<JoinHandle<()>>,
    stuck: Arc<Mutex<Vec<String>>>,
    pub book: Arc<Mutex<NvBook>>,
}

/// What the consumers did, once stopped.
pub struct Finished {
    pub stats: Vec<ConsumerStats>,
    pub book: NvBook,
    /// Consumers stuck past [`STUCK_AFTER`] in one request, or that did not stop.
    pub stuck: Vec<String>,
}

impl Consumers {
    /// Starts the four consumers; `book` is the NV counter's books after the warm-up.
    pub fn start(
        paths: &StatePaths,
        seed: u64,
        index: u32,
        book: NvBook,
    ) -> Result<Consumers, CliError> {
        let shared = Arc::new(Shared::default());
        let book = Arc::new(Mutex::new(book));
        let mut rng = Rng(seed);
        let mut workers = Vec::new();
        let mut spawn = |name: &'static str, body: Box<dyn FnOnce(&mut Ctx) + Send>| {
            let mut ctx = Ctx::new(
                name,
                paths,
                Arc::clone(&shared),
                rng.fork(workers.len() as u64),
            );
            let (stats, beat) = (Arc::clone(&ctx.stats), Arc::clone(&ctx.beat));
            let handle = thread::Builder::new()
                .name(format!("soak-{name}"))
                .spawn(move || body(&mut ctx))
                .map_err(|source| CliError::Io {
                    what: format!("start the {name} consumer"),
                    source,
                })?;
            workers.push(Worker {
                handle,
                stats,
                beat,
            });
            Ok::<(), CliError>(())
        };
        let nv_book = Arc::clone(&book);
        spawn(
            "nv-counter",
            Box::new(move |ctx| nv_loop(ctx, &nv_book, index)),
        )?;
        spawn("getrandom", Box::new(random_loop))?;
        spawn("pcr", Box::new(move |ctx| pcr_loop(ctx, seed)))?;
        spawn("coredump", Box::new(coredump_loop))?;
        let stuck = Arc::new(Mutex::new(Vec::new()));
        let watched: Vec<_> = workers
            .iter()
            .map(|w| (lock(&w.stats).name, Arc::clone(&w.beat)))
            .collect();
        let (dog_shared, dog_stuck) = (Arc::clone(&shared), Arc::clone(&stuck));
        let watchdog = thread::Builder::new()
            .name("soak-watchdog".into())
            .spawn(move || watchdog(&dog_shared, &watched, &dog_stuck))
            .map_err(|source| CliError::Io {
                what: "start the consumers' watchdog".into(),
                source,
            })?;
        Ok(Consumers {
            shared,
            workers,
            watchdog: Some(watchdog),
            stuck,
            book,
        })
    }

    /// Stops the consumers and waits for them, at most [`STUCK_AFTER`] in all.
    pub fn stop(mut self) -> Finished {
        self.shared.stop.store(true, Ordering::Relaxed);
        let until = Instant::now() + STUCK_AFTER;
        let mut stats = Vec::new();
        for worker in self.workers.drain(..) {
            while !worker.handle.is_finished() && Instant::now() < until {
                thread::sleep(Duration::from_millis(10));
            }
            let name = lock(&worker.stats).name;
            if !worker.handle.is_finished() {
                // Left running; the process ends after the report.
                lock(&self.stuck).push(format!("consumer {name} did not stop"));
            } else if worker.handle.join().is_err() {
                lock(&self.stuck).push(format!("consumer {name} panicked"));
            }
            stats.push(lock(&worker.stats).clone());
        }
        if let Some(dog) = self.watchdog.take() {
            let _ = dog.join();
        }
        let stuck = lock(&self.stuck).clone();
        Finished {
            stats,
            book: lock(&self.book).clone(),
            stuck,
        }
    }
}

fn watchdog(shared: &Shared, watched: &[(&'static str, Arc<Beat>)], stuck: &Mutex<Vec<String>>) {
    let limit = u64::try_from(STUCK_AFTER.as_millis()).unwrap_or(u64::MAX);
    let mut reported = vec![0u64; watched.len()];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = shared.now_ms().saturating_add(1);
        for ((name, beat), last) in watched.iter().zip(&mut reported) {
            let since = beat.busy_since.load(Ordering::Relaxed);
            if since != 0 && since != *last && now.saturating_sub(since) > limit {
                *last = since;
                tracing::error!(consumer = name, "consumer stuck in one request");
                lock(stuck).push(format!(
                    "consumer {name} stuck in one request for over {} s (at {} ms)",
                    STUCK_AFTER.as_secs(),
                    since - 1
                ));
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}
