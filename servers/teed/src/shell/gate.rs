//! The SMC gate: teed's function-ID allow-list in front of the conduit.
//!
//! Only the SMC functions the core uses may reach the secure world. Anything else, and every
//! SMC once the conduit has failed, is answered `UNKNOWN_FUNCTION` without touching the
//! conduit, so the core sees a typed refusal and never waits for an answer that cannot come.

use optee_abi::smc::{func, ret, Regs};
use tee_rt::conduit::SmcConduit;

/// The SMC functions teed issues: the probe's fast calls, the cache switches, the yielding-call
/// entries and their RPC return, and (with a modern secure world, `crate::abi`) the
/// notification fast calls.
pub const ALLOWED_FUNCTIONS: [u32; 13] = [
    func::CALLS_UID,
    func::CALLS_REVISION,
    func::GET_OS_REVISION,
    func::EXCHANGE_CAPABILITIES,
    func::GET_THREAD_COUNT,
    func::DISABLE_SHM_CACHE,
    func::ENABLE_SHM_CACHE,
    func::CALL_WITH_ARG,
    func::RETURN_FROM_RPC,
    func::CALL_WITH_RPC_ARG,
    func::CALL_WITH_REGD_ARG,
    func::ENABLE_ASYNC_NOTIF,
    func::GET_ASYNC_NOTIF_VALUE,
];

/// What the gate answers in place of the secure world.
const REFUSED: Regs = [ret::UNKNOWN_FUNCTION as u64, 0, 0, 0, 0, 0, 0, 0];

/// The conduit behind the allow-list.
#[derive(Debug)]
pub struct SmcGate<C: SmcConduit> {
    conduit: C,
    broken: bool,
    refused: u64,
}

impl<C: SmcConduit> SmcGate<C> {
    pub fn new(conduit: C) -> SmcGate<C> {
        SmcGate {
            conduit,
            broken: false,
            refused: 0,
        }
    }

    /// Carries one SMC, or refuses it.
    pub fn call(&mut self, regs: Regs) -> Regs {
        let allowed = u32::try_from(regs[0])
            .ok()
            .filter(|id| ALLOWED_FUNCTIONS.contains(id));
        let Some(function) = allowed else {
            self.refused += 1;
            tracing::error!(
                a0 = format_args!("{:#x}", regs[0]),
                "SMC function not on the allow-list refused"
            );
            return REFUSED;
        };
        if self.broken {
            self.refused += 1;
            return REFUSED;
        }
        match self.conduit.call(regs) {
            Ok(answer) => answer,
            Err(error) => {
                // The stream may be out of step or gone: no later frame can be trusted.
                tracing::error!(%error, function = format_args!("{function:#x}"), "SMC conduit failed; refusing every further SMC");
                self.broken = true;
                self.refused += 1;
                REFUSED
            }
        }
    }

    /// Whether the conduit has failed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The conduit itself (to watch it between SMCs).
    pub fn conduit(&self) -> &C {
        &self.conduit
    }

    /// The conduit was found dead between SMCs: refuse every further SMC.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// SMCs answered by the gate instead of the secure world.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tee_rt::conduit::ConduitError;

    /// Records what reached the secure world; fails after `fail_after` calls.
    struct Recorder {
        seen: Vec<u64>,
        fail_after: usize,
    }

    impl SmcConduit for Recorder {
        fn call(&mut self, regs: Regs) -> Result<Regs, ConduitError> {
            if self.seen.len() == self.fail_after {
                return Err(ConduitError::Closed);
            }
            self.seen.push(regs[0]);
            Ok([0, regs[0], 0, 0, 0, 0, 0, 0])
        }
    }

    fn gate(fail_after: usize) -> SmcGate<Recorder> {
        SmcGate::new(Recorder {
            seen: Vec::new(),
            fail_after,
        })
    }

    #[test]
    fn allowed_functions_pass_through_untouched() {
        let mut gate = gate(usize::MAX);
        for id in ALLOWED_FUNCTIONS {
            let answer = gate.call([u64::from(id), 1, 2, 3, 4, 5, 6, 7]);
            assert_eq!(answer[1], u64::from(id));
        }
        let expected: Vec<u64> = ALLOWED_FUNCTIONS.iter().map(|id| u64::from(*id)).collect();
        assert_eq!(gate.conduit.seen, expected);
        assert_eq!(gate.refused(), 0);
    }

    #[test]
    fn other_functions_never_reach_the_conduit() {
        let mut gate = gate(usize::MAX);
        // Defined OP-TEE functions teed has no business calling, and garbage.
        for a0 in [
            u64::from(func::VM_CREATED),
            u64::from(func::VM_DESTROYED),
            u64::from(func::GET_SHM_CONFIG),
            u64::from(func::GET_OS_UUID),
            0,
            u64::from(func::CALLS_UID) | (1 << 32),
        ] {
            assert_eq!(gate.call([a0, 0, 0, 0, 0, 0, 0, 0]), REFUSED);
        }
        assert!(gate.conduit.seen.is_empty());
        assert_eq!(gate.refused(), 6);
        assert!(!gate.is_broken());
    }

    #[test]
    fn a_failed_conduit_refuses_everything_after() {
        let mut gate = gate(1);
        let uid = u64::from(func::CALLS_UID);
        assert_eq!(gate.call([uid, 0, 0, 0, 0, 0, 0, 0])[1], uid);
        assert_eq!(gate.call([uid, 0, 0, 0, 0, 0, 0, 0]), REFUSED);
        assert!(gate.is_broken());
        assert_eq!(gate.call([uid, 0, 0, 0, 0, 0, 0, 0]), REFUSED);
        assert_eq!(gate.conduit.seen.len(), 1);
        assert_eq!(gate.refused(), 2);
    }
}
