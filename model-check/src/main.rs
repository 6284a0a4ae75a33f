//! `check-model [--depth N] [--threads N] [--profile 3.14|4.x]`: the exhaustive lifecycle check
//! (`cargo xtask check-model` runs it). Exits non-zero when a property breaks.

use std::process::ExitCode;

use secure_world::Profile;
use tee_sim::sim::SimConfig;
use teesys_model_check::{check, LifecycleModel};

/// The depth the issue asks for.
const DEFAULT_DEPTH: usize = 12;

fn parse() -> Result<(usize, usize, Profile), String> {
    let mut depth = DEFAULT_DEPTH;
    let mut threads = 1;
    let mut profile = Profile::Optee3_14;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--depth" => depth = value()?.parse().map_err(|e| format!("--depth: {e}"))?,
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--profile" => profile = value()?.parse().map_err(|e| format!("--profile: {e:?}"))?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((depth, threads, profile))
}

fn main() -> ExitCode {
    let (depth, threads, profile) = match parse() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("check-model: {message}");
            return ExitCode::from(2);
        }
    };
    let cfg = SimConfig::for_profile(0x5eed, profile);
    let report = check(LifecycleModel::with_config(cfg, depth), threads);
    println!(
        "check-model: profile {profile:?}, depth {depth}: {} unique states, {} states, max depth {}",
        report.unique_states, report.states, report.max_depth
    );
    if report.violations.is_empty() {
        println!("check-model: no violations");
        return ExitCode::SUCCESS;
    }
    for (name, path, violation) in &report.violations {
        println!("VIOLATED: {name}\n  path: {path:?}\n  found: {violation:?}");
    }
    ExitCode::FAILURE
}
