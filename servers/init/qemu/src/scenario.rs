//! The lifecycle scenario on the real kernel, printed as the hosted demo's table: what the
//! secure world held at each transition (taken while the guest waits for `Go`) and after each
//! step, with a verdict per line. Every wait is bounded.

use std::time::{Duration, Instant};

use tee_proto::secure::SecureStats;
use teectl::tpm::{self, TpmAnswer};
use teesys_guest::boot::{GuestBoot, GuestKind};
use teesys_guest::ctl::{from_hex, to_hex, GuestEvent, HostCommand, ServerLine};

use crate::launch::{Input, LaunchError, Machine};

/// A boot under TCG: kernel, initramfs unpacking, servers (generous: two cores are shared).
const BOOT_BOUND: Duration = Duration::from_secs(180);
/// The shutdown IPC, and the kernel load it may wait on.
const TRANSITION_BOUND: Duration = Duration::from_secs(180);
/// One consumer call (the 8 MiB coredump is the longest).
const CALL_BOUND: Duration = Duration::from_secs(120);
/// The NV counter the scenario writes before the crash and reads after.
const NV_INDEX: u32 = 0x0150_0C4A;
/// The PCR the scenario extends.
const PCR: u8 = 16;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("{0}")]
    Failed(String),
}

fn failed(text: impl Into<String>) -> ScenarioError {
    ScenarioError::Failed(text.into())
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub took_ms: u64,
    pub boot: Option<GuestBoot>,
    pub left: Option<SecureStats>,
    pub secure: Option<SecureStats>,
    pub note: String,
    pub problems: Vec<String>,
}

fn boot_text(boot: Option<GuestBoot>) -> String {
    boot.map_or("-".into(), |b| {
        let kind = match b.kind {
            GuestKind::Firmware => "qemu",
            GuestKind::Kexec => "kexec",
            GuestKind::Crash => "crash kernel",
        };
        format!("boot {} ({kind})", b.number)
    })
}

fn line(step: &Step) -> String {
    let cells = teectl::show::step_cells(step.left, step.secure, &step.problems);
    format!(
        "{:<30} {:>7} ms  {:<22} {:<26} {:<44} {} {}",
        step.name,
        step.took_ms,
        boot_text(step.boot),
        cells.left,
        cells.secure,
        cells.verdict,
        step.note
    )
}

/// Times measured under TCG, for the README's benchmark; written to the run folder as
/// `timings.json`, which `cargo xtask bench` reads for its QEMU figure.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Timings {
    /// QEMU start → teed ready on the cold boot.
    pub cold_boot_ms: Option<u64>,
    /// Shutdown IPC sent → the next boot's teed ready, per kexec.
    pub kexec_cycle_ms: Vec<u64>,
    /// Crash sent → the crash kernel's teed declined.
    pub kdump_ms: Option<u64>,
    /// Reboot sent → teed ready after the machine reset.
    pub reset_ms: Option<u64>,
    /// Background loads: `kexec -l` and `kexec -p`.
    pub load_ms: Vec<u64>,
    pub crash_load_ms: Vec<u64>,
}

fn median(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

impl Timings {
    pub fn summary(&self) -> String {
        let show = |v: Option<u64>| v.map_or("-".into(), |ms| format!("{:.2} s", ms as f64 / 1e3));
        format!(
            "timings (TCG): cold boot to teed ready {}; kexec cycle (shutdown IPC sent -> next teed ready) median {} over {} (min {}, max {}); kdump (crash -> crash kernel's teed declined) {}; reset -> teed ready {}; background kexec -l median {}, kexec -p median {}",
            show(self.cold_boot_ms),
            show(median(&self.kexec_cycle_ms)),
            self.kexec_cycle_ms.len(),
            show(self.kexec_cycle_ms.iter().min().copied()),
            show(self.kexec_cycle_ms.iter().max().copied()),
            show(self.kdump_ms),
            show(self.reset_ms),
            show(median(&self.load_ms)),
            show(median(&self.crash_load_ms)),
        )
    }
}

/// A boot as the guest reported it.
#[derive(Debug, Clone)]
pub struct Booted {
    pub boot: GuestBoot,
    pub servers: Vec<ServerLine>,
    /// Host time at which teed settled (ready or declined).
    pub teed_settled: Instant,
}

impl Booted {
    fn outcome(&self, server: &str) -> &str {
        self.servers
            .iter()
            .find(|line| line.server == server)
            .map_or("absent", |line| line.outcome.as_str())
    }
}

pub struct Scenario {
    pub machine: Machine,
    pub steps: Vec<Step>,
    pub timings: Timings,
    next_id: u32,
    printed: usize,
    /// Background kexec loads reported since the current boot's `Hello`.
    loads_seen: u32,
}

impl Scenario {
    pub fn new(machine: Machine) -> Scenario {
        Scenario {
            machine,
            steps: Vec::new(),
            timings: Timings::default(),
            next_id: 1,
            printed: 0,
            loads_seen: 0,
        }
    }

    pub fn print_header(&self) {
        println!(
            "{:<30} {:>10}  {:<22} {:<26} {:<44} verdict",
            "step", "took", "boot", "left at transition", "secure world after"
        );
    }

    fn record(&mut self, step: Step) {
        self.steps.push(step);
        for step in &self.steps[self.printed..] {
            println!("{}", line(step));
        }
        self.printed = self.steps.len();
    }

    pub fn passed(&self) -> bool {
        self.steps.iter().all(|step| step.problems.is_empty())
    }

    /// Waits for the guest's next input that `want` takes; background-load reports are noted
    /// on the way, anything that means the machine went away is an error.
    fn wait_for<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut want: impl FnMut(&mut Self, Input) -> Result<Option<T>, ScenarioError>,
    ) -> Result<T, ScenarioError> {
        let give_up = Instant::now() + within;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(failed(format!("no {what} within {}s", within.as_secs())));
            }
            let Some(input) = self.machine.next(left) else {
                continue;
            };
            match input {
                Input::Guest(GuestEvent::Loaded {
                    crash,
                    ok,
                    took_ms,
                    detail,
                }) => {
                    if !ok {
                        return Err(failed(format!(
                            "kexec load (crash: {crash}) failed: {detail}"
                        )));
                    }
                    if crash {
                        self.timings.crash_load_ms.push(took_ms);
                    } else {
                        self.timings.load_ms.push(took_ms);
                    }
                    self.loads_seen += 1;
                    if let Some(value) = want(self, Input::Loaded)? {
                        return Ok(value);
                    }
                }
                Input::Closed(stream) => {
                    return Err(failed(format!(
                        "QEMU went away ({stream} closed) waiting for {what}"
                    )))
                }
                other => {
                    if let Some(value) = want(self, other)? {
                        return Ok(value);
                    }
                }
            }
        }
    }

    /// Waits for a boot's `Hello` and `Booted`.
    pub fn await_boot(&mut self, expect: GuestKind) -> Result<Booted, ScenarioError> {
        let boot = self.wait_for("guest hello", BOOT_BOUND, |scenario, input| match input {
            Input::Guest(GuestEvent::Hello { boot, .. }) => {
                scenario.loads_seen = 0;
                Ok(Some(boot))
            }
            Input::Qmp { event, data } if event == "SHUTDOWN" => Err(failed(format!(
                "unexpected QMP {event} {data} while booting"
            ))),
            other => {
                tracing::debug!(?other, "ignored while waiting for hello");
                Ok(None)
            }
        })?;
        if boot.kind != expect {
            return Err(failed(format!(
                "expected a {expect:?} boot, the guest says {boot:?}"
            )));
        }
        self.wait_for("boot to settle", BOOT_BOUND, |_, input| match input {
            Input::Guest(GuestEvent::Booted {
                boot,
                servers,
                teed_settled_uptime_ms,
                uptime_ms,
            }) => {
                let since = Duration::from_millis(uptime_ms.saturating_sub(teed_settled_uptime_ms));
                let teed_settled = Instant::now()
                    .checked_sub(since)
                    .unwrap_or_else(Instant::now);
                Ok(Some(Booted {
                    boot,
                    servers,
                    teed_settled,
                }))
            }
            Input::Qmp { event, data } if event == "SHUTDOWN" => Err(failed(format!(
                "unexpected QMP {event} {data} while booting"
            ))),
            _ => Ok(None),
        })
    }

    /// Sends a command and waits for its reply: `(ok, detail, hex)`.
    fn call(
        &mut self,
        make: impl FnOnce(u32) -> HostCommand,
    ) -> Result<(bool, String, Option<String>), ScenarioError> {
        let id = self.next_id;
        self.next_id += 1;
        self.machine.send(&make(id))?;
        self.wait_for("reply", CALL_BOUND, |_, input| match input {
            Input::Guest(GuestEvent::Reply {
                id: got,
                ok,
                detail,
                hex,
            }) if got == id => Ok(Some((ok, detail, hex))),
            Input::Qmp { event, data } if event == "SHUTDOWN" => Err(failed(format!(
                "unexpected QMP {event} {data} during a call"
            ))),
            _ => Ok(None),
        })
    }

    /// A TPM command through tpmd: the TPM's answer, or tpmd's error text.
    fn tpm(&mut self, command: &[u8]) -> Result<Result<TpmAnswer, String>, ScenarioError> {
        let hex = to_hex(command);
        let (ok, detail, answer) = self.call(|id| HostCommand::Tpm { id, hex })?;
        if !ok {
            return Ok(Err(detail));
        }
        let bytes = answer
            .as_deref()
            .and_then(from_hex)
            .ok_or_else(|| failed("TPM reply without bytes"))?;
        Ok(tpm::parse_response(&bytes).map_err(|e| e.to_string()))
    }

    /// Starts a transition and takes the secure world's figures while the guest waits:
    /// `(announced kind, clean, detail, left)`.
    fn transition(
        &mut self,
        make: impl FnOnce(u32) -> HostCommand,
    ) -> Result<(String, bool, String, SecureStats), ScenarioError> {
        let id = self.next_id;
        self.next_id += 1;
        self.machine.send(&make(id))?;
        let (kind, clean, detail) =
            self.wait_for("transition", TRANSITION_BOUND, |_, input| match input {
                Input::Guest(GuestEvent::Transition {
                    kind,
                    clean,
                    detail,
                    ..
                }) => Ok(Some((kind, clean, detail))),
                Input::Guest(GuestEvent::Reply {
                    id: got,
                    ok: false,
                    detail,
                    ..
                }) if got == id => Err(failed(format!("transition refused: {detail}"))),
                Input::Qmp { event, data } if event == "SHUTDOWN" => Err(failed(format!(
                    "unexpected QMP {event} {data} before the transition"
                ))),
                _ => Ok(None),
            })?;
        let left = self.machine.stats()?;
        self.machine.send(&HostCommand::Go)?;
        Ok((kind, clean, detail, left))
    }

    fn stats(&mut self) -> Option<SecureStats> {
        self.machine.stats().ok()
    }

    fn held(stats: &SecureStats) -> u32 {
        stats.registrations + stats.sessions + stats.cached_buffers
    }

    /// Grants hold in the guest: every server runs as a uid of its own, not root, and maps of
    /// physical memory exactly what its grant names (tpmd and bnxtd their windows, teed only
    /// the carve-out): the problems found.
    fn grant_problems(&self, booted: &Booted) -> Vec<String> {
        let append = self.machine.config.append();
        let layout = teesys_guest::layout::carveout(&append)
            .map_err(|e| e.to_string())
            .and_then(|carve| {
                teesys_guest::layout::init_config(carve)
                    .map(|config| (carve, config))
                    .map_err(|e| e.to_string())
            });
        let (carve, config) = match layout {
            Ok(pair) => pair,
            Err(error) => return vec![format!("no layout: {error}")],
        };
        let mut problems = Vec::new();
        let mut uids = Vec::new();
        for line in &booted.servers {
            let Some(uid) = line.uid else {
                continue;
            };
            if uid == 0 || uids.contains(&uid) {
                problems.push(format!("{} runs as uid {uid}", line.server));
            }
            uids.push(uid);
            let within = |(pa, len): &(u64, u64), base: u64, size: u64| {
                *pa >= base && pa + len <= base + size
            };
            let ok = match line.server.as_str() {
                "tpmd" => line.dev_mem == [(config.windows.tpmd.base, config.windows.tpmd.len)],
                "bnxtd" => line.dev_mem == [(config.windows.bnxtd.base, config.windows.bnxtd.len)],
                _ => line
                    .dev_mem
                    .iter()
                    .all(|m| within(m, carve.base, carve.len)),
            };
            if !ok {
                problems.push(format!(
                    "{} maps {:x?} of /dev/mem",
                    line.server, line.dev_mem
                ));
            }
        }
        problems
    }

    /// Cold boot: QEMU started → every server settled.
    pub fn cold_boot(&mut self) -> Result<Booted, ScenarioError> {
        let booted = self.await_boot(GuestKind::Firmware)?;
        let took = ms(booted
            .teed_settled
            .saturating_duration_since(self.machine.started));
        self.timings.cold_boot_ms = Some(took);
        let mut problems = self.grant_problems(&booted);
        for server in ["teed", "tpmd", "bnxtd"] {
            if booted.outcome(server) != "ready" {
                problems.push(format!("{server} {}", booted.outcome(server)));
            }
        }
        let secure = self.stats();
        self.record(Step {
            name: "cold boot".into(),
            took_ms: ms(self.machine.started.elapsed()),
            boot: Some(booted.boot),
            left: None,
            secure,
            note: format!(
                "teed ready {:.2} s after QEMU start; uids {:?}, each maps only its grant",
                took as f64 / 1e3,
                booted.servers.iter().map(|l| l.uid).collect::<Vec<_>>()
            ),
            problems,
        });
        Ok(booted)
    }

    /// TPM startup (the fTPM TA started the TPM itself: TPM_RC_INITIALIZE is "already
    /// started"), getrandom, a PCR extend seen by a PCR read.
    pub fn tpm_basics(&mut self, boot: GuestBoot) -> Result<(), ScenarioError> {
        let start = Instant::now();
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        match self.tpm(&tpm::startup_clear())? {
            Ok(answer) if answer.rc == 0 || answer.rc == tpm::TPM_RC_INITIALIZE => {
                notes.push(format!("startup rc {:#x}", answer.rc))
            }
            Ok(answer) => problems.push(format!("startup rc {:#x}", answer.rc)),
            Err(error) => problems.push(format!("startup: {error}")),
        }
        match self.tpm(&tpm::get_random(16))? {
            Ok(answer) if answer.rc == 0 => {
                let bytes = tpm::random_bytes(&answer).unwrap_or_default();
                if bytes.len() == 16 {
                    notes.push(format!("random {}", to_hex(&bytes[..4])));
                } else {
                    problems.push(format!("getrandom gave {} bytes", bytes.len()));
                }
            }
            other => problems.push(format!("getrandom: {other:?}")),
        }
        let before = self.pcr()?;
        let digest = [0x5A; 32];
        match self.tpm(&tpm::pcr_extend_sha256(u32::from(PCR), &digest))? {
            Ok(answer) if answer.rc == 0 => {}
            other => problems.push(format!("pcrextend: {other:?}")),
        }
        let after = self.pcr()?;
        if before.is_some() && after.is_some() && before != after {
            notes.push(format!("pcr{PCR} extended"));
        } else {
            problems.push(format!("pcr{PCR} read {before:?} then {after:?}"));
        }
        let secure = self.stats();
        self.record(Step {
            name: "tpm startup, getrandom, pcr".into(),
            took_ms: ms(start.elapsed()),
            boot: Some(boot),
            left: None,
            secure,
            note: notes.join(", "),
            problems,
        });
        Ok(())
    }

    fn pcr(&mut self) -> Result<Option<Vec<u8>>, ScenarioError> {
        Ok(match self.tpm(&tpm::pcr_read_sha256(PCR))? {
            Ok(answer) if answer.rc == 0 => tpm::first_digest(&answer),
            _ => None,
        })
    }

    /// Defines (once) and increments the NV counter; its value after.
    pub fn nv_write(&mut self, boot: GuestBoot) -> Result<Option<u64>, ScenarioError> {
        let start = Instant::now();
        let mut problems = Vec::new();
        match self.tpm(&tpm::nv_define_counter(NV_INDEX))? {
            Ok(answer) if answer.rc == 0 || answer.rc == tpm::TPM_RC_NV_DEFINED => {}
            other => problems.push(format!("nv define: {other:?}")),
        }
        match self.tpm(&tpm::nv_increment(NV_INDEX))? {
            Ok(answer) if answer.rc == 0 => {}
            other => problems.push(format!("nv increment: {other:?}")),
        }
        let value = self.nv_read()?;
        if value.is_none() {
            problems.push("nv read failed".into());
        }
        let secure = self.stats();
        self.record(Step {
            name: "tpm nv counter written".into(),
            took_ms: ms(start.elapsed()),
            boot: Some(boot),
            left: None,
            secure,
            note: format!("counter = {value:?}"),
            problems,
        });
        Ok(value)
    }

    fn nv_read(&mut self) -> Result<Option<u64>, ScenarioError> {
        Ok(match self.tpm(&tpm::nv_read_counter(NV_INDEX))? {
            Ok(answer) if answer.rc == 0 => tpm::counter_value(&answer),
            _ => None,
        })
    }

    /// Reads the NV counter back and checks it kept `expected`.
    pub fn nv_check(
        &mut self,
        name: &str,
        boot: GuestBoot,
        expected: Option<u64>,
    ) -> Result<(), ScenarioError> {
        let start = Instant::now();
        let value = self.nv_read()?;
        let mut problems = Vec::new();
        if value.is_none() || value != expected {
            problems.push(format!("counter {value:?}, written {expected:?}"));
        }
        let secure = self.stats();
        self.record(Step {
            name: name.into(),
            took_ms: ms(start.elapsed()),
            boot: Some(boot),
            left: None,
            secure,
            note: format!("counter = {value:?}"),
            problems,
        });
        Ok(())
    }

    /// NIC fastboot and the whole crash dump, checked in the guest against the image.
    pub fn nic(&mut self, boot: GuestBoot) -> Result<(), ScenarioError> {
        let start = Instant::now();
        let mut problems = Vec::new();
        let (ok, detail, _) = self.call(|id| HostCommand::BnxtLoad { id })?;
        if !ok {
            problems.push(format!("fastboot: {detail}"));
        }
        let (ok, dump, _) = self.call(|id| HostCommand::Coredump { id })?;
        if !ok {
            problems.push(format!("coredump: {dump}"));
        }
        let secure = self.stats();
        self.record(Step {
            name: "nic fastboot + 8 MiB coredump".into(),
            took_ms: ms(start.elapsed()),
            boot: Some(boot),
            left: None,
            secure,
            note: dump,
            problems,
        });
        Ok(())
    }

    /// Waits until this boot's background loads are done: the kexec kernel, and on a normal
    /// boot the crash kernel too. A system loads them at boot and kexecs much later; waiting
    /// keeps the load out of the kexec cycle's figure (it is reported on its own).
    fn await_loads(&mut self, boot: GuestBoot) -> Result<(), ScenarioError> {
        let expected = if boot.kind == GuestKind::Crash { 1 } else { 2 };
        if self.loads_seen >= expected {
            return Ok(());
        }
        self.wait_for("kexec loads", TRANSITION_BOUND, |scenario, input| {
            Ok(match input {
                Input::Loaded if scenario.loads_seen >= expected => Some(()),
                _ => None,
            })
        })
    }

    /// One orderly kexec: nothing may be left at the transition; the next boot comes up.
    /// `check_leaks` is false out of the crash kernel, whose predecessor's leftovers are held
    /// until the next probe reclaims them.
    pub fn kexec(
        &mut self,
        name: &str,
        from: GuestBoot,
        check_leaks: bool,
    ) -> Result<Booted, ScenarioError> {
        self.await_loads(from)?;
        let sent = Instant::now();
        let (kind, clean, detail, left) = self.transition(|id| HostCommand::Kexec { id })?;
        let mut problems = Vec::new();
        if kind != "kexec" {
            problems.push(format!("the guest announced {kind}"));
        }
        if !clean {
            problems.push(format!("shutdown IPC not clean: {detail}"));
        }
        if check_leaks && Self::held(&left) > 0 {
            problems.push(format!(
                "left {} registrations, {} sessions, {} cached buffers",
                left.registrations, left.sessions, left.cached_buffers
            ));
        }
        let booted = self.await_boot(GuestKind::Kexec)?;
        if booted.boot.number != from.number + 1 {
            problems.push(format!(
                "boot number {} after {}",
                booted.boot.number, from.number
            ));
        }
        problems.extend(self.grant_problems(&booted));
        let cycle = ms(booted.teed_settled.saturating_duration_since(sent));
        if from.kind != GuestKind::Crash {
            self.timings.kexec_cycle_ms.push(cycle);
        }
        for server in ["teed", "tpmd", "bnxtd"] {
            if booted.outcome(server) != "ready" {
                problems.push(format!("{server} {}", booted.outcome(server)));
            }
        }
        let secure = self.stats();
        self.record(Step {
            name: name.into(),
            took_ms: ms(sent.elapsed()),
            boot: Some(booted.boot),
            left: Some(left),
            secure,
            note: format!("cycle {:.2} s; {detail}", cycle as f64 / 1e3),
            problems,
        });
        Ok(booted)
    }

    /// A real kdump: a panic with no shutdown IPC; in the crash kernel teed declines before
    /// any SMC and tpmd answers "TEE unavailable".
    pub fn kdump(&mut self, from: GuestBoot) -> Result<Booted, ScenarioError> {
        self.await_loads(from)?;
        let sent = Instant::now();
        let smcs_before = self.stats().map(|s| s.smcs);
        let (kind, _, _, left) = self.transition(|id| HostCommand::Crash { id })?;
        let mut problems = Vec::new();
        if kind != "crash" {
            problems.push(format!("the guest announced {kind}"));
        }
        let booted = self.await_boot(GuestKind::Crash)?;
        self.timings.kdump_ms = Some(ms(booted.teed_settled.saturating_duration_since(sent)));
        if !booted.outcome("teed").starts_with("declined") {
            problems.push(format!(
                "teed {} in the crash kernel",
                booted.outcome("teed")
            ));
        }
        let smcs_after = self.stats().map(|s| s.smcs);
        if smcs_before.is_some() && smcs_before != smcs_after {
            problems.push(format!(
                "SMCs in the crash kernel: {smcs_before:?} -> {smcs_after:?}"
            ));
        }
        let answer = self.tpm(&tpm::get_random(8))?;
        let unavailable = matches!(&answer, Err(text) if text.contains("TEE unavailable"));
        if !unavailable {
            problems.push(format!("tpmd in the crash kernel answered {answer:?}"));
        }
        if from.number + 1 != booted.boot.number {
            problems.push(format!("boot number {}", booted.boot.number));
        }
        let secure = self.stats();
        self.record(Step {
            name: "kdump (sysrq c, no shutdown)".into(),
            took_ms: ms(sent.elapsed()),
            boot: Some(booted.boot),
            left: Some(left),
            secure,
            note: "teed declined, no SMC; tpmd: TEE unavailable".into(),
            problems,
        });
        Ok(booted)
    }

    /// The kexec out of the crash kernel: the journal reclaims what the crash left, so the
    /// secure world holds no more than a fresh boot's own.
    pub fn kexec_back(
        &mut self,
        from: GuestBoot,
        fresh: Option<SecureStats>,
    ) -> Result<Booted, ScenarioError> {
        let booted = self.kexec("kexec back (journal reclaims)", from, false)?;
        let now = self.stats();
        if let (Some(now), Some(fresh)) = (now, fresh) {
            if now.registrations != fresh.registrations || now.sessions != fresh.sessions {
                if let Some(step) = self.steps.last_mut() {
                    step.problems.push(format!(
                        "holds {} reg / {} sess after the reclaim, a fresh boot {} / {}",
                        now.registrations, now.sessions, fresh.registrations, fresh.sessions
                    ));
                }
            }
        }
        let answer = self.tpm(&tpm::get_random(8))?;
        if !matches!(&answer, Ok(a) if a.rc == 0) {
            if let Some(step) = self.steps.last_mut() {
                step.problems
                    .push(format!("the fTPM after the crash answered {answer:?}"));
            }
        }
        self.reprint_last();
        Ok(booted)
    }

    /// A guest reset: the shutdown IPC, then PSCI reset; QEMU pauses, the secure world is
    /// reset (a machine reset), then the machine runs again.
    pub fn reset(&mut self) -> Result<Booted, ScenarioError> {
        let sent = Instant::now();
        let resets_before = self.stats().map(|s| s.resets);
        let (kind, clean, detail, left) = self.transition(|id| HostCommand::Reboot { id })?;
        let mut problems = Vec::new();
        if kind != "reboot" {
            problems.push(format!("the guest announced {kind}"));
        }
        if !clean {
            problems.push(format!("shutdown IPC not clean: {detail}"));
        }
        if Self::held(&left) > 0 {
            problems.push(format!(
                "left {} registrations, {} sessions",
                left.registrations, left.sessions
            ));
        }
        self.await_guest_reset()?;
        let booted = self.await_boot(GuestKind::Firmware)?;
        self.timings.reset_ms = Some(ms(booted.teed_settled.saturating_duration_since(sent)));
        let resets_after = self.stats().map(|s| s.resets);
        if resets_before.map(|r| r + 1) != resets_after {
            problems.push(format!(
                "secure-world resets {resets_before:?} -> {resets_after:?}"
            ));
        }
        for server in ["teed", "tpmd", "bnxtd"] {
            if booted.outcome(server) != "ready" {
                problems.push(format!("{server} {}", booted.outcome(server)));
            }
        }
        let secure = self.stats();
        self.record(Step {
            name: "guest reset (machine reset)".into(),
            took_ms: ms(sent.elapsed()),
            boot: Some(booted.boot),
            left: Some(left),
            secure,
            note: "QEMU RESET -> secure world reset".into(),
            problems,
        });
        Ok(booted)
    }

    /// Waits for the guest's reset request (QEMU paused on it), resets the secure world,
    /// then resets and resumes the machine.
    fn await_guest_reset(&mut self) -> Result<(), ScenarioError> {
        self.wait_for("guest reset", TRANSITION_BOUND, |_, input| match input {
            Input::Qmp { event, data } if event == "SHUTDOWN" => {
                let reason = data.get("reason").and_then(|r| r.as_str()).unwrap_or("");
                if reason == "guest-reset" {
                    Ok(Some(()))
                } else {
                    Err(failed(format!("QEMU SHUTDOWN ({reason}), not a reset")))
                }
            }
            _ => Ok(None),
        })?;
        self.machine.reset_secure_world()?;
        // Under reboot=shutdown QEMU turns system_reset into a shutdown as well: reset for
        // this one, then back, so the guest's next reset pauses again (softmmu/runstate.c,
        // qemu_system_reset_request).
        let action = |reboot: &str| serde_json::json!({ "reboot": reboot });
        let bound = Duration::from_secs(30);
        self.machine
            .qmp_execute("set-action", action("reset"), bound)?;
        self.machine.qmp_command("system_reset", bound)?;
        // system_reset only asks; the machine may run again once QEMU reports it done.
        self.wait_for("QEMU's reset", TRANSITION_BOUND, |_, input| match input {
            Input::Qmp { event, .. } if event == "RESET" => Ok(Some(())),
            _ => Ok(None),
        })?;
        self.machine
            .qmp_execute("set-action", action("shutdown"), bound)?;
        self.machine.qmp_command("cont", bound)?;
        Ok(())
    }

    /// The orderly end: shutdown IPC, power-off, QEMU quits. `check_leaks` is false for the
    /// seed's build, which leaks by design.
    pub fn power_off(&mut self, check_leaks: bool) -> Result<(), ScenarioError> {
        let sent = Instant::now();
        let (kind, clean, detail, left) = self.transition(|id| HostCommand::PowerOff { id })?;
        let mut problems = Vec::new();
        if kind != "poweroff" {
            problems.push(format!("the guest announced {kind}"));
        }
        if check_leaks && !clean {
            problems.push(format!("shutdown IPC not clean: {detail}"));
        }
        if check_leaks && Self::held(&left) > 0 {
            problems.push(format!(
                "left {} registrations, {} sessions",
                left.registrations, left.sessions
            ));
        }
        self.wait_for("power-off", TRANSITION_BOUND, |_, input| match input {
            Input::Qmp { event, .. } if event == "SHUTDOWN" => Ok(Some(())),
            _ => Ok(None),
        })?;
        self.record(Step {
            name: "power off".into(),
            took_ms: ms(sent.elapsed()),
            boot: None,
            left: Some(left),
            secure: None,
            note: detail,
            problems,
        });
        Ok(())
    }

    /// The seed on a real kernel: kexecs until bnxtd fails to come up; returns the kexec
    /// number on which it failed (or `None` after `up_to` clean ones).
    pub fn seed_kexecs(
        &mut self,
        mut from: GuestBoot,
        up_to: u32,
    ) -> Result<Option<u32>, ScenarioError> {
        for kexec in 1..=up_to {
            let sent = Instant::now();
            let (_, _, detail, left) = self.transition(|id| HostCommand::Kexec { id })?;
            let booted = self.await_boot(GuestKind::Kexec)?;
            let bnxtd = booted.outcome("bnxtd").to_string();
            let secure = self.stats();
            self.record(Step {
                name: format!("seed kexec {kexec}"),
                took_ms: ms(sent.elapsed()),
                boot: Some(booted.boot),
                left: Some(left),
                secure,
                note: format!("bnxtd {bnxtd}; {detail}"),
                problems: Vec::new(),
            });
            from = booted.boot;
            if bnxtd != "ready" {
                return Ok(Some(kexec));
            }
        }
        let _ = from;
        Ok(None)
    }

    /// Marks the last step failed.
    pub fn fail_last(&mut self, problem: String) {
        if let Some(step) = self.steps.last_mut() {
            step.problems.push(problem);
        }
        self.reprint_last();
    }

    fn reprint_last(&mut self) {
        if let Some(step) = self.steps.last() {
            if !step.problems.is_empty() {
                println!("{}", line(step));
            }
        }
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[9, 1, 5]), Some(5));
    }

    #[test]
    fn a_failed_step_says_fail_with_its_problems() {
        let step = Step {
            name: "kexec 1".into(),
            took_ms: 1,
            boot: Some(GuestBoot {
                number: 2,
                kind: GuestKind::Kexec,
            }),
            left: None,
            secure: None,
            note: String::new(),
            problems: vec!["left 1 registrations".into()],
        };
        let text = line(&step);
        assert!(text.contains("FAIL: left 1 registrations"), "{text}");
        assert!(text.contains("boot 2 (kexec)"), "{text}");
    }
}
