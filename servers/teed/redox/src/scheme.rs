//! The `tee` scheme: teed's adapter between Redox scheme requests and `teed::Teed`.
//!
//! Paths (who may open them: `tee_redox::policy`):
//! * `client/<generation>`: one incarnation of tpmd or bnxtd (known by its uid and gid), one
//!   handle per incarnation. Write one `TeedRequest` frame, read `TeedResponse` frames; `call`
//!   answers in place when the answer is there at once, which it is unless the call waits for
//!   a secure thread. Closing it is the client's disconnection: teed reclaims what it held.
//! * `window`: the caller's own buffer window. `read` gives its placement (physical base and
//!   length, little-endian u64 each); `mmap` maps it (page-aligned, inside the window). A client
//!   thereby maps its own buffers and nothing of teed's journal or the other client's pages.
//! * `control`: the lifecycle (`tee_redox::lifecycle`), root only.
//!
//! Every SMC the core asks for runs at once and synchronously through the capability for its
//! function id (`smc_caps::CapConduit`), and its answer goes straight back into the core, as in
//! the hosted shell.

use optee_abi::mem::{PhysMem, PAGE_SIZE_U64};
use smc_caps::{CapConduit, SmcCap};
use tee_proto::lifecycle::{ClientId, RamWindow, ServerKind};
use tee_proto::teed::TeedResponse;
use tee_proto::{accept_request, Frame, Generation, Incoming, TeedInterface, FRAME_MAX};
use tee_redox::client::encode_frame;
use tee_redox::handles::Handles;
use tee_redox::lifecycle::{self, Lifecycle, Screened, CONTROL_PATH};
use tee_redox::outbox::Outbox;
use tee_redox::policy::{self, Who};
use tee_redox::{boot, Caller, Millis, Ready, SchemeAdapter, SchemeError, Startup};
use teed::{Effect, Teed, TeedConfig};

use crate::args::Layout;

/// Bytes a `read` of a `window` handle returns: base and length.
pub const PLACEMENT_BYTES: usize = 16;

/// A client window and where teed has it mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub window: RamWindow,
    /// Its first byte in teed's address space.
    pub addr: usize,
}

/// The clients' windows as teed maps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowMap {
    pub tpmd: Option<Placed>,
    pub bnxtd: Option<Placed>,
}

impl WindowMap {
    fn of(&self, kind: ServerKind) -> Option<Placed> {
        match kind {
            ServerKind::Teed => None,
            ServerKind::Tpmd => self.tpmd,
            ServerKind::Bnxtd => self.bnxtd,
        }
    }
}

/// What a handle of the `tee` scheme is.
#[derive(Debug)]
enum TeePath {
    Client { id: ClientId, outbox: Outbox },
    Window { kind: ServerKind },
    Control,
}

/// The `tee` scheme over teed's core.
pub struct TeeScheme<P, M: PhysMem> {
    core: Teed<M>,
    smc: CapConduit<P>,
    windows: WindowMap,
    handles: Handles<TeePath>,
    lifecycle: Lifecycle,
    readable: Vec<usize>,
    now: Millis,
}

impl<P: SmcCap, M: PhysMem> TeeScheme<P, M> {
    /// The scheme over a fresh core on `mem`, reaching the secure world through `smc`.
    pub fn new(config: TeedConfig, mem: M, smc: CapConduit<P>, windows: WindowMap) -> Self {
        TeeScheme {
            core: Teed::new(config, mem),
            smc,
            windows,
            handles: Handles::default(),
            lifecycle: Lifecycle::default(),
            readable: Vec::new(),
            now: 0,
        }
    }

    /// Sends the core its own `Hello` as incarnation `generation` over `layout`: the probe
    /// starts, and runs as far as it can without waiting.
    pub fn start(&mut self, now: Millis, generation: Generation, layout: &Layout) {
        self.now = now;
        let hello = boot::hello(
            generation,
            generation,
            layout.ram,
            layout.journal,
            layout.windows,
        );
        self.core.handle_init(now, hello);
        self.carry_out();
    }

    /// The core (for status and tests).
    pub fn core(&self) -> &Teed<M> {
        &self.core
    }

    /// The SMC conduit (for status and tests).
    pub fn conduit(&self) -> &CapConduit<P> {
        &self.smc
    }

    fn carry_out(&mut self) {
        while let Some(effect) = self.core.poll() {
            match effect {
                Effect::Smc { token, regs } => {
                    let answer = self.smc.call(regs);
                    // The core hears of a lost conduit before the refusal, so it can tell an
                    // unreachable secure world from an incompatible one.
                    if self.smc.is_broken() {
                        self.core.conduit_failed(self.now);
                    }
                    self.core.handle_smc_return(self.now, token, answer);
                }
                Effect::Reply { client, frame } => self.reply(client, &frame),
                Effect::ToInit(frame) => {
                    if let Some(id) = self.lifecycle.on_event(frame) {
                        self.readable.push(id);
                    }
                }
            }
        }
    }

    fn reply(&mut self, client: ClientId, frame: &Frame<TeedResponse>) {
        let handle = self
            .handles
            .iter_mut()
            .find_map(|(handle, path)| match path {
                TeePath::Client { id, outbox } if *id == client => Some((handle, outbox)),
                _ => None,
            });
        let Some((handle, outbox)) = handle else {
            tracing::debug!(%client, "reply for a client that left dropped");
            return;
        };
        let pushed =
            encode_frame(frame).and_then(|bytes| outbox.push(Some(frame.header.request_id), bytes));
        match pushed {
            Ok(()) => self.readable.push(handle),
            Err(error) => tracing::warn!(%client, %error, "reply dropped"),
        }
    }

    /// Opens `client/<generation>` for a client daemon.
    fn open_client(&mut self, generation: &str, caller: &Caller) -> Result<usize, SchemeError> {
        let kind = policy::client_kind(caller).ok_or(SchemeError::Denied)?;
        let generation = generation
            .parse::<Generation>()
            .ok()
            .filter(|g| *g != 0 && !generation.starts_with('+'))
            .ok_or(SchemeError::NoSuchPath)?;
        let id = ClientId::new(kind, generation).ok_or(SchemeError::Denied)?;
        let taken = self
            .handles
            .iter()
            .any(|(_, path)| matches!(path, TeePath::Client { id: open, .. } if *open == id));
        if taken {
            return Err(SchemeError::Busy);
        }
        let handle = self.handles.insert(
            caller,
            TeePath::Client {
                id,
                outbox: Outbox::default(),
            },
        );
        tracing::info!(client = %id, "client connected");
        self.core.connect_client(id, kind);
        Ok(handle)
    }

    fn write_client(
        &mut self,
        handle: usize,
        buf: &[u8],
        caller: &Caller,
    ) -> Result<usize, SchemeError> {
        if buf.len() > FRAME_MAX {
            return Err(SchemeError::TooLarge {
                len: buf.len(),
                max: FRAME_MAX,
            });
        }
        let TeePath::Client { id, outbox } = self.handles.get_mut(handle, caller)? else {
            return Err(SchemeError::NotSupported);
        };
        match accept_request::<TeedInterface>(buf, self.core.generation()) {
            Incoming::Request(frame) => {
                let client = *id;
                self.core.handle_client(self.now, client, frame);
                self.carry_out();
            }
            Incoming::Answer(answer) => {
                outbox.push(Some(answer.header.request_id), encode_frame(&answer)?)?;
                self.readable.push(handle);
            }
            Incoming::Drop(error) => {
                tracing::warn!(%error, "undecodable client frame refused");
                return Err(SchemeError::Malformed);
            }
        }
        Ok(buf.len())
    }

    fn write_control(&mut self, buf: &[u8]) -> Result<usize, SchemeError> {
        match self.lifecycle.screen(buf, self.core.generation())? {
            Screened::Forward(frame) => {
                self.core.handle_init(self.now, frame);
                self.carry_out();
            }
            Screened::Answer(answer) => {
                if let Some(id) = self.lifecycle.answer(&answer) {
                    self.readable.push(id);
                }
            }
        }
        Ok(buf.len())
    }
}

impl<P: SmcCap, M: PhysMem> SchemeAdapter for TeeScheme<P, M> {
    fn name(&self) -> &'static str {
        policy::TEED.provides
    }

    fn open(&mut self, path: &str, caller: &Caller) -> Result<usize, SchemeError> {
        let path = path.trim_matches('/');
        if let Some(generation) = path.strip_prefix("client/") {
            return self.open_client(generation, caller);
        }
        match path {
            "window" => {
                let kind = policy::client_kind(caller).ok_or(SchemeError::Denied)?;
                debug_assert!(Who::Clients.admits(caller));
                self.windows.of(kind).ok_or(SchemeError::NoSuchPath)?;
                Ok(self.handles.insert(caller, TeePath::Window { kind }))
            }
            CONTROL_PATH => {
                self.lifecycle.may_open(caller)?;
                let id = self.handles.insert(caller, TeePath::Control);
                self.lifecycle.opened(id);
                Ok(id)
            }
            _ => Err(SchemeError::NoSuchPath),
        }
    }

    fn read(&mut self, id: usize, buf: &mut [u8], caller: &Caller) -> Result<usize, SchemeError> {
        match self.handles.get_mut(id, caller)? {
            TeePath::Client { outbox, .. } => outbox.pop_into(buf),
            TeePath::Window { kind } => {
                let placed = self.windows.of(*kind).ok_or(SchemeError::NoSuchPath)?;
                let got = buf.len();
                let out = buf
                    .get_mut(..PLACEMENT_BYTES)
                    .ok_or(SchemeError::BufferTooSmall {
                        need: PLACEMENT_BYTES,
                        got,
                    })?;
                out[..8].copy_from_slice(&placed.window.base.to_le_bytes());
                out[8..].copy_from_slice(&placed.window.len.to_le_bytes());
                Ok(PLACEMENT_BYTES)
            }
            TeePath::Control => self.lifecycle.read(buf),
        }
    }

    fn write(&mut self, id: usize, buf: &[u8], caller: &Caller) -> Result<usize, SchemeError> {
        match self.handles.get(id, caller)? {
            TeePath::Client { .. } => self.write_client(id, buf, caller),
            TeePath::Window { .. } => Err(SchemeError::NotSupported),
            TeePath::Control => self.write_control(buf),
        }
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        request_len: usize,
        caller: &Caller,
    ) -> Result<usize, SchemeError> {
        if let TeePath::Window { .. } = self.handles.get(id, caller)? {
            return Err(SchemeError::NotSupported);
        }
        let request = lifecycle::call_request(payload, request_len)?;
        let request_id = lifecycle::request_id(&request).ok_or(SchemeError::Malformed)?;
        self.write(id, &request, caller)?;
        match self.handles.get_mut(id, caller)? {
            TeePath::Client { outbox, .. } => {
                Ok(outbox.take_answer(request_id, payload)?.unwrap_or(0))
            }
            _ => Ok(self
                .lifecycle
                .take_answer(request_id, payload)?
                .unwrap_or(0)),
        }
    }

    fn ready(&self, id: usize, caller: &Caller) -> Result<Ready, SchemeError> {
        Ok(match self.handles.get(id, caller)? {
            TeePath::Client { outbox, .. } => Ready {
                read: !outbox.is_empty(),
                write: true,
            },
            TeePath::Window { .. } => Ready {
                read: true,
                write: false,
            },
            TeePath::Control => Ready {
                read: self.lifecycle.readable(),
                write: true,
            },
        })
    }

    fn mmap_prep(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        caller: &Caller,
    ) -> Result<usize, SchemeError> {
        let TeePath::Window { kind } = self.handles.get(id, caller)? else {
            return Err(SchemeError::NotSupported);
        };
        let placed = self.windows.of(*kind).ok_or(SchemeError::NoSuchPath)?;
        let end = offset
            .checked_add(size as u64)
            .ok_or(SchemeError::OutOfRange)?;
        if size == 0 || offset % PAGE_SIZE_U64 != 0 || end > placed.window.len {
            return Err(SchemeError::OutOfRange);
        }
        let offset = usize::try_from(offset).map_err(|_| SchemeError::OutOfRange)?;
        Ok(placed.addr + offset)
    }

    fn close(&mut self, id: usize) {
        match self.handles.remove(id) {
            Some(TeePath::Client { id: client, .. }) => {
                tracing::info!(%client, "client disconnected");
                self.core.client_disconnected(self.now, client);
                self.carry_out();
            }
            Some(TeePath::Control) => self.lifecycle.closed(id),
            Some(TeePath::Window { .. }) | None => {}
        }
    }

    fn take_readable(&mut self) -> Vec<usize> {
        let mut readable = std::mem::take(&mut self.readable);
        readable.sort_unstable();
        readable.dedup();
        readable
    }

    fn advance(&mut self, now: Millis) {
        self.now = now;
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now);
            self.carry_out();
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.core.poll_timeout()
    }

    fn startup(&self) -> Startup {
        self.lifecycle.startup()
    }
}
