//! Command-line parsing, kept by hand so xtask builds with no more than one small dependency.

pub const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [--soak]   prerequisites, fmt, tidy, clippy, build, cross, tests, the QEMU scenario and
                  its seed-bugs run (--soak sets TEESYS_SOAK=1)
  tidy            repository rules only
  cross           release build of the root task and the servers for aarch64-unknown-linux-musl
  redox           type-check (check, clippy) the Redox daemons for x86_64- and aarch64-unknown-redox
  check-sel4      type-check teed's seL4 backend (needs SEL4_PREFIX and RUST_SEL4; says how)
  demo [ARGS...]  run the hosted demo (teectl demo ARGS...)
  bench [--quick] [--no-qemu]
                  release build, then every benchmark figure into BENCHMARKS.md, the
                  QEMU guest's kexec cycle from a `qemu --kexecs 10` run first
                  (--quick: tiny counts into target/bench-quick/, no QEMU run)
  qemu [--kexecs N] [--seed-bugs | --seed-only]
                  the service set under a real arm64 kernel in QEMU: real kexec, kdump, reset
                  (--seed-bugs also runs the Linux 5.13 build, which must fail on the 4th kexec)
  check-model     exhaustive lifecycle model check (stateright), both OP-TEE profiles
  sim-coverage [--seeds N]
                  which fault landed while what was in flight, seeds 0..N (1,000) of the
                  simulator under both OP-TEE profiles, into SIM_COVERAGE.md
  fuzz [TARGET] [--seconds N]  cargo-fuzz targets on nightly (all by default, 60 s each)";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Test {
        soak: bool,
    },
    Tidy,
    Cross,
    Redox,
    CheckSel4,
    Demo {
        args: Vec<String>,
    },
    Bench {
        quick: bool,
        /// Run `cargo xtask qemu --kexecs 10` first, for the QEMU guest's kexec figure.
        qemu: bool,
        /// Leave the bench's processes unpinned (by default they share CPU 0).
        all_cpus: bool,
    },
    Qemu(crate::qemu::QemuArgs),
    CheckModel,
    SimCoverage {
        seeds: u64,
    },
    Fuzz {
        target: Option<String>,
        seconds: u64,
    },
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((name, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    let no_extra_args = |command: Command| match rest {
        [] => Ok(command),
        [extra, ..] => Err(format!("unexpected argument `{extra}` for `{name}`")),
    };
    match name.as_str() {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "test" => {
            let mut soak = false;
            for arg in rest {
                match arg.as_str() {
                    "--soak" => soak = true,
                    other => return Err(format!("unknown option `{other}` for `test`")),
                }
            }
            Ok(Command::Test { soak })
        }
        "demo" => Ok(Command::Demo {
            args: rest.to_vec(),
        }),
        "tidy" => no_extra_args(Command::Tidy),
        "cross" => no_extra_args(Command::Cross),
        "redox" => no_extra_args(Command::Redox),
        "check-sel4" => no_extra_args(Command::CheckSel4),
        "bench" => {
            let (mut quick, mut qemu, mut all_cpus) = (false, true, false);
            for arg in rest {
                match arg.as_str() {
                    "--quick" => quick = true,
                    "--no-qemu" => qemu = false,
                    "--all-cpus" => all_cpus = true,
                    other => return Err(format!("unknown option `{other}` for `bench`")),
                }
            }
            // A quick run checks the bench code; the QEMU run is minutes, not a check.
            Ok(Command::Bench {
                quick,
                qemu: qemu && !quick,
                all_cpus,
            })
        }
        "qemu" => parse_qemu(rest).map(Command::Qemu),
        "check-model" => no_extra_args(Command::CheckModel),
        "sim-coverage" => {
            let mut seeds = 1_000;
            let mut words = rest.iter();
            while let Some(word) = words.next() {
                match word.as_str() {
                    "--seeds" => {
                        let value = words.next().ok_or("--seeds needs a number")?;
                        seeds = value
                            .parse()
                            .map_err(|_| format!("--seeds: `{value}` is not a number"))?;
                    }
                    other => return Err(format!("unknown option `{other}` for `sim-coverage`")),
                }
            }
            Ok(Command::SimCoverage { seeds })
        }
        "fuzz" => {
            let mut target = None;
            let mut seconds = 60;
            let mut words = rest.iter();
            while let Some(word) = words.next() {
                match word.as_str() {
                    "--seconds" => {
                        let value = words.next().ok_or("--seconds needs a number")?;
                        seconds = value
                            .parse()
                            .map_err(|_| format!("--seconds: `{value}` is not a number"))?;
                    }
                    other if target.is_none() && !other.starts_with('-') => {
                        target = Some(other.to_string())
                    }
                    other => return Err(format!("unknown argument `{other}` for `fuzz`")),
                }
            }
            Ok(Command::Fuzz { target, seconds })
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

fn parse_qemu(rest: &[String]) -> Result<crate::qemu::QemuArgs, String> {
    let mut args = crate::qemu::QemuArgs::default();
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--kexecs" => {
                let value = words.next().ok_or("`--kexecs` needs a number")?;
                args.kexecs = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("`--kexecs {value}`: not a number of at least 1"))?;
            }
            "--seed-bugs" => args.seed_bugs = true,
            "--seed-only" => args.seed_only = true,
            other => return Err(format!("unknown option `{other}` for `qemu`")),
        }
    }
    Ok(args)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Command, String> {
        let owned: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        parse(&owned)
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse_words(&[]).unwrap(), Command::Help);
        assert_eq!(
            parse_words(&["test"]).unwrap(),
            Command::Test { soak: false }
        );
        assert_eq!(
            parse_words(&["test", "--soak"]).unwrap(),
            Command::Test { soak: true }
        );
        assert_eq!(parse_words(&["tidy"]).unwrap(), Command::Tidy);
        assert_eq!(parse_words(&["cross"]).unwrap(), Command::Cross);
        assert_eq!(parse_words(&["redox"]).unwrap(), Command::Redox);
        assert_eq!(parse_words(&["check-sel4"]).unwrap(), Command::CheckSel4);
        assert_eq!(
            parse_words(&["bench"]).unwrap(),
            Command::Bench {
                quick: false,
                qemu: true,
                all_cpus: false
            }
        );
        assert_eq!(
            parse_words(&["bench", "--quick"]).unwrap(),
            Command::Bench {
                quick: true,
                qemu: false,
                all_cpus: false
            }
        );
        assert_eq!(
            parse_words(&["bench", "--no-qemu"]).unwrap(),
            Command::Bench {
                quick: false,
                qemu: false,
                all_cpus: false
            }
        );
        assert_eq!(parse_words(&["check-model"]).unwrap(), Command::CheckModel);
        assert_eq!(
            parse_words(&["sim-coverage"]).unwrap(),
            Command::SimCoverage { seeds: 1_000 }
        );
        assert_eq!(
            parse_words(&["sim-coverage", "--seeds", "50"]).unwrap(),
            Command::SimCoverage { seeds: 50 }
        );
        assert!(parse_words(&["sim-coverage", "--seeds"]).is_err());
        assert_eq!(
            parse_words(&["qemu"]).unwrap(),
            Command::Qemu(crate::qemu::QemuArgs::default())
        );
    }

    #[test]
    fn qemu_takes_its_kexec_count_and_the_seed_run() {
        assert_eq!(
            parse_words(&["qemu", "--kexecs", "20", "--seed-bugs"]).unwrap(),
            Command::Qemu(crate::qemu::QemuArgs {
                kexecs: 20,
                seed_bugs: true,
                seed_only: false,
            })
        );
    }

    #[test]
    fn demo_passes_its_arguments_through() {
        assert_eq!(
            parse_words(&["demo", "--kexec-cycles", "5"]).unwrap(),
            Command::Demo {
                args: vec!["--kexec-cycles".into(), "5".into()]
            }
        );
    }

    #[test]
    fn rejects_unknown_commands_and_options() {
        assert!(parse_words(&["build"])
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse_words(&["test", "--fast"])
            .unwrap_err()
            .contains("--fast"));
        assert!(parse_words(&["qemu", "now"]).unwrap_err().contains("now"));
        assert!(parse_words(&["qemu", "--kexecs", "0"]).is_err());
        assert!(parse_words(&["qemu", "--kexecs"]).is_err());
        assert!(parse_words(&["cross", "--debug"])
            .unwrap_err()
            .contains("--debug"));
    }
}
