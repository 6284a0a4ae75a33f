//! The guest root task's shell: the supervisor's effects carried out with real processes and a
//! real kernel. One thread around `poll(2)` (consumer calls run on threads of their own).

mod consumer;
mod port;
pub mod sys;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tee_proto::grants::{ClientGrants, TeedGrants};
use tee_proto::lifecycle::{InitRequest, ServerEvent, ServerKind};
use tee_proto::{Frame, Generation, Header};
use tee_rt::endpoint::Endpoint;
use teesys_guest::boot::{self, GuestBoot};
use teesys_guest::ctl::{self, GuestEvent, HostCommand, ServerLine};
use teesys_guest::layout;
use teesys_init::shutdown::ShutdownResult;
use teesys_init::{
    server_index, Effect, StartOutcome, Supervisor, Transition, INIT_GENERATION, SERVERS,
};
use teesys_root::procs::{Received, ServerProcess};
use teesys_root::{bind_fresh, StatePaths};

use self::consumer::{Call, Consumers};
use self::port::CtlPort;

/// Where the servers are in the initramfs.
const BIN_DIR: &str = "/bin";
/// Sockets of this boot (a tmpfs).
const STATE_DIR: &str = "/run/teesys";
/// Look for exits at least this often.
const REAP_MS: u64 = 100;
/// How long the launcher gets to take its figures at a transition.
const GO_BOUND: Duration = Duration::from_secs(5);
/// How long a transition waits for the kernel it needs to finish loading.
const LOAD_BOUND: Duration = Duration::from_secs(120);
/// Request ids of init's own frames (endpoint hand-outs), apart from the supervisor's.
const HOST_REQUEST_IDS: u32 = 0x8000_0000;

/// Why the guest's init could not run.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("setting up the guest: {0}")]
    Setup(#[source] io::Error),
    #[error("the carve-out: {0}")]
    Layout(#[from] layout::LayoutError),
    #[error("the control port: {0}")]
    Port(#[source] io::Error),
    #[error("listening on {what}: {source}")]
    Listen {
        what: &'static str,
        #[source]
        source: teesys_root::CapsError,
    },
    #[error("poll failed: {0}")]
    Poll(#[source] io::Error),
}

/// A kexec load under way or finished.
enum LoadState {
    NotStarted,
    Running { child: Child, started: Instant },
    Finished(Result<(), String>),
}

/// What follows the shutdown IPC of a `Transition::Reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterReset {
    Reboot,
    PowerOff,
}

pub struct Guest {
    sup: Supervisor,
    boot: GuestBoot,
    cmdline: String,
    started: Instant,
    port: CtlPort,
    consumers: Consumers,
    procs: [Option<ServerProcess>; 3],
    tpm: UnixListener,
    bnxt: UnixListener,
    /// The normal kernel for the next kexec, then (normal boots only) the crash kernel.
    loads: [LoadState; 2],
    teed_settled_uptime: Option<u64>,
    /// The Image for kexec is in /tmp (copied from the staging region once per boot).
    kernel_staged: bool,
    after_reset: AfterReset,
    /// The next request id for init's own frames (endpoint hand-outs).
    next_host_request_id: u32,
}

impl Guest {
    /// Mounts, reads what this boot is, opens the control port and says hello.
    pub fn new() -> Result<Guest, GuestError> {
        sys::mount_basics().map_err(GuestError::Setup)?;
        let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(GuestError::Setup)?;
        let cmdline = cmdline.trim().to_owned();
        let boot = boot::parse(&cmdline, sys::is_crash_kernel());
        tracing::info!(?boot, %cmdline, "guest init up");
        let config = layout::init_config(layout::carveout(&cmdline)?)?;
        let mut port = CtlPort::open(Duration::from_secs(10)).map_err(GuestError::Port)?;
        port.send(&GuestEvent::Hello {
            boot,
            uptime_ms: sys::uptime_ms(),
        });
        let paths = StatePaths::new(STATE_DIR);
        std::fs::create_dir_all(STATE_DIR).map_err(GuestError::Setup)?;
        let listen = |what, path: PathBuf| {
            bind_fresh(&path).map_err(|source| GuestError::Listen { what, source })
        };
        let tpm = listen("tpm.sock", paths.tpm_sock())?;
        let bnxt = listen("bnxt.sock", paths.bnxt_sock())?;
        Ok(Guest {
            sup: Supervisor::new(config),
            boot,
            cmdline,
            started: Instant::now(),
            port,
            consumers: Consumers::new(paths).map_err(GuestError::Setup)?,
            procs: Default::default(),
            tpm,
            bnxt,
            loads: [LoadState::NotStarted, LoadState::NotStarted],
            teed_settled_uptime: None,
            kernel_staged: false,
            after_reset: AfterReset::Reboot,
            next_host_request_id: HOST_REQUEST_IDS,
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Boots the servers and serves until the machine goes away (never returns on success).
    pub fn run(mut self) -> Result<(), GuestError> {
        let now = self.now();
        self.sup.boot(now, self.boot.boot_kind());
        loop {
            self.drain_effects();
            self.poll_loads();
            let timeout = self
                .sup
                .poll_timeout()
                .map_or(REAP_MS, |at| at.saturating_sub(self.now()).min(REAP_MS));
            self.wait(timeout)?;
            self.reap_exited();
            let now = self.now();
            if self.sup.poll_timeout().is_some_and(|at| at <= now) {
                self.sup.handle_timeout(now);
            }
        }
    }

    fn wait(&mut self, timeout_ms: u64) -> Result<(), GuestError> {
        let mut lifecycle = Vec::new();
        let mut fds = vec![
            PollFd::new(self.port.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.consumers.wake_fd(), PollFlags::POLLIN),
        ];
        for (index, process) in self.procs.iter().enumerate() {
            if let Some(process) = process.as_ref().filter(|p| !p.hung_up) {
                lifecycle.push(index);
                fds.push(PollFd::new(process.lifecycle_fd(), PollFlags::POLLIN));
            }
        }
        let timeout = PollTimeout::from(u16::try_from(timeout_ms).unwrap_or(u16::MAX));
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(GuestError::Poll(errno.into())),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
            .collect();
        drop(fds);
        for (slot, index) in lifecycle.into_iter().enumerate() {
            if ready[2 + slot] {
                self.receive_lifecycle(index);
            }
        }
        if ready[1] {
            for reply in self.consumers.finished() {
                self.port.send(&reply);
            }
        }
        if ready[0] {
            for command in self.port.receive() {
                self.command(command);
            }
        }
        Ok(())
    }

    fn command(&mut self, command: HostCommand) {
        tracing::info!(?command, "command");
        let now = self.now();
        match command {
            HostCommand::Tpm { id, hex } => self.consumers.start(id, Call::Tpm(hex)),
            HostCommand::BnxtLoad { id } => self.consumers.start(id, Call::BnxtLoad),
            HostCommand::Coredump { id } => self.consumers.start(id, Call::Coredump),
            HostCommand::Kexec { .. } => self.sup.request_kexec(now),
            HostCommand::Reboot { .. } => {
                self.after_reset = AfterReset::Reboot;
                self.sup.request_reboot(now);
            }
            HostCommand::PowerOff { .. } => {
                self.after_reset = AfterReset::PowerOff;
                self.sup.request_reboot(now);
            }
            HostCommand::Crash { id } => self.crash(id),
            HostCommand::Go => tracing::warn!("Go with no transition under way"),
        }
    }

    /// A hard crash: no shutdown IPC, a real panic into the crash kernel loaded at boot.
    fn crash(&mut self, id: u32) {
        let loaded = self.await_load(true).and_then(|()| {
            sys::crash_kernel_loaded()
                .then_some(())
                .ok_or_else(|| "kexec_crash_loaded is 0".to_string())
        });
        if let Err(detail) = loaded {
            self.port.send(&GuestEvent::Reply {
                id,
                ok: false,
                detail: format!("no crash kernel: {detail}"),
                hex: None,
            });
            return;
        }
        self.announce("crash", false, "panic: no shutdown IPC".into());
        let error = sys::panic_now();
        tracing::error!(%error, "the panic did not happen");
    }

    /// Tells the launcher what comes and waits (bounded) for it to take its figures.
    fn announce(&mut self, kind: &str, clean: bool, detail: String) {
        self.port.send(&GuestEvent::Transition {
            kind: kind.into(),
            clean,
            detail,
            uptime_ms: sys::uptime_ms(),
        });
        if !self.port.await_go(GO_BOUND) {
            tracing::warn!(kind, "no Go from the launcher in time; going ahead");
        }
    }

    fn drain_effects(&mut self) {
        while let Some(effect) = self.sup.poll() {
            let now = self.now();
            match effect {
                Effect::Start { server, generation } => self.start(now, server, generation),
                Effect::Stop { server } => self.stop(server),
                Effect::Send { server, frame } => self.send_lifecycle(server, frame),
                Effect::Transition(transition) => self.transition(transition),
                Effect::Booted(summary) => {
                    let servers = summary
                        .servers
                        .iter()
                        .map(|s| {
                            let pid = self.live(s.server).map(ServerProcess::pid);
                            let (uid, dev_mem) = pid.map_or((None, Vec::new()), what_it_holds);
                            ServerLine {
                                server: format!("{:?}", s.server).to_lowercase(),
                                generation: s.generation,
                                outcome: outcome_text(s.outcome),
                                uid,
                                dev_mem,
                            }
                        })
                        .collect();
                    let uptime = sys::uptime_ms();
                    self.port.send(&GuestEvent::Booted {
                        boot: self.boot,
                        servers,
                        teed_settled_uptime_ms: self.teed_settled_uptime.unwrap_or(uptime),
                        uptime_ms: uptime,
                    });
                    self.start_loads();
                }
                Effect::Notice(notice) => {
                    if matches!(
                        notice,
                        teesys_init::Notice::Declined {
                            server: ServerKind::Teed,
                            ..
                        }
                    ) {
                        self.teed_settled_uptime.get_or_insert(sys::uptime_ms());
                    }
                    tracing::info!(?notice, "notice");
                }
            }
        }
    }

    fn start(&mut self, now: u64, server: ServerKind, generation: Generation) {
        let index = server_index(server);
        if let Some(old) = self.procs[index].take() {
            old.reap();
        }
        let program = PathBuf::from(BIN_DIR).join(binary(server));
        match ServerProcess::spawn(server, generation, &program) {
            Ok(process) => self.procs[index] = Some(process),
            Err(error) => {
                tracing::error!(?server, %error, "spawn failed");
                self.sup.incarnation_exited(now, server, generation);
            }
        }
    }

    fn stop(&mut self, server: ServerKind) {
        if let Some(process) = self.procs[server_index(server)].take() {
            process.reap();
        }
    }

    fn send_lifecycle(&mut self, server: ServerKind, frame: Frame<InitRequest>) {
        let Some(process) = &self.procs[server_index(server)] else {
            return;
        };
        if frame.header.to_generation != process.generation {
            return;
        }
        match (server, frame.body) {
            (ServerKind::Teed, InitRequest::Hello { .. }) => self.hello_teed(&frame),
            (_, InitRequest::Hello { .. }) => self.hello_client(server, &frame),
            _ => process.send_or_log(&frame, &[]),
        }
    }

    /// teed's grants: the SMC port's node and /dev/mem, both `O_PATH` (teed opens them).
    fn hello_teed(&mut self, frame: &Frame<InitRequest>) {
        let grants = tee_rt::virtio_port::find_port(tee_rt::virtio_port::SMC_PORT_NAME)
            .and_then(|port| Ok((o_path(&port)?, o_path(Path::new("/dev/mem"))?)));
        let (conduit, ram) = match grants {
            Ok(pair) => pair,
            Err(error) => {
                // Without the conduit teed cannot probe: its start fails and the policy decides.
                tracing::error!(%error, "no SMC port for teed");
                return;
            }
        };
        if let Some(process) = &self.procs[server_index(ServerKind::Teed)] {
            let grants = TeedGrants {
                conduit: conduit.as_fd(),
                ram: ram.as_fd(),
                windows: None,
            };
            process.send_hello(frame, grants);
        }
        for client in [ServerKind::Tpmd, ServerKind::Bnxtd] {
            self.relink_client(client);
        }
    }

    /// A client's grants: its end of a teed endpoint, /dev/mem (`O_PATH`; it maps only its
    /// window, whose place its Hello names) and its consumer listener.
    fn hello_client(&mut self, client: ServerKind, frame: &Frame<InitRequest>) {
        let (teed_end, client_end) = match Endpoint::pair() {
            Ok(pair) => pair,
            Err(error) => {
                tracing::error!(?client, %error, "no endpoint pair");
                return;
            }
        };
        let window = match o_path(Path::new("/dev/mem")) {
            Ok(fd) => fd,
            Err(error) => {
                tracing::error!(%error, "no /dev/mem for a client");
                return;
            }
        };
        let listener = match client {
            ServerKind::Tpmd => self.tpm.as_fd(),
            _ => self.bnxt.as_fd(),
        };
        let Some(process) = &self.procs[server_index(client)] else {
            return;
        };
        let generation = process.generation;
        let grants = ClientGrants {
            teed: client_end.as_fd(),
            window: window.as_fd(),
            consumers: listener,
            swtpm: None,
        };
        process.send_hello(frame, grants);
        drop(client_end);
        self.give_teed_endpoint(client, generation, teed_end);
    }

    fn relink_client(&mut self, client: ServerKind) {
        let Some(process) = self.live(client) else {
            return;
        };
        let generation = process.generation;
        let Some(teed_generation) = self.live(ServerKind::Teed).map(|t| t.generation) else {
            return;
        };
        let Ok((teed_end, client_end)) = Endpoint::pair() else {
            return;
        };
        let header = Header::new(INIT_GENERATION, generation, self.host_request_id());
        if let Some(process) = self.live(client) {
            let frame = Frame {
                header,
                body: InitRequest::TeedEndpoint { teed_generation },
            };
            process.send_or_log(&frame, &[client_end.as_fd()]);
        }
        drop(client_end);
        self.give_teed_endpoint(client, generation, teed_end);
    }

    fn give_teed_endpoint(&mut self, client: ServerKind, generation: Generation, end: Endpoint) {
        let Some(teed_generation) = self.live(ServerKind::Teed).map(|t| t.generation) else {
            return;
        };
        let header = Header::new(INIT_GENERATION, teed_generation, self.host_request_id());
        if let Some(teed) = self.live(ServerKind::Teed) {
            let frame = Frame {
                header,
                body: InitRequest::ClientEndpoint { client, generation },
            };
            teed.send_or_log(&frame, &[end.as_fd()]);
        }
    }

    fn live(&self, kind: ServerKind) -> Option<&ServerProcess> {
        self.procs[server_index(kind)]
            .as_ref()
            .filter(|process| !process.hung_up)
    }

    fn host_request_id(&mut self) -> u32 {
        let id = self.next_host_request_id;
        self.next_host_request_id = self.next_host_request_id.wrapping_add(1) | HOST_REQUEST_IDS;
        id
    }

    fn receive_lifecycle(&mut self, index: usize) {
        loop {
            let Some(process) = self.procs[index].as_mut() else {
                return;
            };
            let kind = process.kind;
            match process.receive() {
                Received::Frame(frame) => {
                    if kind == ServerKind::Teed
                        && matches!(
                            frame.body,
                            ServerEvent::Ready { .. } | ServerEvent::Declined { .. }
                        )
                    {
                        self.teed_settled_uptime.get_or_insert(sys::uptime_ms());
                    }
                    let now = self.now();
                    self.sup.handle_event(now, kind, frame);
                }
                Received::HungUp | Received::Nothing => return,
            }
        }
    }

    fn reap_exited(&mut self) {
        for index in 0..self.procs.len() {
            let Some(process) = self.procs[index].as_mut() else {
                continue;
            };
            let Ok(Some(status)) = process.try_reap() else {
                continue;
            };
            let (kind, generation) = (process.kind, process.generation);
            tracing::warn!(?kind, generation, %status, "server exited");
            self.procs[index] = None;
            let now = self.now();
            self.sup.incarnation_exited(now, kind, generation);
        }
    }

    /// The shutdown IPC is over: the servers go, the launcher takes its figures, the kernel
    /// goes the way asked.
    fn transition(&mut self, transition: Transition) {
        for kind in SERVERS {
            self.stop(kind);
        }
        let (clean, detail) = shutdown_summary(&self.sup);
        match transition {
            Transition::Kexec => {
                if let Err(detail) = self.await_load(false) {
                    tracing::error!(%detail, "no kernel to kexec into; powering off");
                    self.announce("poweroff", clean, format!("kexec impossible: {detail}"));
                    tracing::error!(error = %sys::power_off_now(), "power-off failed");
                    return;
                }
                // A crash-kernel load still running would make the reboot EBUSY
                // (kernel/kexec_core.c, kernel_kexec takes the kexec lock).
                if !self.boot.crash_flag() {
                    if let Err(detail) = self.await_load(true) {
                        tracing::warn!(%detail, "no crash kernel loaded for the next boot's predecessor");
                    }
                }
                self.announce("kexec", clean, detail);
                let error = sys::kexec_now();
                tracing::error!(%error, "kexec failed");
            }
            Transition::Reset => {
                let (kind, go) = match self.after_reset {
                    AfterReset::Reboot => ("reboot", sys::reset_now as fn() -> io::Error),
                    AfterReset::PowerOff => ("poweroff", sys::power_off_now as fn() -> io::Error),
                };
                self.announce(kind, clean, detail);
                let error = go();
                tracing::error!(%error, kind, "reboot call failed");
            }
            Transition::EnterCrashKernel => {
                // The guest's crash is a real panic (Guest::crash), never this path.
                self.announce("crash", clean, detail);
                let error = sys::panic_now();
                tracing::error!(%error, "the panic did not happen");
            }
        }
    }

    /// After the boot settled: load the kernel for the next kexec, then (normal boots) the
    /// crash kernel, in the background.
    fn start_loads(&mut self) {
        if matches!(self.loads[0], LoadState::NotStarted) {
            self.loads[0] = self.begin_load(false);
        }
    }

    fn begin_load(&mut self, crash: bool) -> LoadState {
        if !self.kernel_staged {
            let staged = layout::staged_image(&self.cmdline)
                .map_err(|e| e.to_string())
                .and_then(|image| {
                    let started = Instant::now();
                    sys::stage_kernel(image).map_err(|e| format!("staging the Image: {e}"))?;
                    tracing::info!(took_ms = ms(started.elapsed()), "kernel Image staged");
                    Ok(())
                });
            if let Err(error) = staged {
                return self.load_done(crash, Err(error), 0);
            }
            self.kernel_staged = true;
        }
        let cmdline = if crash {
            boot::next_crash(&self.cmdline, self.boot)
        } else {
            boot::next_normal(&self.cmdline, self.boot)
        };
        let cmdline = match cmdline {
            Ok(cmdline) => cmdline,
            Err(error) => return self.load_done(crash, Err(error.to_string()), 0),
        };
        let started = Instant::now();
        match sys::start_load(crash, &cmdline) {
            Ok(sys::Load::Tools(child)) => LoadState::Running { child, started },
            Ok(sys::Load::Done(result)) => {
                let took = ms(started.elapsed());
                self.load_done(crash, result.map_err(|e| e.to_string()), took)
            }
            Err(error) => self.load_done(crash, Err(format!("kexec-tools: {error}")), 0),
        }
    }

    fn load_done(&mut self, crash: bool, result: Result<(), String>, took_ms: u64) -> LoadState {
        tracing::info!(crash, ?result, took_ms, "kexec load finished");
        self.port.send(&GuestEvent::Loaded {
            crash,
            ok: result.is_ok(),
            took_ms,
            detail: result.clone().err().unwrap_or_default(),
        });
        LoadState::Finished(result)
    }

    /// Notices loads that finished; starts the crash kernel's once the kexec one is done.
    fn poll_loads(&mut self) {
        for index in 0..self.loads.len() {
            let LoadState::Running { child, started } = &mut self.loads[index] else {
                continue;
            };
            let took = ms(started.elapsed());
            let result = match child.try_wait() {
                Ok(None) => continue,
                Ok(Some(status)) if status.success() => Ok(()),
                Ok(Some(status)) => Err(format!("kexec exited with {status}")),
                Err(error) => Err(format!("kexec wait: {error}")),
            };
            let crash = index == 1;
            self.loads[index] = self.load_done(crash, result, took);
        }
        let normal_boot = !self.boot.crash_flag();
        if normal_boot
            && matches!(self.loads[0], LoadState::Finished(_))
            && matches!(self.loads[1], LoadState::NotStarted)
        {
            self.loads[1] = self.begin_load(true);
        }
    }

    /// Waits (bounded) for the normal (`crash` false) or crash kernel's load to finish.
    fn await_load(&mut self, crash: bool) -> Result<(), String> {
        let index = usize::from(crash);
        let give_up = Instant::now() + LOAD_BOUND;
        loop {
            if crash && matches!(self.loads[1], LoadState::NotStarted) && self.boot.crash_flag() {
                return Err("the crash kernel loads no crash kernel".into());
            }
            if matches!(self.loads[0], LoadState::NotStarted) {
                self.loads[0] = self.begin_load(false);
            }
            self.poll_loads();
            if let LoadState::Finished(result) = &self.loads[index] {
                return result.clone();
            }
            if Instant::now() >= give_up {
                return Err("load still running past its bound".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn binary(kind: ServerKind) -> &'static str {
    teesys_root::SERVER_BINARIES[server_index(kind)]
}

fn o_path(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("{}: {errno}", path.display()),
        )
    })?;
    Ok(fd)
}

/// A server's uid and the physical memory it maps, as /proc shows them.
fn what_it_holds(pid: u32) -> (Option<u32>, Vec<(u64, u64)>) {
    let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok();
    let uid = read("status").as_deref().and_then(ctl::status_uid);
    let dev_mem = read("maps")
        .as_deref()
        .map(ctl::dev_mem_mappings)
        .unwrap_or_default();
    (uid, dev_mem)
}

fn outcome_text(outcome: StartOutcome) -> String {
    match outcome {
        StartOutcome::Ready => "ready".into(),
        StartOutcome::Declined(reason) => format!("declined ({reason:?})"),
        StartOutcome::GivenUp => "given up".into(),
    }
}

/// Whether every server acked the last shutdown (declined and absent ones hold nothing).
fn shutdown_summary(sup: &Supervisor) -> (bool, String) {
    let Some(outcome) = sup.snapshot().last_shutdown else {
        return (false, "no shutdown ran".into());
    };
    let mut clean = outcome.ipc;
    let mut parts = Vec::new();
    for line in &outcome.servers {
        let name = format!("{:?}", line.server).to_lowercase();
        let text = match line.result {
            ShutdownResult::Acked { report, .. } => {
                clean &= report.errors == 0;
                format!(
                    "{name} acked ({} unreg, {} sess, {} cache)",
                    report.unregistered, report.sessions_closed, report.cache_buffers_freed
                )
            }
            ShutdownResult::Skipped(reason) => format!("{name} skipped ({reason:?})"),
            other => {
                clean = false;
                format!("{name} {other:?}")
            }
        };
        parts.push(text);
    }
    (clean, parts.join(", "))
}

/// PID 1 must not exit (the kernel would panic): on a fatal error it says why and powers off.
pub fn fail(error: &dyn std::error::Error) -> ! {
    tracing::error!(error = %tee_rt::logging::error_chain(error), "guest init cannot go on");
    eprintln!(
        "teesys-guest-init: FATAL: {}",
        tee_rt::logging::error_chain(error)
    );
    loop {
        let error = sys::power_off_now();
        eprintln!("teesys-guest-init: power-off failed: {error}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Opens `/dev/mem` read-only once, to fail early and clearly when the kernel lacks it.
pub fn check_dev_mem() -> io::Result<()> {
    File::open("/dev/mem").map(drop)
}
