//! `teesys-qemu`: the service set under a real arm64 Linux kernel in QEMU, with real kexec and
//! real kdump, the secure world on the host. `cargo xtask qemu` (and `./run-qemu.sh`) fetch and
//! build what it needs and run it; it can also be run by hand on those artifacts.
//!
//! Exit status: 0 when every step passed, 1 on any leak, error or missed bound.

mod launch;
mod scenario;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use launch::{Machine, MachineConfig};
use scenario::{Scenario, ScenarioError, Timings};

/// The run's timings, in its run folder (xtask's bench reads this name).
const TIMINGS_FILE: &str = "timings.json";

#[derive(Debug, Parser)]
#[command(name = "teesys-qemu", version)]
struct Args {
    /// The arm64 kernel Image.
    #[arg(long)]
    kernel: PathBuf,
    /// The guest's initramfs (newc cpio).
    #[arg(long)]
    initrd: PathBuf,
    /// The secure-world binary (runs on the host).
    #[arg(long)]
    secure_world: PathBuf,
    /// Where the run's logs go (console, secure world, QEMU).
    #[arg(long)]
    run_dir: PathBuf,
    #[arg(long, default_value = "qemu-system-aarch64")]
    qemu: PathBuf,
    /// Orderly kexecs before the kdump.
    #[arg(long, default_value_t = 3)]
    kexecs: u32,
    /// The initramfs holds the seed-bugs servers: expect the bnxt registration to fail on the
    /// 4th kexec instead.
    #[arg(long)]
    seed_bugs: bool,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Extra kernel parameters.
    #[arg(long, default_value = "")]
    append: String,
}

fn main() -> ExitCode {
    tee_rt::logging::init("teesys-qemu");
    let args = Args::parse();
    let run_dir = args.run_dir.clone();
    let ram_file = ram_file_for(&run_dir);
    let image_len = std::fs::metadata(&args.kernel).map_or(0, |m| m.len());
    let config = MachineConfig {
        qemu: resolve(&args.qemu),
        secure_world: args.secure_world.clone(),
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        run_dir: run_dir.clone(),
        ram_file,
        ram_mib: 2048,
        carveout_mib: 128,
        image_mib: 64,
        image_len,
        crashkernel_mib: 512,
        smp: args.smp,
        extra_append: args.append.clone(),
    };
    println!("run folder: {}", run_dir.display());
    let machine = match Machine::start(config) {
        Ok(machine) => machine,
        Err(error) => {
            eprintln!("teesys-qemu: cannot start: {error}");
            print_tails(&run_dir);
            return ExitCode::FAILURE;
        }
    };
    let mut scenario = Scenario::new(machine);
    scenario.print_header();
    let outcome = if args.seed_bugs {
        seed_run(&mut scenario, &run_dir)
    } else {
        full_run(&mut scenario, args.kexecs)
    };
    let passed = outcome.is_ok() && scenario.passed();
    if let Err(error) = &outcome {
        eprintln!("teesys-qemu: {error}");
    }
    if !args.seed_bugs {
        println!("{}", scenario.timings.summary());
        write_timings(&scenario.timings, &run_dir);
    }
    let machine = scenario.machine;
    machine.stop();
    if passed {
        println!("qemu: PASS");
        ExitCode::SUCCESS
    } else {
        print_tails(&run_dir);
        println!("qemu: FAIL (logs in {})", run_dir.display());
        ExitCode::FAILURE
    }
}

/// The run's timings as JSON in the run folder; a failure to write them is only reported.
fn write_timings(timings: &Timings, run_dir: &Path) {
    let path = run_dir.join(TIMINGS_FILE);
    let written = serde_json::to_string_pretty(timings)
        .map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(&path, text + "\n").map_err(|e| e.to_string()));
    match written {
        Ok(()) => println!("timings: {}", path.display()),
        Err(error) => eprintln!("teesys-qemu: cannot write {}: {error}", path.display()),
    }
}

/// cold boot, TPM, NIC, N kexecs, kdump, kexec back, reset, NV across it all, power-off.
fn full_run(scenario: &mut Scenario, kexecs: u32) -> Result<(), ScenarioError> {
    let cold = scenario.cold_boot()?;
    let fresh = scenario.machine.stats().ok();
    scenario.tpm_basics(cold.boot)?;
    let written = scenario.nv_write(cold.boot)?;
    scenario.nic(cold.boot)?;
    let mut boot = cold.boot;
    for n in 1..=kexecs {
        boot = scenario.kexec(&format!("kexec {n}"), boot, true)?.boot;
    }
    let crash = scenario.kdump(boot)?;
    let back = scenario.kexec_back(crash.boot, fresh)?;
    scenario.nv_check("tpm nv after the crash", back.boot, written)?;
    let reset = scenario.reset()?;
    scenario.tpm_basics(reset.boot)?;
    scenario.nv_check("tpm nv after the reset", reset.boot, written)?;
    scenario.power_off(true)
}

/// The seed on a real kernel: with the Linux 5.13 behaviour the 4 MiB bnxt registration is
/// refused on the 4th kexec, TEE_ERROR_BAD_PARAMETERS (0xffff0006) in teed's log.
fn seed_run(scenario: &mut Scenario, run_dir: &Path) -> Result<(), ScenarioError> {
    let cold = scenario.cold_boot()?;
    let failed_on = scenario.seed_kexecs(cold.boot, 6)?;
    let console = std::fs::read_to_string(run_dir.join("console.log")).unwrap_or_default();
    let refused = console.lines().any(|line| {
        line.contains("teed")
            && line.contains("registration refused")
            && mentions_bad_parameters(line)
    });
    match failed_on {
        Some(4) if refused => {
            println!("seed-bugs: bnxtd's 4 MiB registration refused on the 4th real kexec (TEE_ERROR_BAD_PARAMETERS in teed's log)");
        }
        other => scenario.fail_last(format!(
            "expected the registration refused on the 4th kexec with BAD_PARAMETERS in teed's log; failed on {other:?}, refusal logged: {refused}"
        )),
    }
    scenario.power_off(false)
}

/// TEE_ERROR_BAD_PARAMETERS as teed's log may show it: by name, in hex or in decimal.
fn mentions_bad_parameters(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.contains("bad_parameters") || lower.contains("0xffff0006") || line.contains("4294901766")
}

/// The guest's RAM file: on tmpfs when there is one (the guest writes it all the time).
fn ram_file_for(run_dir: &Path) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("teesys-qemu-{}.ram", std::process::id()))
    } else {
        run_dir.join("ram")
    }
}

/// A bare program name is looked up on PATH, so a missing QEMU is named clearly.
fn resolve(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

/// The last lines of every log of the run, for a failure.
fn print_tails(run_dir: &Path) {
    for name in ["console.log", "secure-world.log", "qemu.log"] {
        let path = run_dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        eprintln!("---- last {} lines of {} ----", tail.len(), path.display());
        for line in tail {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_is_recognised_in_each_spelling() {
        assert!(mentions_bad_parameters("ret: BAD_PARAMETERS"));
        assert!(mentions_bad_parameters("ret=0xFFFF0006"));
        assert!(mentions_bad_parameters("ret: 4294901766"));
        assert!(!mentions_bad_parameters("ret: 0xffff000c"));
    }

    #[test]
    fn the_seed_run_is_default_off() {
        let args = Args::parse_from([
            "teesys-qemu",
            "--kernel",
            "k",
            "--initrd",
            "i",
            "--secure-world",
            "s",
            "--run-dir",
            "r",
        ]);
        assert!(!args.seed_bugs);
        assert_eq!(args.kexecs, 3);
    }

    /// The bench reads `kexec_cycle_ms` from this file by name: the launcher must write it so.
    #[test]
    fn timings_are_written_where_and_as_the_bench_reads_them() {
        let dir = std::env::temp_dir().join(format!("teesys-qemu-timings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let timings = Timings {
            kexec_cycle_ms: vec![4100, 3900],
            ..Timings::default()
        };
        write_timings(&timings, &dir);
        let text = std::fs::read_to_string(dir.join(TIMINGS_FILE)).expect("timings written");
        let _ = std::fs::remove_dir_all(&dir);
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["kexec_cycle_ms"], serde_json::json!([4100, 3900]));
    }
}
