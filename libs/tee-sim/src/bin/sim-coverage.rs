//! `sim-coverage [--seeds N] [--out FILE] [--no-aim]`: runs seeds 0..N (1,000 by default) of
//! the simulator as covered runs under both OP-TEE profiles and writes the coverage report
//! (which fault landed while what was in flight, against every pair that can exist).
//! Exits non-zero when a run breaks an invariant or a possible pair is not reached.

use std::process::ExitCode;

use secure_world::Profile;
use tee_sim::coverage::{self, ProfileCoverage};

struct Args {
    seeds: u64,
    out: Option<String>,
    aim: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        seeds: coverage::DEFAULT_SEEDS,
        out: None,
        aim: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seeds" => {
                let n = it.next().ok_or("--seeds needs a number")?;
                args.seeds = n
                    .parse()
                    .map_err(|_| format!("--seeds {n}: not a number"))?;
            }
            "--out" => args.out = Some(it.next().ok_or("--out needs a file")?),
            "--no-aim" => args.aim = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(why) => {
            eprintln!("sim-coverage: {why}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let results: Vec<ProfileCoverage> = std::thread::scope(|s| {
        let runs: Vec<_> = Profile::ALL
            .into_iter()
            .map(|p| s.spawn(move || coverage::cover_seeds(p, 0..args.seeds, args.aim)))
            .collect();
        runs.into_iter().filter_map(|r| r.join().ok()).collect()
    });
    let report = coverage::markdown(&results, args.seeds, args.aim);
    match &args.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &report) {
                eprintln!("sim-coverage: writing {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
        None => print!("{report}"),
    }
    let mut ok = results.len() == Profile::ALL.len();
    for r in &results {
        let missing = r.coverage.missing(r.profile);
        eprintln!(
            "OP-TEE {}: {}/{} pairs reached over {} seeds, {} failed runs ({:.1} s total)",
            r.profile,
            r.coverage.reached(r.profile),
            coverage::possible_pairs(r.profile).len(),
            args.seeds,
            r.failures.len(),
            started.elapsed().as_secs_f64()
        );
        for (f, p) in &missing {
            eprintln!("  not reached: {} during {}", f.name(), p.name());
        }
        for failure in r.failures.iter().take(5) {
            eprintln!("  failed: {failure}");
        }
        ok &= missing.is_empty() && r.failures.is_empty();
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
