//! The host's state and how it carries out the supervisor's effects.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Instant;

use tee_proto::grants::{ClientGrants, TeedGrants, WindowGrants};
use tee_proto::lifecycle::{BootKind, InitRequest, ServerEvent, ServerKind};
use tee_proto::secure::SecureStats;
use tee_proto::{Frame, Generation, Header};
use tee_rt::endpoint::Endpoint;

use crate::caps::{bind_fresh, Capabilities};
use crate::control_conns::ControlConns;
use crate::control_state::{ActiveOp, PendingReply, Transit};
use crate::procs::{Received, ServerProcess};
use crate::secure_link::SecureLink;
use crate::{HostConfig, HostError, StatePaths, SERVER_BINARIES};
use teesys_init::{server_index, Effect, Notice, Supervisor, INIT_GENERATION, SERVERS};

/// Request ids init uses for frames of its own (status queries, endpoint hand-outs), apart from
/// the supervisor's, which count up from 1.
const HOST_REQUEST_IDS: u32 = 0x8000_0000;

/// `teectl down` asked for the stack to stop.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct DownState {
    pub requested: bool,
    pub finished: bool,
}

/// The hosted root task (see the module documentation of [`crate`]).
pub struct Host {
    pub(super) sup: Supervisor,
    pub(super) paths: StatePaths,
    pub(super) caps: Capabilities,
    pub(super) programs: [PathBuf; 3],
    pub(super) procs: [Option<ServerProcess>; 3],
    pub(super) started: Instant,
    pub(super) control: UnixListener,
    /// Control connections, read without blocking.
    pub(super) conns: ControlConns,
    pub(super) replies: Vec<PendingReply>,
    pub(super) op: Option<ActiveOp>,
    /// The control channel to the secure world (statistics, reset, conduits).
    pub(super) secure: SecureLink,
    /// A transition waiting on the secure world before the next boot.
    pub(super) transit: Option<Transit>,
    next_host_request_id: u32,
    pub(super) down: DownState,
    /// Socket inode of the conduit handed to the newest teed.
    pub(super) conduit_inode: Option<u64>,
    /// What the secure world held at the last transition, once the old world was gone and
    /// before the next one booted: zero after every orderly one.
    pub(super) left_at_transition: Option<SecureStats>,
}

impl Host {
    /// Creates the RAM file, the listeners and the control socket; starts nothing yet.
    pub fn new(config: HostConfig) -> Result<Self, HostError> {
        config.init.validate()?;
        let mut programs: [PathBuf; 3] = Default::default();
        for (program, name) in programs.iter_mut().zip(SERVER_BINARIES) {
            *program = match &config.bin_dir {
                Some(dir) => dir.join(name),
                None => tee_rt::spawn::sibling_binary(name)
                    .map_err(|source| HostError::Binary { name, source })?,
            };
            if !program.is_file() {
                return Err(HostError::Binary {
                    name,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{} does not exist", program.display()),
                    ),
                });
            }
        }
        let caps = Capabilities::create(
            &config.paths,
            config.ram_size,
            &config.init.windows,
            config.swtpm,
        )?;
        let mut secure = SecureLink::new(config.secure);
        // The secure world sees each client's window where teed will place its buffers.
        for (window, fd) in [
            (config.init.windows.tpmd, &caps.windows.tpmd),
            (config.init.windows.bnxtd, &caps.windows.bnxtd),
        ] {
            secure
                .link()
                .map_window(window.base, window.len, fd)
                .map_err(HostError::SecureWorld)?;
        }
        let control = bind_fresh(&config.paths.init_ctl())?;
        control.set_nonblocking(true).map_err(HostError::Control)?;
        Ok(Host {
            sup: Supervisor::new(config.init),
            paths: config.paths,
            caps,
            programs,
            procs: Default::default(),
            started: Instant::now(),
            control,
            conns: ControlConns::new(),
            replies: Vec::new(),
            op: None,
            secure,
            transit: None,
            next_host_request_id: HOST_REQUEST_IDS,
            down: DownState::default(),
            conduit_inode: None,
            left_at_transition: None,
        })
    }

    /// Milliseconds since init started: the supervisor's clock.
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn host_request_id(&mut self) -> u32 {
        let id = self.next_host_request_id;
        self.next_host_request_id = self.next_host_request_id.wrapping_add(1) | HOST_REQUEST_IDS;
        id
    }

    pub(super) fn pids(&self) -> [Option<u32>; 3] {
        self.procs
            .each_ref()
            .map(|p| p.as_ref().map(ServerProcess::pid))
    }

    /// Carries out every queued effect (effects may queue more).
    pub(super) fn drain_effects(&mut self) {
        while let Some(effect) = self.sup.poll() {
            let now = self.now();
            match effect {
                Effect::Start { server, generation } => self.start(now, server, generation),
                Effect::Stop { server } => self.stop(server),
                Effect::Send { server, frame } => self.send_lifecycle(server, frame),
                Effect::Transition(transition) => self.transition(transition),
                Effect::Booted(summary) => tracing::info!(
                    boot_id = summary.boot.boot_id,
                    kind = ?summary.boot.kind,
                    took_ms = summary.booted_at.saturating_sub(summary.started_at),
                    servers = ?summary.servers.map(|s| (s.server, s.generation, s.outcome)),
                    "booted"
                ),
                Effect::Notice(notice) => log_notice(&notice),
            }
        }
    }

    fn start(&mut self, now: u64, server: ServerKind, generation: Generation) {
        let index = server_index(server);
        if let Some(old) = self.procs[index].take() {
            tracing::warn!(?server, "start while an incarnation runs; killing it");
            old.reap();
        }
        match ServerProcess::spawn(server, generation, &self.programs[index]) {
            Ok(process) => self.procs[index] = Some(process),
            Err(error) => {
                tracing::error!(?server, generation, %error, "spawn failed");
                self.sup.incarnation_exited(now, server, generation);
            }
        }
    }

    pub(super) fn stop(&mut self, server: ServerKind) {
        if let Some(process) = self.procs[server_index(server)].take() {
            tracing::info!(?server, generation = process.generation, "stopping");
            process.reap();
        }
    }

    /// Delivers a supervisor frame, with the capabilities a `Hello` implies.
    fn send_lifecycle(&mut self, server: ServerKind, frame: Frame<InitRequest>) {
        let Some(process) = &self.procs[server_index(server)] else {
            tracing::debug!(?server, "no process for a lifecycle frame; dropped");
            return;
        };
        if frame.header.to_generation != process.generation {
            tracing::debug!(?server, "frame for another incarnation; dropped");
            return;
        }
        match (server, frame.body) {
            (ServerKind::Teed, InitRequest::Hello { .. }) => self.hello_teed(&frame),
            (ServerKind::Tpmd | ServerKind::Bnxtd, InitRequest::Hello { .. }) => {
                self.hello_client(server, &frame)
            }
            _ => process.send_or_log(&frame, &[]),
        }
    }

    /// teed's Hello grants a new conduit and the RAM file; then every live client is linked
    /// to the new teed.
    fn hello_teed(&mut self, frame: &Frame<InitRequest>) {
        let teed = server_index(ServerKind::Teed);
        let conduit = match self.secure.link().new_conduit() {
            Ok(conduit) => conduit,
            Err(error) => {
                // Without the SMC capability this incarnation cannot probe; it fails its start
                // and the restart policy decides.
                tracing::error!(%error, "no conduit from the secure world");
                if let Some(process) = self.procs[teed].take() {
                    let generation = process.generation;
                    process.reap();
                    let now = self.now();
                    self.sup
                        .incarnation_exited(now, ServerKind::Teed, generation);
                }
                return;
            }
        };
        self.conduit_inode = socket_inode(conduit.as_fd());
        if let Some(process) = &self.procs[teed] {
            let grants = TeedGrants {
                conduit: conduit.as_fd(),
                ram: self.caps.ram(),
                windows: Some(WindowGrants {
                    tpmd: self.caps.windows.tpmd.as_fd(),
                    bnxtd: self.caps.windows.bnxtd.as_fd(),
                }),
            };
            process.send_hello(frame, grants);
        }
        // init's copy of the conduit closes here: teed holds the only one.
        drop(conduit);
        for client in [ServerKind::Tpmd, ServerKind::Bnxtd] {
            self.relink_client(client);
        }
    }

    /// A client's Hello grants its end of a new teed endpoint, the RAM file and its listeners.
    fn hello_client(&mut self, client: ServerKind, frame: &Frame<InitRequest>) {
        let (teed_end, client_end) = match Endpoint::pair() {
            Ok(pair) => pair,
            Err(error) => {
                tracing::error!(?client, %error, "cannot create a teed endpoint");
                return;
            }
        };
        let Some(process) = &self.procs[server_index(client)] else {
            return;
        };
        let generation = process.generation;
        let (Some((consumers, swtpm)), Some(window)) = (
            self.caps.consumer_listeners(client),
            self.caps.window(client),
        ) else {
            return;
        };
        let grants = ClientGrants {
            teed: client_end.as_fd(),
            window,
            consumers,
            swtpm,
        };
        process.send_hello(frame, grants);
        drop(client_end);
        self.give_teed_endpoint(client, generation, teed_end);
    }

    /// After a teed (re)start: a new endpoint pair between it and a live client.
    fn relink_client(&mut self, client: ServerKind) {
        let Some(process) = &self.procs[server_index(client)] else {
            return;
        };
        if process.hung_up {
            return;
        }
        let Some(teed) = self.live(ServerKind::Teed) else {
            return;
        };
        let teed_generation = teed.generation;
        let (teed_end, client_end) = match Endpoint::pair() {
            Ok(pair) => pair,
            Err(error) => {
                tracing::error!(?client, %error, "cannot create a teed endpoint");
                return;
            }
        };
        let generation = process.generation;
        let header = Header::new(INIT_GENERATION, generation, self.host_request_id());
        if let Some(process) = &self.procs[server_index(client)] {
            let frame = Frame {
                header,
                body: InitRequest::TeedEndpoint { teed_generation },
            };
            process.send_or_log(&frame, &[client_end.as_fd()]);
        }
        drop(client_end);
        self.give_teed_endpoint(client, generation, teed_end);
    }

    /// Hands teed its end of a client's endpoint; without a live teed the end is dropped and
    /// the client hears of teed when one starts.
    fn give_teed_endpoint(&mut self, client: ServerKind, generation: Generation, end: Endpoint) {
        let Some(teed) = self.live(ServerKind::Teed) else {
            tracing::debug!(?client, "no live teed; its end of the endpoint is dropped");
            return;
        };
        let header = Header::new(INIT_GENERATION, teed.generation, self.host_request_id());
        if let Some(teed) = self.live(ServerKind::Teed) {
            let frame = Frame {
                header,
                body: InitRequest::ClientEndpoint { client, generation },
            };
            teed.send_or_log(&frame, &[end.as_fd()]);
        }
    }

    /// The process of `kind` if its lifecycle endpoint is still open.
    pub(super) fn live(&self, kind: ServerKind) -> Option<&ServerProcess> {
        self.procs[server_index(kind)]
            .as_ref()
            .filter(|process| !process.hung_up)
    }

    /// Reads what the server sent; answers to the host's own queries stay in the host.
    pub(super) fn receive_lifecycle(&mut self, index: usize) {
        loop {
            let Some(process) = self.procs[index].as_mut() else {
                return;
            };
            let kind = process.kind;
            match process.receive() {
                Received::Frame(frame) => {
                    if let ServerEvent::Status(status) = frame.body {
                        if self.record_status(index, frame.header.request_id, &status) {
                            continue;
                        }
                    }
                    let now = self.now();
                    self.sup.handle_event(now, kind, frame);
                }
                Received::HungUp => {
                    tracing::debug!(?kind, "lifecycle endpoint closed");
                    return;
                }
                Received::Nothing => return,
            }
        }
    }

    /// Reports every server process that has exited.
    pub(super) fn reap_exited(&mut self) {
        for index in 0..self.procs.len() {
            let Some(process) = self.procs[index].as_mut() else {
                continue;
            };
            let status = match process.try_reap() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(kind = ?process.kind, %error, "cannot reap");
                    continue;
                }
            };
            let (kind, generation) = (process.kind, process.generation);
            tracing::warn!(?kind, generation, %status, "server exited");
            self.procs[index] = None;
            let now = self.now();
            self.sup.incarnation_exited(now, kind, generation);
        }
    }

    /// Boots the first normal world.
    pub(super) fn cold_boot(&mut self) {
        let now = self.now();
        self.sup.boot(now, BootKind::Cold);
    }

    /// Kills every server and removes the sockets only this process serves.
    pub(super) fn tear_down(&mut self) {
        for kind in SERVERS {
            self.stop(kind);
        }
        for path in [
            self.paths.init_ctl(),
            self.paths.tpm_sock(),
            self.paths.bnxt_sock(),
            self.paths.swtpm_sock(),
            self.paths.swtpm_ctrl(),
        ] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The inode of a socket, as `/proc/<pid>/fd` shows it (`socket:[N]`).
fn socket_inode(fd: BorrowedFd<'_>) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn log_notice(notice: &Notice) {
    match notice {
        Notice::BootStarted(_)
        | Notice::OperatorRestart { .. }
        | Notice::ShutdownStarted { .. } => {
            tracing::info!(?notice, "notice")
        }
        _ => tracing::warn!(?notice, "notice"),
    }
}
