//! Process-test helpers: a secure-world process with its RAM file, and servers started the way
//! init starts them. Every wait is bounded and every child is killed when its handle drops, so a
//! failing test never leaves processes behind or hangs.
//!
//! Binaries are found with [`tee_rt::spawn::sibling_binary`]; build them first
//! (`cargo build --workspace --bins`, as `cargo xtask test` does).
//!
//! Beyond processes, it speaks init's part: [`ServerProcess::ask`] and friends send lifecycle
//! requests and wait for their answers, [`start_teed`] and [`connect_client`] wire teed up the
//! way init does, and [`FrameClient`] is a consumer on a server's native-frame listener.

use std::fs::OpenOptions;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tee_proto::grants::{ClientGrants, GrantKinds, Grants, TeedGrants};
use tee_proto::lifecycle::{
    BootInfo, BootKind, ClientWindows, InitRequest, RamWindow, ServerEvent, ServerKind,
    ShutdownReason, ShutdownReport,
};
use tee_proto::{Frame, Generation, Header, ProtoError, FRAME_MAX};

use tee_rt::endpoint::{Endpoint, EndpointError, ReceivedFrame};
use tee_rt::event::{Interest, PollSet, Token};
use tee_rt::framing::{read_frame, write_frame, FrameError};
use tee_rt::ram::{RamError, RamFile, DEFAULT_RAM_BASE};
use tee_rt::secure_link::{LinkError, SecureLink};
use tee_rt::spawn::{sibling_binary, spawn_server, spawn_with_endpoint, SECURE_CONTROL_FD_ENV};

/// Longest a harness waits for a process to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Top of RAM kept out of the frame window: teed's journal lives there, as in the simulator.
pub const CARVE_OUT: u64 = 1 << 20;
/// Size of teed's journal window.
pub const JOURNAL_BYTES: u64 = 128 << 10;

/// init's generation in the headers it sends.
pub const INIT_GENERATION: Generation = 0;
/// The first boot of the machine, as most process tests run it.
pub const COLD_BOOT: BootInfo = BootInfo {
    boot_id: 1,
    kind: BootKind::Cold,
    crash_flag: false,
};
/// What a client's `Hello` carries for its RAM and journal: it gets the RAM as a descriptor.
pub const NO_WINDOW: RamWindow = RamWindow { base: 0, len: 0 };

/// Failures of a harness wait.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("nothing arrived within {0:?}")]
    TimedOut(Duration),
    #[error("the peer closed the endpoint")]
    Closed,
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// An answer to some other request than the one waited for.
    #[error("answer to request {got} while waiting for {expected}")]
    WrongRequestId { expected: u32, got: u32 },
    /// A lifecycle answer other than the one the step needs.
    #[error("unexpected answer {0:?}")]
    UnexpectedEvent(Box<ServerEvent>),
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh directory named after `tag`, this process and a counter.
    pub fn new(tag: &str) -> io::Result<ScratchDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("teesys-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills and reaps a child when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(Some(status));
            }
            if started.elapsed() >= timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running secure-world process, the requester's end of its control channel (the test plays
/// init) and its RAM file.
#[derive(Debug)]
pub struct SecureWorldProcess {
    // Declared first: killed before the directory holding its RAM file goes.
    child: KillOnDrop,
    control: std::sync::Mutex<SecureLink>,
    ram: PathBuf,
    ram_size: u64,
    _dir: ScratchDir,
}

impl SecureWorldProcess {
    /// Starts the sibling `secure-world` binary with a RAM of `ram_size` bytes, handing it its
    /// control channel as a launcher does, and waits until it answers there.
    pub fn start(tag: &str, ram_size: u64) -> io::Result<SecureWorldProcess> {
        SecureWorldProcess::start_with_args(tag, ram_size, &[])
    }

    /// Like [`SecureWorldProcess::start`], passing `extra` options to the binary.
    pub fn start_with_args(
        tag: &str,
        ram_size: u64,
        extra: &[&str],
    ) -> io::Result<SecureWorldProcess> {
        let dir = ScratchDir::new(tag)?;
        let ram = dir.path().join("ram");
        let (world_end, ours) = Endpoint::pair()?;
        let mut command = Command::new(sibling_binary("secure-world")?);
        command
            .arg("--ram")
            .arg(&ram)
            .arg("--ram-size")
            .arg(ram_size.to_string())
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let child = spawn_with_endpoint(command, SECURE_CONTROL_FD_ENV, world_end)?;
        let mut child = KillOnDrop(child);
        let mut control = SecureLink::new(ours);
        let started = Instant::now();
        // The first answer means the model and its RAM file are up.
        while let Err(error) = control.stats() {
            if let Some(status) = child.0.try_wait()? {
                return Err(io::Error::other(format!("secure world exited: {status}")));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("secure world did not come up: {error}"),
                ));
            }
        }
        Ok(SecureWorldProcess {
            child,
            control: std::sync::Mutex::new(control),
            ram,
            ram_size,
            _dir: dir,
        })
    }

    /// A new conduit (what init hands teed); the secure world closes the one before.
    pub fn connect_conduit(&self) -> io::Result<UnixStream> {
        self.link(SecureLink::new_conduit)
    }

    /// The secure world's statistics over its control channel.
    pub fn stats(&self) -> io::Result<tee_proto::secure::SecureStats> {
        self.link(SecureLink::stats)
    }

    /// A machine reset over the control channel.
    pub fn reset(&self) -> io::Result<()> {
        self.link(SecureLink::reset)
    }

    fn link<T>(&self, call: impl FnOnce(&mut SecureLink) -> Result<T, LinkError>) -> io::Result<T> {
        let mut link = self
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        call(&mut link).map_err(io::Error::other)
    }

    /// The RAM file opened read-write (what init hands every server).
    pub fn open_ram(&self) -> io::Result<OwnedFd> {
        let file = OpenOptions::new().read(true).write(true).open(&self.ram)?;
        Ok(OwnedFd::from(file))
    }

    /// A mapping of the RAM file, to check what the servers and the secure world wrote.
    pub fn map_ram(&self) -> Result<RamFile, RamError> {
        RamFile::open_at(&self.ram, DEFAULT_RAM_BASE, self.ram_size)
    }

    /// The frames teed may allocate from: all RAM below the carve-out.
    pub fn frame_window(&self) -> RamWindow {
        RamWindow {
            base: DEFAULT_RAM_BASE,
            len: self.ram_size.saturating_sub(CARVE_OUT),
        }
    }

    /// teed's journal, at the start of the carve-out.
    pub fn journal_window(&self) -> RamWindow {
        RamWindow {
            base: DEFAULT_RAM_BASE + self.ram_size.saturating_sub(CARVE_OUT),
            len: JOURNAL_BYTES,
        }
    }

    /// init's `Hello` to teed incarnation `generation` on this world (the conduit and the RAM
    /// travel with it as descriptors, named by its grants).
    pub fn teed_hello(&self, generation: Generation, boot: BootInfo) -> InitRequest {
        InitRequest::Hello {
            generation,
            teed_generation: generation,
            boot,
            ram: self.frame_window(),
            journal: self.journal_window(),
            windows: ClientWindows::NONE,
            grants: TeedGrants::kinds(false),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A server started as init starts it, with init's side of its lifecycle endpoint.
#[derive(Debug)]
pub struct ServerProcess {
    pub child: KillOnDrop,
    /// init's side; dropping it tells the server init is gone.
    pub lifecycle: Option<Endpoint>,
}

impl ServerProcess {
    /// Spawns `program` with a fresh lifecycle endpoint and `envs`.
    pub fn spawn(program: &Path, envs: &[(&str, &str)]) -> io::Result<ServerProcess> {
        let (init_side, server_side) = Endpoint::pair()?;
        let child = spawn_server(program, &[], server_side, envs)?;
        Ok(ServerProcess {
            child: KillOnDrop(child),
            lifecycle: Some(init_side),
        })
    }

    /// init's side of the lifecycle endpoint.
    pub fn lifecycle(&self) -> io::Result<&Endpoint> {
        self.lifecycle
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "lifecycle closed"))
    }

    /// Closes init's side of the lifecycle endpoint.
    pub fn close_lifecycle(&mut self) {
        self.lifecycle = None;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `body` as init to incarnation `to` with request id `id`, without waiting.
    pub fn send_to(
        &self,
        to: Generation,
        id: u32,
        body: InitRequest,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), HarnessError> {
        let header = Header::new(INIT_GENERATION, to, id);
        self.lifecycle()?.send_frame(&Frame { header, body }, fds)?;
        Ok(())
    }

    /// Sends `body` as [`ServerProcess::send_to`] does and waits up to `timeout` for the answer,
    /// which must carry request id `id`; returns it with its attachments.
    pub fn exchange(
        &self,
        to: Generation,
        id: u32,
        body: InitRequest,
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<ReceivedFrame<ServerEvent>, HarnessError> {
        self.send_to(to, id, body, fds)?;
        let (frame, attachments) = recv_frame_within::<ServerEvent>(self.lifecycle()?, timeout)?;
        check_request_id(id, &frame.header)?;
        Ok((frame, attachments))
    }

    /// [`ServerProcess::exchange`], keeping only the answer's body.
    pub fn ask(
        &self,
        to: Generation,
        id: u32,
        body: InitRequest,
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<ServerEvent, HarnessError> {
        Ok(self.exchange(to, id, body, fds, timeout)?.0.body)
    }

    /// Asks for a shutdown for `reason`; the answer must be the ack, whose report is returned.
    pub fn shutdown(
        &self,
        to: Generation,
        id: u32,
        reason: ShutdownReason,
        timeout: Duration,
    ) -> Result<ShutdownReport, HarnessError> {
        match self.ask(to, id, InitRequest::Shutdown { reason }, &[], timeout)? {
            ServerEvent::ShutdownAck(report) => Ok(report),
            other => Err(HarnessError::UnexpectedEvent(Box::new(other))),
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit code (`None` when a
    /// signal ended it).
    pub fn exit_code_within(&mut self, timeout: Duration) -> Result<Option<i32>, HarnessError> {
        match self.child.wait_exit(timeout)? {
            Some(status) => Ok(status.code()),
            None => Err(HarnessError::TimedOut(timeout)),
        }
    }
}

fn check_request_id(expected: u32, answer: &Header) -> Result<(), HarnessError> {
    if answer.request_id == expected {
        Ok(())
    } else {
        Err(HarnessError::WrongRequestId {
            expected,
            got: answer.request_id,
        })
    }
}

/// init's `Hello` to a client server (tpmd, bnxtd) of incarnation `generation`, naming the
/// grants of [`ClientGrants`] without swtpm listeners.
pub fn client_hello(
    generation: Generation,
    teed_generation: Generation,
    boot: BootInfo,
) -> InitRequest {
    InitRequest::Hello {
        generation,
        teed_generation,
        boot,
        // No window named: the client maps its window grant (here all of RAM) at the usual base.
        ram: NO_WINDOW,
        journal: NO_WINDOW,
        windows: ClientWindows::NONE,
        grants: ClientGrants::kinds(false),
    }
}

/// `hello` naming `kinds` as its grants.
fn with_grants(mut hello: InitRequest, kinds: GrantKinds) -> InitRequest {
    if let InitRequest::Hello { grants, .. } = &mut hello {
        *grants = kinds;
    }
    hello
}

/// The answer must be `Ready` from incarnation `generation`.
pub fn expect_ready(answer: ServerEvent, generation: Generation) -> Result<(), HarnessError> {
    if answer == (ServerEvent::Ready { generation }) {
        Ok(())
    } else {
        Err(HarnessError::UnexpectedEvent(Box::new(answer)))
    }
}

/// Starts incarnation `generation` of the sibling `teed` binary on `world` as init does: its
/// `Hello` (request id 1) carries the conduit and the RAM; waits for its `Ready`.
pub fn start_teed(
    world: &SecureWorldProcess,
    generation: Generation,
    boot: BootInfo,
    timeout: Duration,
) -> Result<ServerProcess, HarnessError> {
    let conduit = world.connect_conduit()?;
    let ram = world.open_ram()?;
    let grants = TeedGrants {
        conduit: conduit.as_fd(),
        ram: ram.as_fd(),
        windows: None,
    };
    let (kinds, fds) = grants.into_parts();
    let hello = with_grants(world.teed_hello(generation, boot), kinds);
    start_with_hello(&sibling_binary("teed")?, generation, hello, &fds, timeout)
}

/// Starts `program` as init starts client incarnation `generation` (tpmd, bnxtd): its `Hello`
/// (request id 1) carries `grants`; waits for its `Ready`.
pub fn start_client(
    program: &Path,
    generation: Generation,
    teed_generation: Generation,
    boot: BootInfo,
    grants: ClientGrants<BorrowedFd<'_>>,
    timeout: Duration,
) -> Result<ServerProcess, HarnessError> {
    let (kinds, fds) = grants.into_parts();
    let hello = with_grants(client_hello(generation, teed_generation, boot), kinds);
    start_with_hello(program, generation, hello, &fds, timeout)
}

/// Spawns `program`, sends it `hello` for incarnation `generation` with `fds` and requires its
/// `Ready`.
fn start_with_hello(
    program: &Path,
    generation: Generation,
    hello: InitRequest,
    fds: &[BorrowedFd<'_>],
    timeout: Duration,
) -> Result<ServerProcess, HarnessError> {
    let server = ServerProcess::spawn(program, &[])?;
    let answer = server.ask(generation, 1, hello, fds, timeout)?;
    expect_ready(answer, generation)?;
    Ok(server)
}

/// Hands `teed` (incarnation `teed_generation`) its end of a fresh endpoint for `client`'s
/// incarnation `generation`, as init does, with request id `id`; returns the client's end.
pub fn connect_client(
    teed: &ServerProcess,
    teed_generation: Generation,
    id: u32,
    client: ServerKind,
    generation: Generation,
) -> Result<Endpoint, HarnessError> {
    let (teed_side, client_side) = Endpoint::pair()?;
    let body = InitRequest::ClientEndpoint { client, generation };
    teed.send_to(teed_generation, id, body, &[teed_side.as_fd()])?;
    Ok(client_side)
}

/// A consumer on a server's native listener: length-prefixed tee-proto frames of `Req` out and
/// `Resp` back, addressed to one incarnation.
#[derive(Debug)]
pub struct FrameClient<Req, Resp> {
    pub stream: UnixStream,
    to_generation: Generation,
    next_id: u32,
    _protocol: PhantomData<fn(Req) -> Resp>,
}

impl<Req: Serialize, Resp: DeserializeOwned> FrameClient<Req, Resp> {
    /// Connects to the listener at `path`; every read waits at most `timeout`.
    pub fn connect(
        path: &Path,
        to_generation: Generation,
        timeout: Duration,
    ) -> io::Result<FrameClient<Req, Resp>> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        Ok(FrameClient {
            stream,
            to_generation,
            next_id: 0,
            _protocol: PhantomData,
        })
    }

    /// Writes `bytes` as one frame, well-formed or not.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), HarnessError> {
        write_frame(&mut self.stream, bytes)?;
        Ok(())
    }

    /// Encodes and sends `frame` as it is, whatever its header says.
    pub fn send_frame(&mut self, frame: &Frame<Req>) -> Result<(), HarnessError> {
        let mut buf = [0u8; FRAME_MAX];
        let encoded = tee_proto::encode(frame, &mut buf)?;
        write_frame(&mut self.stream, encoded)?;
        Ok(())
    }

    /// Reads and decodes the next frame.
    pub fn receive(&mut self) -> Result<Frame<Resp>, HarnessError> {
        let mut buf = Vec::new();
        read_frame(&mut self.stream, &mut buf, FRAME_MAX)?;
        Ok(tee_proto::decode(&buf)?)
    }

    /// Sends `body` with the next request id and returns the answer, which must carry that id.
    pub fn request(&mut self, body: Req) -> Result<Frame<Resp>, HarnessError> {
        self.next_id += 1;
        let id = self.next_id;
        self.send_frame(&Frame {
            header: Header::new(0, self.to_generation, id),
            body,
        })?;
        let answer = self.receive()?;
        check_request_id(id, &answer.header)?;
        Ok(answer)
    }
}

/// Waits up to `timeout` for one frame on `endpoint`.
pub fn recv_frame_within<T: DeserializeOwned>(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<ReceivedFrame<T>, HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut set = PollSet::new();
        set.register(endpoint.as_fd(), Token(0), Interest::READABLE);
        let ready = set.wait(Some(left))?;
        if ready.is_empty() {
            if left.is_zero() {
                return Err(HarnessError::TimedOut(timeout));
            }
            continue;
        }
        return endpoint.recv_frame()?.ok_or(HarnessError::Closed);
    }
}

/// What a process holds, sorted into sockets and everything else past stdin, stdout and
/// stderr: servers must hold sockets only once the RAM is mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorCensus {
    /// How many of its descriptors are sockets.
    pub sockets: usize,
    /// Descriptors above 2 that are not sockets, as `(number, link target)`.
    pub others: Vec<(i32, String)>,
}

/// Takes the [`DescriptorCensus`] of process `pid`.
pub fn descriptor_census(pid: u32) -> io::Result<DescriptorCensus> {
    let is_socket = |target: &str| target.starts_with("socket:");
    let fds = open_descriptors(pid)?;
    Ok(DescriptorCensus {
        sockets: fds.iter().filter(|(_, target)| is_socket(target)).count(),
        others: fds
            .into_iter()
            .filter(|(number, target)| *number > 2 && !is_socket(target))
            .collect(),
    })
}

/// The descriptors process `pid` holds, as `(number, link target)`, sorted by number.
pub fn open_descriptors(pid: u32) -> io::Result<Vec<(i32, String)>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Some(number) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let target = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        fds.push((number, target));
    }
    fds.sort();
    Ok(fds)
}

/// The packages whose binaries a whole hosted stack runs (`teectl up` starts them).
pub const STACK_PACKAGES: [&str; 6] = [
    "secure-world-host",
    "teed",
    "tpmd",
    "bnxtd",
    "teesys-root",
    "teectl",
];

/// Builds the whole stack's binaries (a no-op when they are up to date), once per test
/// binary, in the profile the test itself was built in: `cargo test -p X` alone builds only
/// X's binaries.
pub fn ensure_stack_binaries() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let release = std::env::current_exe().is_ok_and(|exe| {
            exe.ancestors()
                .any(|dir| dir.file_name().is_some_and(|name| name == "release"))
        });
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo.args(["build", "--quiet", "--bins"]);
        for package in STACK_PACKAGES {
            cargo.args(["-p", package]);
        }
        if release {
            cargo.arg("--release");
        }
        let built = cargo.status().is_ok_and(|status| status.success());
        assert!(built, "building the stack's binaries failed");
    });
}
