//! teectl: the operator's tool for the hosted stack. Human output by default, `--json` for
//! scripts; every command talks to init (`init.ctl`) or to a consumer socket.

/// Prints one line to stdout; a closed stdout (`teectl status | head`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod args;
pub mod bnxt;
pub mod demo;
pub mod report;
pub mod show;
pub mod soak;
pub mod stack;
pub mod tpm;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tee_proto::bnxt::BnxtError;
use tee_proto::control::{ControlRequest, OpOutcome};
use tee_proto::WireError;

use args::{BnxtCommand, Cli, Command, ReportArgs, SoakCommand, TpmCommand};
use stack::Control;
use teesys_root::wire::CallError;
use teesys_root::StatePaths;
use tpm::{TpmConsumer, TpmOutcome};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("stack not running (no init.ctl in {}): run `teectl up`", .0.display())]
    NotRunning(PathBuf),
    #[error("stack already running in {}", .0.display())]
    AlreadyRunning(PathBuf),
    #[error("{daemon} failed: {detail}")]
    DaemonFailed { daemon: String, detail: String },
    #[error("init refused: {0}")]
    Refused(WireError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tpm: {0}")]
    Tpm(String),
    #[error("bnxtd: {0}")]
    Bnxt(BnxtError),
    #[error("{0}")]
    Usage(&'static str),
    #[error("{0}")]
    Failed(String),
}

/// Where output goes and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// One JSON document on one line.
    pub fn json_line<T: Serialize>(&self, value: &T) {
        match serde_json::to_string(value) {
            Ok(line) => say!("{line}"),
            Err(error) => eprintln!("teectl: cannot render JSON: {error}"),
        }
    }

    fn show<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            self.json_line(value);
        } else {
            say!("{}", human());
        }
    }
}

/// Runs one command; `Ok(false)` means it ran but found a failure (non-zero exit).
pub fn run(cli: Cli) -> Result<bool, CliError> {
    let paths = StatePaths::new(&cli.state_dir);
    let output = Output { json: cli.json };
    match cli.command {
        Command::Up(up) => {
            let (_daemons, status) = stack::up(
                &paths,
                up.ram_size,
                up.swtpm,
                Duration::from_secs(up.timeout_s),
            )?;
            // The daemons live on detached; this process does not wait for them.
            output.show(&status, || show::status(&status));
            Ok(true)
        }
        Command::Down => {
            let down = stack::down(&paths)?;
            match &down.report {
                Some(report) => output.show(report, || show::report(report)),
                None => output.show(&(), || "init was not running; secure world stopped".into()),
            }
            Ok(true)
        }
        Command::Status => {
            let status = Control::connect(&paths)?.status()?;
            output.show(&status, || show::status(&status));
            Ok(true)
        }
        Command::Kexec { cycles } => {
            let mut control = Control::connect(&paths)?;
            let mut all_done = true;
            for cycle in 1..=cycles {
                let report = control.op(ControlRequest::Kexec)?;
                all_done &= report.outcome == OpOutcome::Completed;
                // One report for a single kexec, one progress line per cycle for many.
                output.show(&report, || {
                    if cycles == 1 {
                        show::report(&report)
                    } else {
                        show::progress(&format!("kexec {cycle}/{cycles}"), &report)
                    }
                });
            }
            Ok(all_done)
        }
        Command::Crash { hard } => operation(&paths, output, ControlRequest::Crash { hard }),
        Command::Reboot => operation(&paths, output, ControlRequest::Reboot),
        Command::Restart { server } => {
            operation(&paths, output, ControlRequest::Restart(server.into()))
        }
        Command::Kill { server } => operation(&paths, output, ControlRequest::Kill(server.into())),
        Command::Tpm(command) => tpm_command(&paths, output, command),
        Command::Bnxt(command) => bnxt_command(&paths, output, command),
        Command::Soak(command) => {
            let mut control = Control::connect(&paths)?;
            let summary = match command {
                SoakCommand::Kexec { cycles } => soak::soak_kexec(&mut control, cycles, output)?,
                SoakCommand::Chaos {
                    seconds,
                    seed,
                    no_consumers,
                } => soak::soak_chaos(&mut control, &paths, seconds, seed, !no_consumers, output)?,
            };
            output.show(&summary, || soak::report::human(&summary));
            Ok(summary.passed())
        }
        Command::Demo(args) => demo::demo(&args, output),
        Command::Report(args) => lifecycle_report(&paths, output, &args),
    }
}

/// `teectl report`: the simulated panels, and kexec cycles of the stack when one runs.
fn lifecycle_report(
    paths: &StatePaths,
    output: Output,
    args: &ReportArgs,
) -> Result<bool, CliError> {
    let mut data = report::simulate().map_err(|e| CliError::Failed(e.to_string()))?;
    if let Ok(mut control) = Control::connect(paths) {
        data.kexec_ms = report::time_kexecs(&mut control, args.kexecs)?;
    }
    report::write(&args.out, &data).map_err(|e| CliError::Failed(e.to_string()))?;
    output.show(&data, || {
        let failed = |s: &report::Series| {
            s.failed_at
                .map_or("never fails".to_string(), |k| format!("fails at kexec {k}"))
        };
        format!(
            "{}: {}; {}: {}; {}: {}; {} hosted kexec cycles timed\nwrote {}",
            data.linux_5_13.label,
            failed(&data.linux_5_13),
            data.teesys.label,
            failed(&data.teesys),
            data.mainline_4x.label,
            failed(&data.mainline_4x),
            data.kexec_ms.len(),
            args.out.display()
        )
    });
    Ok(true)
}

fn operation(
    paths: &StatePaths,
    output: Output,
    request: ControlRequest,
) -> Result<bool, CliError> {
    let report = Control::connect(paths)?.op(request)?;
    output.show(&report, || show::report(&report));
    Ok(report.outcome == OpOutcome::Completed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct TpmJson {
    rc: Option<u32>,
    error: Option<String>,
    hex: Option<String>,
}

fn tpm_command(paths: &StatePaths, output: Output, command: TpmCommand) -> Result<bool, CliError> {
    let bytes = match command {
        TpmCommand::Startup => tpm::startup_clear(),
        TpmCommand::Getrandom { bytes } => tpm::get_random(bytes),
        TpmCommand::Pcrread { index } => tpm::pcr_read_sha256(index),
    };
    let outcome = TpmConsumer::connect(paths)?.send(&bytes)?;
    let (json, human, ok) = match &outcome {
        TpmOutcome::Failed(error) => (
            TpmJson {
                rc: None,
                error: Some(error.to_string()),
                hex: None,
            },
            format!("tpmd: {error}"),
            false,
        ),
        TpmOutcome::Answer(answer) => {
            let data = match command {
                TpmCommand::Startup => None,
                TpmCommand::Getrandom { .. } => tpm::random_bytes(answer),
                TpmCommand::Pcrread { .. } => tpm::first_digest(answer),
            };
            // For Startup, TPM_RC_INITIALIZE means "already started": the fTPM TA starts the
            // TPM itself once per secure-world lifetime (fTPM.c TA_CreateEntryPoint), and
            // tpm2_startup and Linux's tpm2_auto_startup accept it too.
            let already_started =
                matches!(command, TpmCommand::Startup) && answer.rc == tpm::TPM_RC_INITIALIZE;
            let human = match (&data, answer.rc) {
                (Some(data), 0) => hex(data),
                (None, 0) => "TPM_RC_SUCCESS".into(),
                _ if already_started => "TPM_RC_INITIALIZE: already started".into(),
                (_, rc) => format!("TPM error rc {rc:#x}"),
            };
            (
                TpmJson {
                    rc: Some(answer.rc),
                    error: None,
                    hex: data.as_deref().map(hex),
                },
                human,
                answer.rc == 0 || already_started,
            )
        }
    };
    output.show(&json, || human);
    Ok(ok)
}

#[derive(Serialize)]
struct CoredumpJson {
    file: PathBuf,
    bytes: usize,
    checksum: String,
    expected: Option<String>,
    matches: bool,
    took_ms: u128,
}

fn bnxt_command(
    paths: &StatePaths,
    output: Output,
    command: BnxtCommand,
) -> Result<bool, CliError> {
    let mut driver = bnxt::BnxtDriver::connect(paths)?;
    match command {
        BnxtCommand::Load => {
            driver.load()?;
            output.show(&"loaded", || "firmware loaded".into());
            Ok(true)
        }
        BnxtCommand::Coredump { file } => {
            let dump = driver.coredump()?;
            std::fs::write(&file, &dump.bytes).map_err(|source| CliError::Io {
                what: format!("write {}", file.display()),
                source,
            })?;
            let json = CoredumpJson {
                file: file.clone(),
                bytes: dump.bytes.len(),
                checksum: format!("{:#018x}", dump.checksum),
                expected: dump.expected.map(|sum| format!("{sum:#018x}")),
                matches: dump.matches(),
                took_ms: dump.took.as_millis(),
            };
            output.show(&json, || {
                format!(
                    "{} bytes to {} in {} ms, fnv1a {} ({})",
                    json.bytes,
                    file.display(),
                    json.took_ms,
                    json.checksum,
                    if json.matches {
                        "matches the image"
                    } else {
                        "DIFFERS from the image"
                    }
                )
            });
            Ok(dump.matches())
        }
    }
}
