//! The machinery of the live consumers: how a failed request is classed, what each consumer
//! counts, the heartbeat the watchdog reads, and connections to tpmd and bnxtd that carry a
//! deadline on every request and reconnect after any failure.
//!
//! Classes of failure: a server restarting, a boot without a TEE and a connection lost to a
//! kill are what consumers of a live stack must expect (`retryable`, `unavailable`,
//! `disconnected`); a request past its deadline (`timed_out`), a wrong answer (`wrong`) and
//! any other error (`unexpected`) fail the soak.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tee_proto::bnxt::BnxtError;
use tee_proto::tpm::TpmError;
use tee_proto::WireError;
use tee_rt::framing::FrameError;
use teesys_root::wire::CallError;
use teesys_root::StatePaths;

use super::checks::Violation;
use super::rng::Rng;
use crate::bnxt::BnxtDriver;
use crate::tpm::{self, TpmAnswer, TpmConsumer, TpmOutcome};
use crate::CliError;

/// Every consumer request (connect, send, answer) must finish within this; the socket gives
/// up after it, and the request counts as timed out.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// A consumer busy in one request this long is stuck (beyond the socket's own deadline: a
/// connect that blocks, a server trickling its answer): the watchdog reports it.
pub const STUCK_AFTER: Duration = Duration::from_secs(15);
/// Wrong, unexpected and timed-out failures kept verbatim per consumer.
const FAILURES_KEPT: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Unavailable,
    Disconnected,
    TimedOut,
    Wrong,
    Unexpected,
}

impl ErrorClass {
    /// Whether a consumer of a live stack must expect it.
    pub fn expected(self) -> bool {
        matches!(
            self,
            ErrorClass::Retryable | ErrorClass::Unavailable | ErrorClass::Disconnected
        )
    }
}

/// Failures by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    pub retryable: u64,
    pub unavailable: u64,
    pub disconnected: u64,
    pub timed_out: u64,
    pub wrong: u64,
    pub unexpected: u64,
}

impl ErrorCounts {
    pub fn add(&mut self, class: ErrorClass) {
        let count = match class {
            ErrorClass::Retryable => &mut self.retryable,
            ErrorClass::Unavailable => &mut self.unavailable,
            ErrorClass::Disconnected => &mut self.disconnected,
            ErrorClass::TimedOut => &mut self.timed_out,
            ErrorClass::Wrong => &mut self.wrong,
            ErrorClass::Unexpected => &mut self.unexpected,
        };
        *count += 1;
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        self.retryable += other.retryable;
        self.unavailable += other.unavailable;
        self.disconnected += other.disconnected;
        self.timed_out += other.timed_out;
        self.wrong += other.wrong;
        self.unexpected += other.unexpected;
    }

    /// Failures that fail the soak.
    pub fn fatal(&self) -> u64 {
        self.timed_out + self.wrong + self.unexpected
    }
}

/// One failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: ErrorClass,
    pub detail: String,
}

impl Failure {
    pub fn new(class: ErrorClass, detail: impl Into<String>) -> Failure {
        Failure {
            class,
            detail: detail.into(),
        }
    }

    fn call(error: &CallError) -> Failure {
        Failure::new(call_class(error), error.to_string())
    }

    pub fn cli(error: &CliError) -> Failure {
        let class = match error {
            CliError::Call(call) => call_class(call),
            CliError::Refused(wire) => wire_class(wire),
            CliError::Bnxt(bnxt) => bnxt_class(bnxt),
            // A TPM response that does not parse.
            CliError::Tpm(_) => ErrorClass::Wrong,
            _ => ErrorClass::Unexpected,
        };
        Failure::new(class, error.to_string())
    }

    pub fn tpm(error: TpmError) -> Failure {
        let class = match error {
            TpmError::Retryable | TpmError::ServerRestarted { .. } => ErrorClass::Retryable,
            TpmError::TeeUnavailable | TpmError::ShuttingDown => ErrorClass::Unavailable,
            TpmError::Tee { .. } if error.to_tpm_rc() == tpm::TPM_RC_RETRY => ErrorClass::Retryable,
            _ => ErrorClass::Unexpected,
        };
        Failure::new(class, format!("tpmd: {error}"))
    }

    /// A TPM warning: the command was not run.
    pub fn tpm_retry(what: &str, rc: u32) -> Failure {
        Failure::new(ErrorClass::Retryable, format!("{what}: TPM rc {rc:#x}"))
    }
}

impl From<Violation> for Failure {
    fn from(violation: Violation) -> Failure {
        Failure::new(ErrorClass::Wrong, violation.to_string())
    }
}

fn io_class(error: &std::io::Error) -> ErrorClass {
    match error.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ErrorClass::TimedOut,
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::ConnectionRefused
        | ErrorKind::NotFound
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => ErrorClass::Disconnected,
        _ => ErrorClass::Unexpected,
    }
}

fn call_class(error: &CallError) -> ErrorClass {
    match error {
        // No socket, or nobody behind it: the server is being restarted.
        CallError::Connect { source, .. } => match io_class(source) {
            ErrorClass::TimedOut => ErrorClass::TimedOut,
            _ => ErrorClass::Disconnected,
        },
        CallError::Io(io) | CallError::Frame(FrameError::Io(io)) => io_class(io),
        CallError::Frame(FrameError::Closed | FrameError::Truncated) => ErrorClass::Disconnected,
        CallError::Refused(wire) => wire_class(wire),
        // Frames that do not decode or answer another request: a wrong answer.
        CallError::Proto(_) | CallError::Mismatch { .. } | CallError::Unexpected(_) => {
            ErrorClass::Wrong
        }
        CallError::Frame(_) => ErrorClass::Wrong,
    }
}

fn wire_class(error: &WireError) -> ErrorClass {
    match error {
        WireError::Retryable | WireError::ServerRestarted { .. } | WireError::Busy => {
            ErrorClass::Retryable
        }
        WireError::TeeUnavailable | WireError::ShuttingDown | WireError::NoDevice => {
            ErrorClass::Unavailable
        }
        _ => ErrorClass::Unexpected,
    }
}

fn bnxt_class(error: &BnxtError) -> ErrorClass {
    match error {
        BnxtError::Retryable | BnxtError::ServerRestarted { .. } => ErrorClass::Retryable,
        BnxtError::TeeUnavailable | BnxtError::NoDevice => ErrorClass::Unavailable,
        _ => ErrorClass::Unexpected,
    }
}

/// What one consumer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsumerStats {
    pub name: &'static str,
    /// Correct answers by request kind.
    pub ops: BTreeMap<&'static str, u64>,
    pub errors: ErrorCounts,
    /// The first failures that fail the soak, verbatim.
    pub failures: Vec<String>,
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State every consumer shares.
#[derive(Debug)]
pub struct Shared {
    pub stop: AtomicBool,
    /// Held for reading across a sequence of commands that must run in one TPM lifetime;
    /// TPM2_Startup (the only way into a new lifetime after a reset, and sent only by these
    /// consumers) is sent with it held for writing.
    pub lifetime: RwLock<()>,
    pub start: Instant,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            lifetime: RwLock::new(()),
            start: Instant::now(),
        }
    }
}

impl Shared {
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// When the consumer's current request began (ms since the start, plus one), 0 when idle.
#[derive(Debug, Default)]
pub struct Beat {
    pub busy_since: AtomicU64,
}

/// A consumer's view of the world.
pub struct Ctx {
    pub paths: StatePaths,
    pub shared: Arc<Shared>,
    pub stats: Arc<Mutex<ConsumerStats>>,
    pub beat: Arc<Beat>,
    pub rng: Rng,
}

impl Ctx {
    pub fn new(name: &'static str, paths: &StatePaths, shared: Arc<Shared>, rng: Rng) -> Ctx {
        Ctx {
            paths: paths.clone(),
            shared,
            stats: Arc::new(Mutex::new(ConsumerStats {
                name,
                ..ConsumerStats::default()
            })),
            beat: Arc::new(Beat::default()),
            rng,
        }
    }

    pub fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    pub fn ok(&self, kind: &'static str) {
        *lock(&self.stats).ops.entry(kind).or_default() += 1;
    }

    pub fn failed(&self, failure: &Failure) {
        let mut stats = lock(&self.stats);
        stats.errors.add(failure.class);
        if failure.class.expected() {
            tracing::debug!(consumer = stats.name, detail = %failure.detail, "expected failure");
        } else {
            tracing::warn!(consumer = stats.name, detail = %failure.detail, "consumer failure");
            if stats.failures.len() < FAILURES_KEPT {
                stats.failures.push(failure.detail.clone());
            }
        }
    }

    /// Counts one step's outcome and waits a little before the next: briefly after an
    /// answer, longer after a failure (a restarting server, a boot without a TEE).
    pub fn record(&self, outcome: Result<&'static str, Failure>) {
        let pause = match outcome {
            Ok(kind) => {
                self.ok(kind);
                Duration::from_millis(3)
            }
            Err(failure) => {
                self.failed(&failure);
                Duration::from_millis(30)
            }
        };
        std::thread::sleep(pause);
    }

    /// Runs one request with the heartbeat set.
    pub fn busy<T>(&self, request: impl FnOnce() -> T) -> T {
        let since = self.shared.now_ms().saturating_add(1);
        self.beat.busy_since.store(since, Ordering::Relaxed);
        let result = request();
        self.beat.busy_since.store(0, Ordering::Relaxed);
        result
    }
}

/// A connection to tpmd, made on first use and dropped after any failure.
#[derive(Default)]
pub struct TpmLink {
    conn: Option<TpmConsumer>,
}

impl TpmLink {
    /// One command and its TPM answer, whatever the response code.
    pub fn send(&mut self, ctx: &Ctx, command: &[u8]) -> Result<TpmAnswer, Failure> {
        let outcome = ctx.busy(|| {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => self.conn.insert(
                    TpmConsumer::connect_within(&ctx.paths, REQUEST_DEADLINE)
                        .map_err(|error| Failure::call(&error))?,
                ),
            };
            match conn.send(command) {
                Ok(TpmOutcome::Answer(answer)) => Ok(answer),
                Ok(TpmOutcome::Failed(error)) => Err(Failure::tpm(error)),
                Err(error) => Err(Failure::cli(&error)),
            }
        });
        if outcome.is_err() {
            self.conn = None;
        }
        outcome
    }

    /// TPM2_Startup(CLEAR), in the lifetime's write lock: success starts a TPM that was
    /// reset, TPM_RC_INITIALIZE means another consumer already did.
    pub fn startup(&mut self, ctx: &Ctx) -> Result<(), Failure> {
        let _lifetime = ctx
            .shared
            .lifetime
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let answer = self.send(ctx, &tpm::startup_clear())?;
        match answer.rc {
            0 => ctx.ok("startup"),
            tpm::TPM_RC_INITIALIZE => ctx.ok("startup_already_done"),
            rc if tpm::rc_is_retry(rc) => return Err(Failure::tpm_retry("Startup", rc)),
            rc => {
                return Err(Violation::TpmCode {
                    what: "Startup",
                    rc,
                }
                .into())
            }
        }
        Ok(())
    }

    /// Sends `command`; when the TPM was reset and wants Startup, starts it and sends again.
    pub fn send_started(&mut self, ctx: &Ctx, command: &[u8]) -> Result<TpmAnswer, Failure> {
        let answer = self.send(ctx, command)?;
        if answer.rc != tpm::TPM_RC_INITIALIZE {
            return Ok(answer);
        }
        ctx.ok("tpm_reset_seen");
        self.startup(ctx)?;
        let again = self.send(ctx, command)?;
        if again.rc == tpm::TPM_RC_INITIALIZE {
            return Err(Failure::new(
                ErrorClass::Retryable,
                "TPM reset again right after Startup",
            ));
        }
        Ok(again)
    }
}

/// A connection to bnxtd, made on first use and dropped after any failure.
#[derive(Default)]
pub struct BnxtLink {
    conn: Option<BnxtDriver>,
}

impl BnxtLink {
    pub fn call<T>(
        &mut self,
        ctx: &Ctx,
        request: impl FnOnce(&mut BnxtDriver) -> Result<T, CliError>,
    ) -> Result<T, Failure> {
        let outcome = ctx.busy(|| {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => self.conn.insert(
                    BnxtDriver::connect_within(&ctx.paths, REQUEST_DEADLINE)
                        .map_err(|error| Failure::call(&error))?,
                ),
            };
            request(conn).map_err(|error| Failure::cli(&error))
        });
        if outcome.is_err() {
            self.conn = None;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_and_missing_tees_are_expected_timeouts_and_lies_are_not() {
        let io = |kind| CallError::Io(std::io::Error::from(kind));
        assert_eq!(
            call_class(&io(ErrorKind::ConnectionReset)),
            ErrorClass::Disconnected
        );
        assert_eq!(call_class(&io(ErrorKind::WouldBlock)), ErrorClass::TimedOut);
        assert_eq!(
            call_class(&CallError::Frame(FrameError::Closed)),
            ErrorClass::Disconnected
        );
        assert_eq!(
            call_class(&CallError::Mismatch {
                expected: 1,
                got: 2
            }),
            ErrorClass::Wrong
        );
        assert_eq!(
            Failure::tpm(TpmError::Retryable).class,
            ErrorClass::Retryable
        );
        assert_eq!(
            Failure::tpm(TpmError::TeeUnavailable).class,
            ErrorClass::Unavailable
        );
        assert_eq!(
            Failure::tpm(TpmError::BadRequest).class,
            ErrorClass::Unexpected
        );
        assert_eq!(
            Failure::cli(&CliError::Bnxt(BnxtError::NoDevice)).class,
            ErrorClass::Unavailable
        );
        assert_eq!(
            Failure::cli(&CliError::Tpm("malformed".into())).class,
            ErrorClass::Wrong
        );
        assert!(!ErrorClass::TimedOut.expected());
        let mut counts = ErrorCounts::default();
        counts.add(ErrorClass::Retryable);
        counts.add(ErrorClass::Wrong);
        assert_eq!(counts.fatal(), 1);
    }
}
