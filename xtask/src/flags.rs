//! Command-line parsing, kept by hand so xtask builds with no more than one small dependency.

pub const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [--soak]   prerequisites, fmt, tidy, clippy, build, cross, tests (--soak sets TEESYS_SOAK=1)
  tidy            repository rules only
  cross           release build of the root task and the servers for aarch64-unknown-linux-musl
  demo [ARGS...]  run the hosted demo (teectl demo ARGS...)
  bench [--quick] release build, then every benchmark figure into BENCHMARKS.md
                  (--quick: tiny counts into target/bench-quick/)
  qemu            not yet built";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Test { soak: bool },
    Tidy,
    Cross,
    Demo { args: Vec<String> },
    Bench { quick: bool },
    Qemu,
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
        "bench" => match rest {
            [] => Ok(Command::Bench { quick: false }),
            [flag] if flag == "--quick" => Ok(Command::Bench { quick: true }),
            [other, ..] => Err(format!("unknown option `{other}` for `bench`")),
        },
        "qemu" => no_extra_args(Command::Qemu),
        other => Err(format!("unknown command `{other}`")),
    }
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
        assert_eq!(
            parse_words(&["bench"]).unwrap(),
            Command::Bench { quick: false }
        );
        assert_eq!(
            parse_words(&["bench", "--quick"]).unwrap(),
            Command::Bench { quick: true }
        );
        assert_eq!(parse_words(&["qemu"]).unwrap(), Command::Qemu);
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
        assert!(parse_words(&["cross", "--debug"])
            .unwrap_err()
            .contains("--debug"));
    }
}
