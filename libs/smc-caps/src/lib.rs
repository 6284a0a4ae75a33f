//! teed's SMC conduit where the kernel grants the right to issue one SMC function id per
//! capability: seL4's badged ARM SMC capabilities (seL4 ≥ 13, `src/arch/arm/object/smc.c`: a
//! badge other than 0 admits only the function id equal to it), and the kernel `smc` scheme a
//! Redox teed needs (`libs/tee-redox/SMC.md`), whose handles are opened one per function id.
//!
//! The allow-list is then the set of capabilities teed holds: an SMC whose function id has no
//! capability never reaches the kernel and is answered `UNKNOWN_FUNCTION`, as the hosted shell's
//! gate does (`servers/teed/src/shell/gate.rs`), and a capability that fails once (the kernel
//! refused it, the handle died) refuses every later SMC, so the core sees a typed refusal rather
//! than waiting for an answer that cannot come. No IO here: a platform implements [`SmcCap`].
#![no_std]

extern crate alloc;

use alloc::vec::Vec;

use optee_abi::smc::{func, ret, Regs};

/// Bytes of one register frame on a byte transport: a0..a7, little-endian u64 each.
pub const FRAME_BYTES: usize = 64;

/// The SMC functions teed issues, so the capabilities it asks its kernel for: the probe's fast
/// calls, the cache switches, and the yielding-call entry and its RPC return. The same list as
/// the hosted gate's allow-list.
pub const TEED_FUNCTIONS: [u32; 9] = [
    func::CALLS_UID,
    func::CALLS_REVISION,
    func::GET_OS_REVISION,
    func::EXCHANGE_CAPABILITIES,
    func::GET_THREAD_COUNT,
    func::DISABLE_SHM_CACHE,
    func::ENABLE_SHM_CACHE,
    func::CALL_WITH_ARG,
    func::RETURN_FROM_RPC,
];

/// What teed hears in place of the secure world for a refused SMC.
pub const REFUSED: Regs = [ret::UNKNOWN_FUNCTION as u64, 0, 0, 0, 0, 0, 0, 0];

/// Encodes registers as one 64-byte frame.
pub fn encode(regs: &Regs) -> [u8; FRAME_BYTES] {
    let mut frame = [0u8; FRAME_BYTES];
    for (chunk, reg) in frame.chunks_exact_mut(8).zip(regs) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    frame
}

/// Decodes one 64-byte frame into registers.
pub fn decode(frame: &[u8; FRAME_BYTES]) -> Regs {
    let mut regs = [0u64; 8];
    for (reg, chunk) in regs.iter_mut().zip(frame.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *reg = u64::from_le_bytes(word);
    }
    regs
}

/// One capability to issue exactly one SMC function id (the one it was granted for).
pub trait SmcCap {
    /// Why the kernel did not carry the SMC.
    type Error: core::fmt::Display;

    /// Issues the SMC with `regs` (a0 is the capability's function id) and returns a0..a7.
    fn call(&mut self, regs: &Regs) -> Result<Regs, Self::Error>;
}

/// A capability could not be added to the conduit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// teed never issues this function, so it must not hold a capability for it.
    #[error("function {0:#x} is not one teed issues")]
    NotTeedFunction(u32),
    /// A capability for this function is already held.
    #[error("a capability for function {0:#x} is already held")]
    Duplicate(u32),
}

/// teed's conduit: one capability per allowed function id.
#[derive(Debug)]
pub struct CapConduit<C> {
    caps: Vec<(u32, C)>,
    broken: bool,
    refused: u64,
}

impl<C> Default for CapConduit<C> {
    fn default() -> Self {
        CapConduit {
            caps: Vec::new(),
            broken: false,
            refused: 0,
        }
    }
}

impl<C: SmcCap> CapConduit<C> {
    /// A conduit holding no capability: every SMC is refused until [`CapConduit::grant`].
    pub fn new() -> CapConduit<C> {
        CapConduit::default()
    }

    /// Adds the capability for function `id`.
    pub fn grant(&mut self, id: u32, cap: C) -> Result<(), GrantError> {
        if !TEED_FUNCTIONS.contains(&id) {
            return Err(GrantError::NotTeedFunction(id));
        }
        if self.holds(id) {
            return Err(GrantError::Duplicate(id));
        }
        self.caps.push((id, cap));
        Ok(())
    }

    /// Whether a capability for function `id` is held.
    pub fn holds(&self, id: u32) -> bool {
        self.caps.iter().any(|(held, _)| *held == id)
    }

    /// The function ids teed issues but holds no capability for.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        TEED_FUNCTIONS.into_iter().filter(|id| !self.holds(*id))
    }

    /// Carries one SMC through the capability for its function id, or refuses it. A function
    /// teed issues but holds no capability for (the kernel never granted it) leaves teed with
    /// no usable conduit: it breaks the conduit as a failed capability does, so the core hears
    /// "secure world unavailable" rather than "incompatible".
    pub fn call(&mut self, regs: Regs) -> Regs {
        let function = u32::try_from(regs[0]).ok();
        let cap = function.and_then(|id| self.caps.iter_mut().find(|(held, _)| *held == id));
        let Some((id, cap)) = cap else {
            self.refused += 1;
            if function.is_some_and(|id| TEED_FUNCTIONS.contains(&id)) {
                if !self.broken {
                    tracing::error!(
                        a0 = format_args!("{:#x}", regs[0]),
                        "no capability for a function teed needs; refusing every SMC"
                    );
                }
                self.broken = true;
            } else {
                tracing::error!(
                    a0 = format_args!("{:#x}", regs[0]),
                    "SMC function without a capability refused"
                );
            }
            return REFUSED;
        };
        if self.broken {
            self.refused += 1;
            return REFUSED;
        }
        match cap.call(&regs) {
            Ok(answer) => answer,
            Err(error) => {
                tracing::error!(%error, function = format_args!("{id:#x}"), "SMC capability failed; refusing every further SMC");
                self.broken = true;
                self.refused += 1;
                REFUSED
            }
        }
    }

    /// Whether a capability has failed (no SMC reaches the secure world any more).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// SMCs answered by the conduit instead of the secure world.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A capability for one function id that checks a0 as seL4's smc.c does for a badge, and
    /// records what reached it; fails after `fail_after` calls.
    struct Badged {
        id: u32,
        seen: usize,
        fail_after: usize,
    }

    impl SmcCap for Badged {
        type Error = &'static str;
        fn call(&mut self, regs: &Regs) -> Result<Regs, &'static str> {
            if regs[0] != u64::from(self.id) {
                return Err("illegal operation: badge differs from x0");
            }
            if self.seen == self.fail_after {
                return Err("handle gone");
            }
            self.seen += 1;
            Ok([0, regs[0], regs[1], 0, 0, 0, 0, 0])
        }
    }

    fn conduit(fail_after: usize) -> CapConduit<Badged> {
        let mut conduit = CapConduit::new();
        for id in TEED_FUNCTIONS {
            conduit
                .grant(
                    id,
                    Badged {
                        id,
                        seen: 0,
                        fail_after,
                    },
                )
                .unwrap();
        }
        conduit
    }

    /// optee_smc.h: a0..a7; the conduit frame of every teesys transport (tee-rt `conduit.rs`).
    #[test]
    fn frames_are_eight_little_endian_words() {
        let regs = [1, 2, 3, 4, 5, 6, 7, u64::MAX];
        let frame = encode(&regs);
        assert_eq!(&frame[..8], &1u64.to_le_bytes());
        assert_eq!(&frame[56..], &[0xff; 8]);
        assert_eq!(decode(&frame), regs);
    }

    /// The hosted gate's allow-list semantics (servers/teed/src/shell/gate.rs) on capabilities:
    /// each allowed id reaches its own capability, registers intact.
    #[test]
    fn each_allowed_function_goes_through_its_own_capability() {
        let mut conduit = conduit(usize::MAX);
        for id in TEED_FUNCTIONS {
            let answer = conduit.call([u64::from(id), 42, 0, 0, 0, 0, 0, 0]);
            assert_eq!(answer[1], u64::from(id));
            assert_eq!(answer[2], 42);
        }
        assert!(conduit.caps.iter().all(|(_, cap)| cap.seen == 1));
        assert_eq!(conduit.refused(), 0);
    }

    /// seL4 `smc.c`: a badged capability admits one function id; the others never reach it.
    #[test]
    fn functions_without_a_capability_never_reach_one() {
        let mut conduit = conduit(usize::MAX);
        for a0 in [
            u64::from(func::VM_CREATED),
            u64::from(func::GET_SHM_CONFIG),
            u64::from(func::CALL_WITH_REGD_ARG),
            0,
            u64::from(func::CALLS_UID) | (1 << 32),
        ] {
            assert_eq!(conduit.call([a0, 0, 0, 0, 0, 0, 0, 0]), REFUSED);
        }
        assert!(conduit.caps.iter().all(|(_, cap)| cap.seen == 0));
        assert_eq!(conduit.refused(), 5);
        assert!(!conduit.is_broken());
    }

    /// As the hosted gate (servers/teed/src/shell/gate.rs): after a failure no SMC is trusted.
    #[test]
    fn a_failed_capability_refuses_everything_after() {
        let mut conduit = conduit(1);
        let uid = u64::from(func::CALLS_UID);
        assert_eq!(conduit.call([uid, 0, 0, 0, 0, 0, 0, 0])[1], uid);
        assert_eq!(conduit.call([uid, 0, 0, 0, 0, 0, 0, 0]), REFUSED);
        assert!(conduit.is_broken());
        // Another function's capability is untouched: the conduit as a whole is given up.
        let revision = u64::from(func::CALLS_REVISION);
        assert_eq!(conduit.call([revision, 0, 0, 0, 0, 0, 0, 0]), REFUSED);
        assert_eq!(conduit.refused(), 2);
    }

    /// seL4 `smc.c`: one badge per capability, so one capability per function id.
    #[test]
    fn grants_only_teed_functions_once_each() {
        let mut conduit: CapConduit<Badged> = CapConduit::new();
        let cap = |id| Badged {
            id,
            seen: 0,
            fail_after: usize::MAX,
        };
        assert_eq!(
            conduit.grant(func::VM_CREATED, cap(func::VM_CREATED)),
            Err(GrantError::NotTeedFunction(func::VM_CREATED))
        );
        conduit
            .grant(func::CALL_WITH_ARG, cap(func::CALL_WITH_ARG))
            .unwrap();
        assert_eq!(
            conduit.grant(func::CALL_WITH_ARG, cap(func::CALL_WITH_ARG)),
            Err(GrantError::Duplicate(func::CALL_WITH_ARG))
        );
        assert_eq!(conduit.missing().count(), TEED_FUNCTIONS.len() - 1);
        // Without its capability a function teed needs is refused, and teed has no conduit.
        let uid = u64::from(func::CALLS_UID);
        assert_eq!(conduit.call([uid, 0, 0, 0, 0, 0, 0, 0]), REFUSED);
        assert!(conduit.is_broken());
        let call = u64::from(func::CALL_WITH_ARG);
        assert_eq!(conduit.call([call, 0, 0, 0, 0, 0, 0, 0]), REFUSED);
    }
}
