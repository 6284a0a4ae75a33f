//! What was in flight at the instant a fault lands, read off the machine without touching it.
//!
//! [`Observed::of`] gathers the facts (init's view, the client cores' jobs, teed's outstanding
//! calls, the secure threads, the wires); [`Observed::phases`] names the phases from those
//! facts alone, so a test can construct facts and check what they are called.

use secure_world::{SuspendReason, ThreadState};
use teed::types::Purpose;
use teed::AbiCall;
use teesys_init::{Phase, SupervisedState};

use super::net::Channel;
use super::Sim;
use crate::coverage::{Fault, InFlight, Phases};

/// Secure threads suspended, by the RPC they wait on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Suspended {
    pub alloc: usize,
    pub free: usize,
    pub cmd: usize,
    pub foreign_intr: usize,
}

impl Suspended {
    pub fn total(&self) -> usize {
        self.alloc + self.free + self.cmd + self.foreign_intr
    }
}

/// What teed's outstanding calls are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub outstanding: usize,
    pub register: bool,
    pub unregister: bool,
    pub session: bool,
    pub invoke: bool,
    pub orphan: bool,
    pub arg_pages: bool,
    /// Calls parked with their thread suspended (SUSPEND, NOTIFICATION WAIT).
    pub sleeping: usize,
}

/// The facts the phases are named from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub init_phase: Phase,
    /// A server is starting, or waits out its restart backoff.
    pub server_starting: bool,
    /// The running boot is the crash kernel's (or inherited the crash flag).
    pub crash_boot: bool,
    /// tpmd or bnxtd has a consumer's job, or one is on its way to them.
    pub client_job: bool,
    /// An SMC or its returned registers are on the conduit.
    pub smc_on_wire: bool,
    /// teed runs.
    pub teed_running: bool,
    /// teed is probing (started, not yet serving or declined).
    pub teed_probing: bool,
    pub calls: Calls,
    /// teed reads an asynchronous notification, runs its bottom half or stops them.
    pub notification: bool,
    pub suspended: Suspended,
}

impl Observed {
    /// Reads the facts off the machine.
    pub fn of(sim: &Sim) -> Observed {
        let view = sim.init.snapshot();
        let server_starting = view.servers.iter().any(|s| {
            matches!(
                s.state,
                SupervisedState::Starting { .. } | SupervisedState::RestartPending { .. }
            )
        });
        let crash_boot = view
            .boot
            .is_some_and(|b| b.crash_flag || b.kind == tee_proto::lifecycle::BootKind::CrashKernel);
        let client_job = sim.tpmd.as_ref().is_some_and(|p| p.core.has_active_job())
            || sim.bnxtd.as_ref().is_some_and(|p| p.core.has_active_job())
            || sim.net.has(Channel::ConsumerToTpmd)
            || sim.net.has(Channel::NicToBnxtd);
        let smc_on_wire = sim.net.has(Channel::SmcCall) || sim.net.has(Channel::SmcReturn);
        let mut calls = Calls::default();
        let mut notification = false;
        let mut teed_probing = false;
        if let Some(teed) = sim.teed.as_ref() {
            teed_probing = !teed.is_serving()
                && !teed.has_served()
                && teed.declined().is_none()
                && !teed.is_stopped();
            notification = teed.notification_in_flight();
            calls.sleeping = teed.sleeping_calls();
            for purpose in teed.call_purposes() {
                calls.outstanding += 1;
                match purpose {
                    Purpose::Register { .. } | Purpose::RegisterPrivate { .. } => {
                        calls.register = true
                    }
                    Purpose::Unregister { .. }
                    | Purpose::ReclaimRegistration { .. }
                    | Purpose::UnregisterPrivate { .. } => calls.unregister = true,
                    Purpose::OpenSession { .. }
                    | Purpose::CloseSession { .. }
                    | Purpose::ReclaimSession { .. } => calls.session = true,
                    Purpose::Invoke { .. } | Purpose::Cancel { .. } => calls.invoke = true,
                    Purpose::Orphan { .. } => calls.orphan = true,
                    Purpose::Abi(AbiCall::RegisterArgs { .. } | AbiCall::UnregisterArgs { .. }) => {
                        calls.arg_pages = true
                    }
                    Purpose::Abi(AbiCall::StopNotif | AbiCall::BottomHalf) => notification = true,
                }
            }
        }
        let mut suspended = Suspended::default();
        for thread in sim.secure.threads().threads {
            match thread.state {
                ThreadState::Suspended(SuspendReason::RpcAlloc) => suspended.alloc += 1,
                ThreadState::Suspended(SuspendReason::RpcFree) => suspended.free += 1,
                ThreadState::Suspended(SuspendReason::RpcCmd) => suspended.cmd += 1,
                ThreadState::Suspended(SuspendReason::ForeignIntr) => suspended.foreign_intr += 1,
                ThreadState::Free | ThreadState::Active => {}
            }
        }
        Observed {
            init_phase: view.phase,
            server_starting,
            crash_boot,
            client_job,
            smc_on_wire,
            teed_running: sim.teed.is_some(),
            teed_probing,
            calls,
            notification,
            suspended,
        }
    }

    /// The phases these facts make live; `Idle` when none is.
    pub fn phases(&self) -> Phases {
        let mut phases = Phases::default();
        let mut live = |yes: bool, phase: InFlight| {
            if yes {
                phases.insert(phase);
            }
        };
        let running = matches!(self.init_phase, Phase::Booting | Phase::Running);
        live(
            self.init_phase == Phase::Booting || self.server_starting || self.teed_probing,
            InFlight::Starting,
        );
        live(
            self.init_phase == Phase::ShuttingDown,
            InFlight::ShutdownDraining,
        );
        live(running && self.crash_boot, InFlight::CrashKernel);
        live(self.client_job, InFlight::ClientRequest);
        live(self.smc_on_wire, InFlight::TeedSmc);
        let c = &self.calls;
        live(c.register, InFlight::Register);
        live(c.unregister, InFlight::Unregister);
        live(c.session, InFlight::Session);
        live(c.invoke, InFlight::Invoke);
        let s = &self.suspended;
        live(s.alloc > 0, InFlight::RpcAlloc);
        live(s.free > 0, InFlight::RpcFree);
        live(s.cmd > 0, InFlight::RpcCmd);
        live(s.foreign_intr > 0, InFlight::ForeignIntr);
        live(c.sleeping > 0, InFlight::Sleeping);
        // More threads suspended than teed has calls out: some belong to no call of its own.
        live(c.orphan || s.total() > c.outstanding, InFlight::Orphaned);
        live(c.arg_pages, InFlight::ArgPages);
        live(self.notification, InFlight::AsyncNotif);
        if phases.is_empty() {
            phases.insert(InFlight::Idle);
        }
        phases
    }

    /// Whether `fault` takes effect now, rather than being refused or finding nothing to hit.
    pub fn lands(&self, fault: Fault, sim: &Sim) -> bool {
        let running = matches!(self.init_phase, Phase::Booting | Phase::Running);
        match fault {
            Fault::Kexec | Fault::Reset => running,
            Fault::CrashWithShutdown | Fault::CrashWithoutShutdown => {
                running || self.init_phase == Phase::ShuttingDown
            }
            Fault::Kill(server) => match server {
                tee_proto::lifecycle::ServerKind::Teed => self.teed_running,
                tee_proto::lifecycle::ServerKind::Tpmd => sim.tpmd.is_some(),
                tee_proto::lifecycle::ServerKind::Bnxtd => sim.bnxtd.is_some(),
            },
            Fault::Restart(server) => {
                running && sim.init.snapshot().server(server).state != SupervisedState::NotStarted
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled() -> Observed {
        Observed {
            init_phase: Phase::Running,
            server_starting: false,
            crash_boot: false,
            client_job: false,
            smc_on_wire: false,
            teed_running: true,
            teed_probing: false,
            calls: Calls::default(),
            notification: false,
            suspended: Suspended::default(),
        }
    }

    #[test]
    fn a_settled_machine_is_idle() {
        let phases = settled().phases();
        assert_eq!(phases.iter().collect::<Vec<_>>(), [InFlight::Idle]);
    }

    #[test]
    fn an_invocation_suspended_in_an_rpc_is_both() {
        let mut o = settled();
        o.client_job = true;
        o.calls.outstanding = 1;
        o.calls.invoke = true;
        o.suspended.cmd = 1;
        let phases: Vec<_> = o.phases().iter().collect();
        assert_eq!(
            phases,
            [InFlight::ClientRequest, InFlight::Invoke, InFlight::RpcCmd]
        );
    }

    #[test]
    fn a_thread_no_call_owns_is_orphaned() {
        let mut o = settled();
        o.teed_running = false;
        o.suspended.alloc = 1;
        assert!(o.phases().contains(InFlight::Orphaned));
        assert!(o.phases().contains(InFlight::RpcAlloc));
        // The same thread behind teed's own call is not.
        o.teed_running = true;
        o.calls.outstanding = 1;
        o.calls.register = true;
        assert!(!o.phases().contains(InFlight::Orphaned));
    }

    #[test]
    fn a_shutdown_in_the_crash_kernel_is_draining_not_serving() {
        let mut o = settled();
        o.crash_boot = true;
        assert!(o.phases().contains(InFlight::CrashKernel));
        o.init_phase = Phase::ShuttingDown;
        o.calls.outstanding = 1;
        o.calls.unregister = true;
        let phases: Vec<_> = o.phases().iter().collect();
        assert_eq!(phases, [InFlight::ShutdownDraining, InFlight::Unregister]);
    }
}
