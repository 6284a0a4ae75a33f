//! The hosted stack as `teectl up` starts it (secure world, init, teed, tpmd with its swtpm
//! sockets, bnxtd), driven from outside as its users drive it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tee_proto::control::{ControlRequest, OpOutcome, StackStatus};
use tee_proto::lifecycle::ServerKind;
use teectl::bnxt::BnxtDriver;
use teectl::soak::procs::{sample, ProcSample};
use teectl::stack::{self, Control, Daemons};
use teesys_root::StatePaths;

use crate::stats::Samples;

/// Names the loopback TCP port of tpmd's swtpm data channel (tpmd's shell reads it).
const TPMD_TCP_ENV: &str = "TPMD_SWTPM_TCP_PORT";

/// What one kexec took, from outside and as init counts it (ms, its clock's granularity).
#[derive(Debug, Clone, Copy)]
pub struct KexecTiming {
    pub wall: Duration,
    pub init_ms: u64,
    /// The shutdown IPC, from its start to the transition.
    pub shutdown_ms: Option<u64>,
    /// Each server's shutdown (teed, tpmd, bnxtd), from `Shutdown` to its ack.
    pub server_shutdown_ms: [Option<u64>; 3],
}

/// A running stack in a scratch state directory; `down` on drop.
pub struct Stack {
    pub paths: StatePaths,
    pub tcp_port: u16,
    daemons: Option<Daemons>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Stack {
    pub fn up(dir: &Path, tcp_port: u16) -> Result<Stack, String> {
        let paths = StatePaths::new(dir);
        let _ = std::fs::remove_dir_all(dir);
        // tpmd inherits the environment through init; TCP is its extra listener.
        std::env::set_var(TPMD_TCP_ENV, tcp_port.to_string());
        let up = stack::up(
            &paths,
            tee_rt::ram::DEFAULT_RAM_BYTES,
            true,
            Duration::from_secs(60),
        );
        std::env::remove_var(TPMD_TCP_ENV);
        let (daemons, _status) = up.map_err(err)?;
        Ok(Stack {
            paths,
            tcp_port,
            daemons: Some(daemons),
        })
    }

    pub fn swtpm_socket(&self) -> PathBuf {
        self.paths.swtpm_sock()
    }

    pub fn status(&self) -> Result<StackStatus, String> {
        Control::connect(&self.paths)
            .and_then(|mut control| control.status())
            .map_err(err)
    }

    /// One orderly kexec: the wall time from the request to init's report (the next boot
    /// settled, every server ready), and init's own figures.
    pub fn kexec(&self, control: &mut Control) -> Result<KexecTiming, String> {
        let start = Instant::now();
        let report = control.op(ControlRequest::Kexec).map_err(err)?;
        let wall = start.elapsed();
        if report.outcome != OpOutcome::Completed {
            return Err(format!("kexec did not complete: {:?}", report.outcome));
        }
        let shutdown = report.shutdown.as_ref();
        Ok(KexecTiming {
            wall,
            init_ms: report.took_ms,
            shutdown_ms: shutdown.and_then(|s| s.took_ms),
            server_shutdown_ms: shutdown.map_or([None; 3], |s| s.servers.map(|line| line.took_ms)),
        })
    }

    pub fn control(&self) -> Result<Control, String> {
        Control::connect(&self.paths).map_err(err)
    }

    /// The whole 8 MiB crash dump through bnxtd, checked against the image.
    pub fn coredump(&self, driver: &mut BnxtDriver) -> Result<(Duration, usize), String> {
        let dump = driver.coredump().map_err(err)?;
        if !dump.matches() {
            return Err("coredump checksum differs from the image".into());
        }
        Ok((dump.took, dump.bytes.len()))
    }

    pub fn bnxt(&self) -> Result<BnxtDriver, String> {
        let mut driver = BnxtDriver::connect(&self.paths).map_err(err)?;
        driver.load().map_err(err)?;
        Ok(driver)
    }

    /// The pids of the secure world, teed and tpmd (the processes a TPM command crosses).
    pub fn tpm_path_pids(&self) -> Result<Vec<(&'static str, u32)>, String> {
        let status = self.status()?;
        let secure = stack::read_pid(&self.paths, stack::SECURE_WORLD)
            .ok_or("no pid file for the secure world")?;
        let server = |kind: ServerKind| {
            status
                .server(kind)
                .pid
                .ok_or_else(|| format!("{} has no process", stack::server_name(kind)))
        };
        Ok(vec![
            ("tpmd", server(ServerKind::Tpmd)?),
            ("teed", server(ServerKind::Teed)?),
            ("secure world", secure),
        ])
    }

    /// Every long-lived process: name, sample.
    pub fn processes(&self) -> Result<Vec<(String, ProcSample)>, String> {
        let mut found = Vec::new();
        for (name, daemon) in [("secure world", stack::SECURE_WORLD), ("init", "init")] {
            let pid = stack::read_pid(&self.paths, daemon)
                .ok_or_else(|| format!("no pid file for {daemon}"))?;
            found.push((name.to_string(), sample(pid).map_err(err)?));
        }
        let status = self.status()?;
        for kind in [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd] {
            let pid = status
                .server(kind)
                .pid
                .ok_or_else(|| format!("{} has no process", stack::server_name(kind)))?;
            found.push((
                stack::server_name(kind).to_string(),
                sample(pid).map_err(err)?,
            ));
        }
        Ok(found)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = stack::down(&self.paths);
        if let Some(mut daemons) = self.daemons.take() {
            let _ = daemons.init.wait();
            let _ = daemons.secure_world.wait();
        }
        let _ = std::fs::remove_dir_all(self.paths.dir());
    }
}

/// CPU time a process has used (user, system), in seconds, from /proc/PID/stat (clock ticks of
/// 10 ms: meaningful over many operations only).
pub fn cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? / 100.0, ticks(12)? / 100.0))
}

/// The floor of a kexec's restarts: start and reap the three server binaries (each exits at
/// once without a lifecycle endpoint), the process creation and exit every cycle pays.
pub fn restart_floor(runs: usize) -> Result<Samples, String> {
    let programs: Vec<PathBuf> = ["teed", "tpmd", "bnxtd"]
        .iter()
        .map(|name| tee_rt::spawn::sibling_binary(name).map_err(err))
        .collect::<Result<_, _>>()?;
    crate::stats::sample(2, runs, || -> Result<(), String> {
        for program in &programs {
            Command::new(program)
                .env("RUST_LOG", "off")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(err)?;
        }
        Ok(())
    })
}

/// memcpy of `len` bytes between two faulted-in buffers: median time of `runs`.
pub fn memcpy_floor(len: usize, runs: usize) -> Samples {
    let source: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let mut dest = vec![1u8; len];
    let mut samples = Samples::with_capacity(runs);
    for _ in 0..runs + 2 {
        let start = Instant::now();
        dest.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut dest);
        samples.push(start.elapsed());
    }
    samples
}
