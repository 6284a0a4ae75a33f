//! A teed core wired straight to the secure-world model, for focused tests: requests go in,
//! every SMC runs at once in FIFO order, virtual time jumps to the next deadline when nothing
//! else is left to do.

use std::collections::VecDeque;

use optee_abi::uuid::Uuid;
use secure_world::{Config as SecureConfig, Profile, SecureWorld};
use tee_proto::grants::TeedGrants;
use tee_proto::lifecycle::ClientWindows;
use tee_proto::lifecycle::{
    BootInfo, BootKind, InitRequest, ServerEvent, ServerKind, ShutdownReason,
};
use tee_proto::teed::{Login, Param, ShmId, TeedRequest, TeedResponse};
use tee_proto::{Frame, Header};
use teed::{ClientId, Effect, Millis, Teed, TeedConfig};

use crate::layout;
use crate::ram::SharedRam;

/// tpmd's first incarnation, as the harness's tests name it.
pub const TPMD: ClientId = ClientId {
    kind: ServerKind::Tpmd,
    generation: 1,
};

/// bnxtd's incarnation the harness's tests use.
pub const BNXTD: ClientId = ClientId {
    kind: ServerKind::Bnxtd,
    generation: 2,
};

/// The harness gave up: more steps than its bound without reaching the goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no progress after {steps} steps (virtual time {now} ms)")]
pub struct Stalled {
    pub steps: usize,
    pub now: Millis,
}

/// What a scripted secure world does with one SMC, in place of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twist {
    /// Let the model answer.
    Honest,
    /// Answer with these registers; the model never sees the SMC.
    Answer(optee_abi::smc::Regs),
    /// Never answer (the SMC stays in [`TeedHarness::unanswered`]).
    Silent,
}

/// A hostile secure world's script: sees every SMC teed makes, in order.
pub type Script = Box<dyn FnMut(&optee_abi::smc::Regs) -> Twist>;

/// teed, the secure world and RAM.
pub struct TeedHarness {
    pub teed: Teed<SharedRam>,
    pub secure: SecureWorld,
    pub ram: SharedRam,
    pub now: Millis,
    pub smcs: u64,
    pub events: Vec<ServerEvent>,
    replies: VecDeque<(ClientId, Frame<TeedResponse>)>,
    next_request: u32,
    boot_id: u64,
    /// When set, SMCs stay queued instead of running (to freeze the world between two steps).
    pub hold_smcs: bool,
    /// When set, the conduit is gone: teed hears so, and every SMC is refused as the hosted
    /// shell's gate refuses it (UNKNOWN_FUNCTION), without reaching the secure world.
    pub conduit_broken: bool,
    held: VecDeque<(teed::SmcToken, optee_abi::smc::Regs)>,
    /// Every cookie teed handed the secure world: in REGISTER_SHM and in RPC ALLOC answers.
    pub cookies_seen: Vec<u64>,
    /// Whether to read every SMC's message for [`TeedHarness::cookies_seen`] (on by default;
    /// the bench turns it off so that it times teed, not the harness's watch).
    pub watch_cookies: bool,
    /// `TEESYS_TRACE_SMC` set: print every SMC (read once, not per call).
    trace_smcs: bool,
    /// When set, decides each SMC before the model may answer it.
    pub script: Option<Script>,
    /// SMCs the script chose never to answer.
    pub unanswered: Vec<teed::SmcToken>,
}

/// Where the message of a yielding call that starts with `regs` lies: at a1:a2, or at a3 into
/// teed's registered argument pages (`arg_pages`: cookie, first page, bytes) for
/// CALL_WITH_REGD_ARG. `None` for any other SMC.
pub fn message_pa(regs: &optee_abi::smc::Regs, arg_pages: Option<(u64, u64, u64)>) -> Option<u64> {
    use optee_abi::smc::{func, join_u32_pair};
    match regs[0] as u32 {
        func::CALL_WITH_ARG | func::CALL_WITH_RPC_ARG => Some(join_u32_pair(regs[1], regs[2])),
        func::CALL_WITH_REGD_ARG => {
            let (cookie, pa, bytes) = arg_pages?;
            let offset = regs[3] & 0xFFFF_FFFF;
            let named = join_u32_pair(regs[1], regs[2]) == cookie && offset < bytes;
            named.then_some(pa + offset)
        }
        _ => None,
    }
}

/// Step bound for one `run`.
pub const MAX_STEPS: usize = 200_000;

impl TeedHarness {
    /// A fresh machine: a booted secure world and a teed waiting for Hello.
    pub fn new(teed_config: TeedConfig, secure_config: SecureConfig) -> TeedHarness {
        let ram = SharedRam::new(layout::RAM_BASE, layout::RAM_SIZE);
        TeedHarness {
            teed: Teed::new(teed_config, ram.clone()),
            secure: SecureWorld::new(secure_config, 0x5eed),
            ram,
            now: 0,
            smcs: 0,
            events: Vec::new(),
            replies: VecDeque::new(),
            next_request: 1,
            boot_id: 0,
            hold_smcs: false,
            conduit_broken: false,
            held: VecDeque::new(),
            cookies_seen: Vec::new(),
            watch_cookies: true,
            trace_smcs: std::env::var_os("TEESYS_TRACE_SMC").is_some(),
            script: None,
            unanswered: Vec::new(),
        }
    }

    /// A booted machine whose every secure thread was left suspended by a normal world that died
    /// mid-call: a foreign interrupt arrives in each of two calls a bnxtd client (`client`) made,
    /// and the teed that made them is replaced by a new, not yet booted one with `next`.
    pub fn with_threads_left_suspended(client: ClientId, next: TeedConfig) -> TeedHarness {
        TeedHarness::with_threads_left_suspended_on(client, next, Profile::Optee3_14)
    }

    /// [`TeedHarness::with_threads_left_suspended`] with the secure world answering as
    /// `profile`.
    pub fn with_threads_left_suspended_on(
        client: ClientId,
        next: TeedConfig,
        profile: Profile,
    ) -> TeedHarness {
        let secure = SecureConfig {
            foreign_intr_every: Some(1),
            ..SecureConfig::for_profile(profile)
        };
        let mut h = TeedHarness::new(TeedConfig::new(), secure);
        h.connect(client, ServerKind::Bnxtd);
        let _ = h.boot(BootKind::Cold, 1);
        h.send(client, TeedRequest::ShmAlloc { size: 4096 });
        h.send(client, TeedRequest::ShmAlloc { size: 4096 });
        // Each call enters the secure world and comes back with FOREIGN_INTR; nobody resumes it.
        h.step();
        h.step();
        h.new_teed(next);
        h.smcs = 0;
        h
    }

    /// Replaces teed with a new incarnation over the same RAM and secure world, as a restart or a
    /// new boot does. Clients must be connected again.
    pub fn new_teed(&mut self, teed_config: TeedConfig) {
        self.teed = Teed::new(teed_config, self.ram.clone());
        self.replies.clear();
        self.held.clear();
    }

    /// Sends Hello for a boot of `kind` and runs until teed is Ready or Declined.
    pub fn boot(&mut self, kind: BootKind, generation: u32) -> Result<ServerEvent, Stalled> {
        self.boot_id += 1;
        self.hello(kind, generation)
    }

    /// Like [`TeedHarness::boot`] for a teed restarted within the current boot (same boot id).
    pub fn restart(&mut self, kind: BootKind, generation: u32) -> Result<ServerEvent, Stalled> {
        self.hello(kind, generation)
    }

    fn hello(&mut self, kind: BootKind, generation: u32) -> Result<ServerEvent, Stalled> {
        let boot = BootInfo {
            boot_id: self.boot_id,
            kind,
            crash_flag: kind == BootKind::CrashKernel,
        };
        let hello = InitRequest::Hello {
            generation,
            teed_generation: generation,
            boot,
            ram: layout::shm_window(),
            journal: layout::journal_window(),
            windows: ClientWindows::NONE,
            grants: TeedGrants::kinds(false),
        };
        self.events.clear();
        self.teed.handle_init(
            self.now,
            Frame {
                header: Header::new(0, 0, 0),
                body: hello,
            },
        );
        self.run_until(|h| {
            h.events
                .iter()
                .any(|e| matches!(e, ServerEvent::Ready { .. } | ServerEvent::Declined { .. }))
        })?;
        Ok(self
            .events
            .last()
            .cloned()
            .unwrap_or(ServerEvent::Ready { generation }))
    }

    /// Sends Shutdown and runs until the ack.
    pub fn shutdown(&mut self, reason: ShutdownReason) -> Result<ServerEvent, Stalled> {
        self.events.clear();
        let frame = Frame {
            header: Header::new(0, 0, 0),
            body: InitRequest::Shutdown { reason },
        };
        self.teed.handle_init(self.now, frame);
        self.run_until(|h| {
            h.events
                .iter()
                .any(|e| matches!(e, ServerEvent::ShutdownAck(_)))
        })?;
        Ok(self
            .events
            .last()
            .cloned()
            .unwrap_or(ServerEvent::Ready { generation: 0 }))
    }

    /// Connects a client endpoint of `kind`.
    pub fn connect(&mut self, client: ClientId, kind: ServerKind) {
        self.teed.connect_client(client, kind);
    }

    /// Sends a request without waiting; returns its request id.
    pub fn send(&mut self, client: ClientId, body: TeedRequest) -> u32 {
        let id = self.next_request;
        self.next_request += 1;
        let frame = Frame {
            header: Header::new(client.generation, self.teed.generation(), id),
            body,
        };
        self.teed.handle_client(self.now, client, frame);
        id
    }

    /// Sends a request and runs until its reply.
    pub fn request(
        &mut self,
        client: ClientId,
        body: TeedRequest,
    ) -> Result<TeedResponse, Stalled> {
        let id = self.send(client, body);
        self.wait_reply(client, id)
    }

    /// Runs until the reply to request `id` of `client` arrives.
    pub fn wait_reply(&mut self, client: ClientId, id: u32) -> Result<TeedResponse, Stalled> {
        let matches =
            |c: &ClientId, f: &Frame<TeedResponse>| *c == client && f.header.request_id == id;
        self.run_until(|h| h.replies.iter().any(|(c, f)| matches(c, f)))?;
        let at = self
            .replies
            .iter()
            .position(|(c, f)| matches(c, f))
            .unwrap_or(0);
        Ok(self
            .replies
            .remove(at)
            .map(|(_, f)| f.body)
            .unwrap_or(TeedResponse::ShmFreed))
    }

    /// Opens a session to `ta` for `client`.
    pub fn open(&mut self, client: ClientId, ta: Uuid) -> Result<TeedResponse, Stalled> {
        self.request(
            client,
            TeedRequest::OpenSession {
                ta: *ta.as_bytes(),
                login: Login::Public,
            },
        )
    }

    /// Allocates and registers `size` bytes for `client`.
    pub fn alloc(&mut self, client: ClientId, size: u32) -> Result<TeedResponse, Stalled> {
        self.request(client, TeedRequest::ShmAlloc { size })
    }

    /// Frees a buffer of `client`.
    pub fn free(&mut self, client: ClientId, shm: ShmId) -> Result<TeedResponse, Stalled> {
        self.request(client, TeedRequest::ShmFree { shm })
    }

    /// Invokes `func` on a session.
    pub fn invoke(
        &mut self,
        client: ClientId,
        session: u32,
        func: u32,
        params: &[Param],
    ) -> Result<TeedResponse, Stalled> {
        let params = heapless::Vec::from_slice(params).unwrap_or_default();
        self.request(
            client,
            TeedRequest::Invoke {
                session,
                func,
                cancel_id: 0,
                params,
            },
        )
    }

    /// Runs effects (and timers) until `done` holds.
    pub fn run_until(&mut self, done: impl Fn(&TeedHarness) -> bool) -> Result<(), Stalled> {
        for steps in 0..MAX_STEPS {
            if done(self) {
                return Ok(());
            }
            if !self.step() {
                return Err(Stalled {
                    steps,
                    now: self.now,
                });
            }
        }
        Err(Stalled {
            steps: MAX_STEPS,
            now: self.now,
        })
    }

    /// Runs until nothing is left to do.
    pub fn settle(&mut self) {
        for _ in 0..MAX_STEPS {
            if !self.step() {
                return;
            }
        }
    }

    /// Takes a reply that arrived unasked (or is still queued).
    pub fn take_replies(&mut self) -> Vec<(ClientId, Frame<TeedResponse>)> {
        self.replies.drain(..).collect()
    }

    /// One step: an effect, else a held SMC, else a timer. False when nothing is left.
    pub fn step(&mut self) -> bool {
        if let Some(effect) = self.teed.poll() {
            match effect {
                Effect::Smc { token, regs } => {
                    if self.hold_smcs {
                        self.held.push_back((token, regs));
                    } else {
                        self.run_smc(token, regs);
                    }
                }
                Effect::Reply { client, frame } => self.replies.push_back((client, frame)),
                Effect::ToInit(frame) => self.events.push(frame.body),
            }
            return true;
        }
        if !self.hold_smcs {
            if let Some((token, regs)) = self.held.pop_front() {
                self.run_smc(token, regs);
                return true;
            }
        }
        if let Some(at) = self.teed.poll_timeout() {
            self.now = self.now.max(at);
            self.teed.handle_timeout(self.now);
            return true;
        }
        false
    }

    fn run_smc(&mut self, token: teed::SmcToken, regs: optee_abi::smc::Regs) {
        if self.conduit_broken {
            self.teed.conduit_failed(self.now);
            let refused = [
                u64::from(optee_abi::smc::ret::UNKNOWN_FUNCTION),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ];
            self.teed.handle_smc_return(self.now, token, refused);
            return;
        }
        self.smcs += 1;
        if self.watch_cookies {
            self.note_cookie(&regs);
        }
        if let Some(script) = self.script.as_mut() {
            match script(&regs) {
                Twist::Honest => {}
                Twist::Answer(out) => {
                    self.teed.handle_smc_return(self.now, token, out);
                    return;
                }
                Twist::Silent => {
                    self.unanswered.push(token);
                    return;
                }
            }
        }
        let mut ram = self.ram.clone();
        let out = self.secure.smc(&mut ram, regs);
        if self.trace_smcs {
            eprintln!("smc {:x?} -> {:x?}", &regs[..4], &out[..6]);
        }
        self.teed.handle_smc_return(self.now, token, out);
    }

    fn note_cookie(&mut self, regs: &optee_abi::smc::Regs) {
        use optee_abi::msg::{cmd, MsgArg};
        use optee_abi::smc::{func, join_u32_pair};
        let function = regs[0] as u32;
        if let Some(arg_pa) = message_pa(regs, self.teed.arg_pages()) {
            let arg = MsgArg::read_from(&self.ram, arg_pa).ok();
            if let Some(arg) = arg.filter(|a| a.cmd == cmd::REGISTER_SHM) {
                self.cookies_seen.extend(arg.params.first().map(|p| p.c));
            }
        } else if function == func::RETURN_FROM_RPC {
            let cookie = join_u32_pair(regs[4], regs[5]);
            if cookie != 0 {
                self.cookies_seen.push(cookie);
            }
        }
    }
}
