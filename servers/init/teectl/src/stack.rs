//! Starting and stopping the stack's daemons, and talking to init.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tee_proto::control::{ControlRequest, ControlResponse, OpReport, StackPhase, StackStatus};
use tee_proto::lifecycle::ServerKind;

use crate::CliError;
use tee_rt::endpoint::Endpoint;
use tee_rt::spawn::{spawn_with_endpoint, SECURE_CONTROL_FD_ENV};
use teesys_root::wire::{CallError, FramedStream};
use teesys_root::{op_deadline_ms, StatePaths};

/// How long a status request may take (servers get half a second to answer init).
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How often readiness is looked at while waiting.
const POLL_STEP: Duration = Duration::from_millis(20);

pub const SECURE_WORLD: &str = "secure-world";
pub const INIT: &str = "teesys-init";
/// init's name in the state directory (pid file, log).
pub const INIT_DAEMON: &str = "init";

/// A connection to init's control socket.
pub struct Control {
    stream: FramedStream,
}

impl Control {
    /// Connects, or explains that the stack is not running.
    pub fn connect(paths: &StatePaths) -> Result<Self, CliError> {
        let path = paths.init_ctl();
        match FramedStream::connect(&path, STATUS_TIMEOUT) {
            Ok(stream) => Ok(Control { stream }),
            Err(CallError::Connect { .. }) => Err(CliError::NotRunning(paths.dir().to_path_buf())),
            Err(error) => Err(error.into()),
        }
    }

    pub fn status(&mut self) -> Result<StackStatus, CliError> {
        self.stream.set_timeout(STATUS_TIMEOUT)?;
        match self.stream.call(ControlRequest::Status)? {
            ControlResponse::Status(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// Runs an operation and waits for its report.
    pub fn op(&mut self, request: ControlRequest) -> Result<OpReport, CliError> {
        let op = match request {
            ControlRequest::Status => return Err(CliError::Usage("status is not an operation")),
            ControlRequest::Kexec => tee_proto::control::OpKind::Kexec,
            ControlRequest::Reboot => tee_proto::control::OpKind::Reboot,
            ControlRequest::Crash { hard } => tee_proto::control::OpKind::Crash { hard },
            ControlRequest::Restart(kind) => tee_proto::control::OpKind::Restart(kind),
            ControlRequest::Kill(kind) => tee_proto::control::OpKind::Kill(kind),
            ControlRequest::Down => tee_proto::control::OpKind::Down,
        };
        // init answers by its own deadline; allow for the status it gathers on top.
        let wait = Duration::from_millis(op_deadline_ms(op)) + Duration::from_secs(10);
        self.stream.set_timeout(wait)?;
        match self.stream.call(request)? {
            ControlResponse::Done(report) => Ok(report),
            ControlResponse::Error(error) => Err(CliError::Refused(error)),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(response: ControlResponse) -> CliError {
    CliError::Call(CallError::Unexpected(format!("{response:?}")))
}

/// Whether a process with this pid runs (a zombie does not).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The pid a daemon's pid file names.
pub fn read_pid(paths: &StatePaths, daemon: &str) -> Option<u32> {
    std::fs::read_to_string(paths.pid_file(daemon))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Waits up to `limit` for `pid` to be gone.
fn wait_gone(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !is_running(pid) {
            return true;
        }
        sleep(POLL_STEP);
    }
    !is_running(pid)
}

/// Stops a daemon by its pid file: SIGTERM, then SIGKILL if it lingers.
fn stop_daemon(paths: &StatePaths, daemon: &str, grace: Duration) -> Option<u32> {
    let pid = read_pid(paths, daemon)?;
    if is_running(pid) {
        let target = Pid::from_raw(i32::try_from(pid).ok()?);
        let _ = kill(target, Signal::SIGTERM);
        if !wait_gone(pid, grace) {
            let _ = kill(target, Signal::SIGKILL);
            wait_gone(pid, Duration::from_secs(2));
        }
    }
    let _ = std::fs::remove_file(paths.pid_file(daemon));
    Some(pid)
}

/// The daemons `up` started, for callers that stay their parent (the demo reaps them).
pub struct Daemons {
    pub secure_world: Child,
    pub init: Child,
}

fn log_file(paths: &StatePaths, daemon: &str) -> Result<File, CliError> {
    let path = paths.log(daemon);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| CliError::Io {
            what: format!("open log {}", path.display()),
            source,
        })
}

/// Starts `program` detached from teectl's terminal, logging into the state directory.
fn spawn_daemon(
    paths: &StatePaths,
    daemon: &str,
    program: &Path,
    args: &[String],
    secure_control: Endpoint,
) -> Result<Child, CliError> {
    use std::os::unix::process::CommandExt;
    let log = log_file(paths, daemon)?;
    let log_err = log.try_clone().map_err(|source| CliError::Io {
        what: "duplicate log handle".into(),
        source,
    })?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a ^C in teectl's terminal does not reach the stack.
        .process_group(0);
    let child =
        spawn_with_endpoint(command, SECURE_CONTROL_FD_ENV, secure_control).map_err(|source| {
            CliError::Io {
                what: format!("start {}", program.display()),
                source,
            }
        })?;
    std::fs::write(paths.pid_file(daemon), format!("{}\n", child.id())).map_err(|source| {
        CliError::Io {
            what: "write pid file".into(),
            source,
        }
    })?;
    Ok(child)
}

/// The last lines of a daemon's log, for error messages.
fn log_tail(paths: &StatePaths, daemon: &str) -> String {
    let text = std::fs::read_to_string(paths.log(daemon)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Waits for `ready` while `child` lives.
fn wait_ready<T>(
    paths: &StatePaths,
    daemon: &str,
    child: &mut Child,
    limit: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Result<T, CliError> {
    let start = Instant::now();
    loop {
        if let Some(value) = ready() {
            return Ok(value);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::DaemonFailed {
                daemon: daemon.to_string(),
                detail: format!("exited ({status}):\n{}", log_tail(paths, daemon)),
            });
        }
        if start.elapsed() > limit {
            return Err(CliError::DaemonFailed {
                daemon: daemon.to_string(),
                detail: format!(
                    "not ready after {} s:\n{}",
                    limit.as_secs(),
                    log_tail(paths, daemon)
                ),
            });
        }
        sleep(POLL_STEP);
    }
}

/// Whether every server has settled for this boot.
pub fn settled(status: &StackStatus) -> bool {
    status.phase == StackPhase::Running
}

/// Starts the secure world and init in `paths` and waits until the first boot settled.
pub fn up(
    paths: &StatePaths,
    ram_size: u64,
    swtpm: bool,
    limit: Duration,
) -> Result<(Daemons, StackStatus), CliError> {
    if let Ok(mut control) = Control::connect(paths) {
        if control.status().is_ok() {
            return Err(CliError::AlreadyRunning(paths.dir().to_path_buf()));
        }
    }
    std::fs::create_dir_all(paths.dir()).map_err(|source| CliError::Io {
        what: format!("create {}", paths.dir().display()),
        source,
    })?;
    let binary = |name: &str| {
        tee_rt::spawn::sibling_binary(name).map_err(|source| CliError::Io {
            what: format!("find the `{name}` binary"),
            source,
        })
    };
    let path_arg = |path: PathBuf| path.display().to_string();
    // The secure world's control channel: one end to the secure world, the other to init, none
    // kept here. No socket in the state directory leads to the secure world.
    let (world_end, init_end) = Endpoint::pair().map_err(|source| CliError::Io {
        what: "create the secure world's control channel".into(),
        source,
    })?;
    let mut secure_args = vec![
        "--ram".to_string(),
        path_arg(paths.ram()),
        "--ram-size".into(),
        ram_size.to_string(),
    ];
    secure_args.extend(ftpm_state_args(paths));
    let mut secure_world = spawn_daemon(
        paths,
        SECURE_WORLD,
        &binary(SECURE_WORLD)?,
        &secure_args,
        world_end,
    )?;
    let mut init_args = vec![
        "--state-dir".to_string(),
        path_arg(paths.dir().to_path_buf()),
        "--ram-size".into(),
        ram_size.to_string(),
    ];
    if swtpm {
        init_args.push("--swtpm".into());
    }
    let mut init = match spawn_daemon(paths, INIT_DAEMON, &binary(INIT)?, &init_args, init_end) {
        Ok(init) => init,
        Err(error) => {
            let _ = secure_world.kill();
            return Err(error);
        }
    };
    let status = wait_ready(paths, INIT_DAEMON, &mut init, limit, || {
        Control::connect(paths)
            .and_then(|mut control| control.status())
            .ok()
            .filter(settled)
    })
    .and_then(|status| match secure_world.try_wait() {
        // init only settles with a secure world answering it; one that died since is news.
        Ok(Some(exit)) => Err(CliError::DaemonFailed {
            daemon: SECURE_WORLD.to_string(),
            detail: format!("exited ({exit}):\n{}", log_tail(paths, SECURE_WORLD)),
        }),
        _ => Ok(status),
    });
    match status {
        Ok(status) => Ok((Daemons { secure_world, init }, status)),
        Err(error) => {
            let _ = init.kill();
            let _ = secure_world.kill();
            Err(error)
        }
    }
}

/// The secure world keeps the fTPM's NV in the state directory, so TPM NV survives a restart
/// of the secure-world process as it survives a machine reset.
fn ftpm_state_args(paths: &StatePaths) -> Vec<String> {
    vec!["--ftpm-state".into(), paths.ftpm_nv().display().to_string()]
}

/// What `down` did.
#[derive(Debug)]
pub struct DownReport {
    /// init's report of the final shutdown IPC, when init was running.
    pub report: Option<OpReport>,
    pub init_pid: Option<u32>,
    pub secure_world_pid: Option<u32>,
}

/// Orderly shutdown IPC through init, then stops init and the secure world.
pub fn down(paths: &StatePaths) -> Result<DownReport, CliError> {
    let report = match Control::connect(paths) {
        Ok(mut control) => Some(control.op(ControlRequest::Down)?),
        Err(CliError::NotRunning(_)) => None,
        Err(error) => return Err(error),
    };
    let init_pid = stop_daemon(paths, INIT_DAEMON, Duration::from_secs(5));
    let secure_world_pid = stop_daemon(paths, SECURE_WORLD, Duration::from_secs(5));
    for path in [paths.init_ctl(), paths.tpm_sock(), paths.bnxt_sock()] {
        let _ = std::fs::remove_file(path);
    }
    if report.is_none() && init_pid.is_none() && secure_world_pid.is_none() {
        return Err(CliError::NotRunning(paths.dir().to_path_buf()));
    }
    Ok(DownReport {
        report,
        init_pid,
        secure_world_pid,
    })
}

/// The server named on a status line, for messages.
pub fn server_name(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Teed => "teed",
        ServerKind::Tpmd => "tpmd",
        ServerKind::Bnxtd => "bnxtd",
    }
}
