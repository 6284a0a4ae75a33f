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
    /// settled, every server ready), and init's own figure in ms.
    pub fn kexec(&self, control: &mut Control) -> Result<(Duration, u64), String> {
        let start = Instant::now();
        let report = control.op(ControlRequest::Kexec).map_err(err)?;
        let took = start.elapsed();
        if report.outcome != OpOutcome::Completed {
            return Err(format!("kexec did not complete: {:?}", report.outcome));
        }
        Ok((took, report.took_ms))
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
