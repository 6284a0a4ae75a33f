//! teed's hosted shell: the adapter between the sans-IO core and the process world, run by
//! the one hosted serve loop (`tee_rt::serve`).
//!
//! * init's `Hello` grants [`TeedGrants`]: the SMC conduit (a stream socket to the secure world)
//!   and the RAM file; each `ClientEndpoint` brings the teed side of one client incarnation's
//!   endpoint pair.
//! * Every `Effect::Smc` runs at once and synchronously on the conduit, behind the allow-list
//!   ([`gate`]), and its answer goes straight back into the core: one conduit, so SMCs stay
//!   in the order the core asked for them.
//! * A client endpoint that closes is a disconnected client.
//! * Endpoints are non-blocking: a frame a peer has no room for is dropped with a warning and
//!   left to that peer's deadlines, so teed never blocks on a client or on init.

mod clients;
mod gate;

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Duration;

use tee_proto::grants::{Grant, GrantError, TeedGrants};
use tee_proto::lifecycle::{ClientId, InitRequest, RamWindow, ServerKind};
use tee_proto::teed::TeedResponse;
use tee_proto::{accept_request, Frame, Generation, Incoming, Interface, LifecycleInterface};
use tee_proto::{TeedInterface, FRAME_MAX};
use tee_rt::clock::Millis;
use tee_rt::event::{PollSet, Readiness};
use tee_rt::ram::RamFile;
use tee_rt::serve::{single_endpoint, Handler, Io, StartError};
use tee_rt::server::map_ram_for;
use tee_rt::virtio_port::GrantedConduit;
use teed::{Effect, Teed, TeedConfig};

use self::clients::ClientEndpoints;
use self::gate::SmcGate;

/// The conduit's poll token (the serve loop's is 0; clients' are far above).
const CONDUIT: tee_rt::event::Token = tee_rt::event::Token(1);

/// Bound on one conduit read or write. The secure world answers every SMC at once (a yielding
/// call comes back as an RPC), so silence this long means it is gone or wedged.
const CONDUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs teed on the lifecycle endpoint init gave it.
pub fn run() -> ExitCode {
    tee_rt::serve::main::<TeedShell>(config())
}

/// The production configuration; a `seed-bugs` build (a QEMU test build, never a release
/// artifact) runs the Linux 5.13 behaviour of the bnxt seed instead: no hardening, bnxtd's
/// buffer dma-buf backed (drivers/firmware/broadcom/tee_bnxt_fw.c before 914ab19e471d).
fn config() -> TeedConfig {
    #[allow(unused_mut)]
    let mut config = TeedConfig::new();
    #[cfg(feature = "seed-bugs")]
    {
        config.hardening = teed::Hardening::LINUX;
        config.seed_bugs.bnxtd_dma_buf = true;
        tracing::warn!("seed-bugs build: the Linux 5.13 behaviour, not for use");
    }
    config
}

/// The state of the running shell.
pub struct TeedShell {
    core: Teed<RamFile>,
    gate: SmcGate<GrantedConduit>,
    clients: ClientEndpoints,
    /// One receive buffer for every client packet, so a request costs no allocation.
    rx: Box<[u8]>,
}

impl Handler for TeedShell {
    const KIND: ServerKind = ServerKind::Teed;
    type Config = TeedConfig;
    type Grants = TeedGrants<OwnedFd>;

    fn start(
        config: TeedConfig,
        hello: &Frame<InitRequest>,
        grants: TeedGrants<OwnedFd>,
    ) -> Result<TeedShell, StartError> {
        // A stream socket hosted, the virtio port in the QEMU guest (tee_rt::virtio_port).
        let conduit = GrantedConduit::from_grant(grants.conduit, CONDUIT_TIMEOUT)
            .map_err(StartError::grant("conduit"))?;
        let mut ram = map_ram_for(grants.ram, &hello.body)?;
        if let InitRequest::Hello {
            ram: frames,
            journal,
            windows,
            ..
        } = hello.body
        {
            warn_outside_ram(&ram, "frame window", frames);
            warn_outside_ram(&ram, "journal", journal);
            // teed sees each client's window where the secure world sees it: in place.
            if let Some(granted) = &grants.windows {
                for (kind, grant, fd) in [
                    (ServerKind::Tpmd, Grant::TpmdWindow, &granted.tpmd),
                    (ServerKind::Bnxtd, Grant::BnxtdWindow, &granted.bnxtd),
                ] {
                    // A window granted but not placed by Hello is one teed cannot use.
                    let window = windows
                        .of(kind)
                        .ok_or(StartError::Grants(GrantError::Unexpected(grant)))?;
                    ram.overlay(window.base, window.len, fd)?;
                }
            }
        }
        Ok(TeedShell {
            core: Teed::new(config, ram),
            gate: SmcGate::new(conduit),
            clients: ClientEndpoints::default(),
            rx: vec![0u8; FRAME_MAX].into_boxed_slice(),
        })
    }

    fn generation(&self) -> Generation {
        self.core.generation()
    }

    fn is_stopped(&self) -> bool {
        self.core.is_stopped()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.core.poll_timeout()
    }

    fn on_init(&mut self, io: &Io<'_>, frame: Frame<InitRequest>, attached: Vec<OwnedFd>) {
        if let InitRequest::ClientEndpoint { client, generation } = frame.body {
            let id = ClientId::new(client, generation);
            let Some((id, endpoint)) = id.zip(single_endpoint(attached)) else {
                tracing::warn!(?client, generation, "ClientEndpoint refused");
                io.to_init(&Frame {
                    header: frame.header.reply_to(self.core.generation()),
                    body: LifecycleInterface::bad_request(),
                });
                return;
            };
            if self.clients.insert(id, endpoint) {
                tracing::warn!(client = %id, "client endpoint replaced");
            }
            tracing::info!(client = %id, clients = self.clients.len(), "client connected");
            self.core.connect_client(id, client);
        }
        self.core.handle_init(io.now(), frame);
        self.carry_out(io);
    }

    fn on_timeout(&mut self, io: &Io<'_>) {
        self.core.handle_timeout(io.now());
        self.carry_out(io);
    }

    fn register<'a>(&'a self, set: &mut PollSet<'a>) {
        // Between SMCs the conduit is silent; anything it shows (end of stream, an error,
        // bytes out of step) means the secure world is gone, and teed says so at once rather
        // than at its next SMC.
        if !self.gate.is_broken() {
            set.register(
                self.gate.conduit().as_fd(),
                CONDUIT,
                tee_rt::event::Interest::READABLE,
            );
        }
        self.clients.register(set);
    }

    fn on_ready(&mut self, io: &Io<'_>, readiness: &Readiness) {
        if readiness.token == CONDUIT {
            tracing::error!("the secure world hung up the conduit");
            self.gate.mark_broken();
            self.core.conduit_failed(io.now());
            self.carry_out(io);
        } else if let Some(client) = self.clients.classify(readiness.token) {
            self.on_client(io, client);
        }
    }

    fn farewell(&self) {
        tracing::info!(
            refused_smcs = self.gate.refused(),
            conduit_broken = self.gate.is_broken(),
            stats = ?self.core.stats(),
            "incarnation ends"
        );
    }
}

/// The core would find out page by page; say it once, up front.
fn warn_outside_ram(ram: &RamFile, what: &str, window: RamWindow) {
    use optee_abi::mem::PhysMem;
    if window.len > 0 && !ram.contains(window.base, window.len) {
        tracing::warn!(
            what,
            base = format_args!("{:#x}", window.base),
            len = window.len,
            "Hello names memory outside the RAM file"
        );
    }
}

impl TeedShell {
    /// Takes one packet from a client endpoint. poll(2) is level-triggered, so a packet still
    /// queued brings the next turn; a lockstep client's request costs no second recvmsg that
    /// would only answer EAGAIN (measured: one syscall in eight of a TPM command's here).
    fn on_client(&mut self, io: &Io<'_>, client: ClientId) {
        loop {
            let Some(endpoint) = self.clients.get(client) else {
                return;
            };
            let (len, fds) = match endpoint.recv(&mut self.rx) {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    tracing::info!(%client, "client endpoint closed");
                    self.clients.remove(client);
                    self.core.client_disconnected(io.now(), client);
                    self.carry_out(io);
                    return;
                }
                Err(error) if error.is_would_block() => return,
                Err(error) => {
                    tracing::warn!(%client, %error, "client packet refused");
                    continue;
                }
            };
            if !fds.is_empty() {
                tracing::warn!(%client, count = fds.len(), "attachments from a client closed");
            }
            match accept_request::<TeedInterface>(&self.rx[..len], self.core.generation()) {
                Incoming::Request(frame) => {
                    self.core.handle_client(io.now(), client, frame);
                    self.carry_out(io);
                }
                Incoming::Answer(answer) => self.reply(client, &answer),
                Incoming::Drop(error) => {
                    tracing::warn!(%client, %error, "undecodable client packet dropped");
                }
            }
            return;
        }
    }

    fn reply(&self, client: ClientId, frame: &Frame<TeedResponse>) {
        let Some(endpoint) = self.clients.get(client) else {
            tracing::debug!(%client, "reply for a client that left dropped");
            return;
        };
        if let Err(error) = endpoint.send_frame(frame, &[]) {
            tracing::warn!(%client, %error, "reply dropped");
        }
    }

    /// Carries out everything the core asked for; SMCs run at once, in order.
    fn carry_out(&mut self, io: &Io<'_>) {
        while let Some(effect) = self.core.poll() {
            match effect {
                Effect::Smc { token, regs } => {
                    let answer = self.gate.call(regs);
                    let now = io.now();
                    // The core hears of a lost conduit before the refusal, so it can tell an
                    // unreachable secure world from an incompatible one.
                    if self.gate.is_broken() {
                        self.core.conduit_failed(now);
                    }
                    self.core.handle_smc_return(now, token, answer);
                }
                Effect::Reply { client, frame } => self.reply(client, &frame),
                Effect::ToInit(frame) => io.to_init(&frame),
            }
        }
    }
}
