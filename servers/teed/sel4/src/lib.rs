//! teed's SMC conduit on seL4: one badged ARM SMC capability per function id teed issues.
//!
//! seL4 ≥ 13.0.0 with `KernelAllowSMCCalls` gives the root task a global SMC capability
//! (`seL4_CapSMC`); minted with a badge, a copy admits only the SMC whose x0 equals the badge
//! (seL4 `src/arch/arm/object/smc.c`: otherwise `seL4_IllegalOperation`). The system's builder
//! mints one per function id in [`TEED_FUNCTIONS`] into teed's CSpace and gives teed their
//! slots; teed holds nothing else that reaches the secure world, so its allow-list is enforced by
//! the kernel, and [`smc_caps::CapConduit`] refuses any other id before a system call.
//!
//! Written against rust-sel4's `sel4-sys` (v5.0.0, seL4 16.0.0): rust-sel4 has no typed SMC
//! call, so this uses the generated `seL4_IPCBuffer::seL4_ARM_SMC_Call`. Neither seL4 nor
//! rust-sel4 is on a package registry: `cargo xtask check-sel4` type-checks this crate against
//! the user's seL4 build and rust-sel4 checkout, and says how to get them otherwise. Nothing here
//! runs in the default test run.
#![no_std]

use core::fmt;
use core::ptr::NonNull;

use optee_abi::smc::Regs;
use sel4_sys::{seL4_ARM_SMC, seL4_ARM_SMCContext, seL4_CPtr, seL4_Error, seL4_IPCBuffer};
pub use smc_caps::{CapConduit, GrantError, SmcCap, TEED_FUNCTIONS};

/// The calling thread's IPC buffer, which seL4's SMC invocation passes x0..x7 through (eight
/// message registers, more than aarch64's hardware message registers).
#[derive(Debug, Clone, Copy)]
pub struct IpcBuffer(NonNull<seL4_IPCBuffer>);

impl IpcBuffer {
    /// The IPC buffer at `ptr` (the runtime's: a root task gets it from its boot info, a
    /// Microkit protection domain from its linker symbol).
    ///
    /// # Safety
    /// `ptr` is the IPC buffer of the thread that will use every capability made with it, valid
    /// for as long as they are, and used by nothing else while an SMC is in flight.
    pub unsafe fn new(ptr: *mut seL4_IPCBuffer) -> Option<IpcBuffer> {
        NonNull::new(ptr).map(IpcBuffer)
    }
}

/// The kernel refused an SMC invocation (a badge that differs from x0, a revoked capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelError(pub seL4_Error::Type);

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seL4_ARM_SMC_Call failed with seL4_Error {}", self.0)
    }
}

/// One badged SMC capability.
#[derive(Debug)]
pub struct BadgedSmc {
    cap: seL4_ARM_SMC,
    ipc: IpcBuffer,
}

impl SmcCap for BadgedSmc {
    type Error = KernelError;

    fn call(&mut self, regs: &Regs) -> Result<Regs, KernelError> {
        let args = seL4_ARM_SMCContext {
            x0: regs[0],
            x1: regs[1],
            x2: regs[2],
            x3: regs[3],
            x4: regs[4],
            x5: regs[5],
            x6: regs[6],
            x7: regs[7],
        };
        let mut answer = seL4_ARM_SMCContext {
            x0: 0,
            x1: 0,
            x2: 0,
            x3: 0,
            x4: 0,
            x5: 0,
            x6: 0,
            x7: 0,
        };
        // SAFETY: `IpcBuffer::new`'s contract: this thread's buffer, not in use elsewhere.
        let ipc = unsafe { &mut *self.ipc.0.as_ptr() };
        let error = ipc.seL4_ARM_SMC_Call(self.cap, &args, &mut answer);
        if error != seL4_Error::seL4_NoError {
            return Err(KernelError(error));
        }
        Ok([
            answer.x0, answer.x1, answer.x2, answer.x3, answer.x4, answer.x5, answer.x6, answer.x7,
        ])
    }
}

/// teed's conduit from the slots of its badged SMC capabilities, one per entry of
/// [`TEED_FUNCTIONS`] and in that order (slot `slots[i]` holds the capability badged
/// `TEED_FUNCTIONS[i]`).
pub fn conduit(
    ipc: IpcBuffer,
    slots: [seL4_CPtr; TEED_FUNCTIONS.len()],
) -> Result<CapConduit<BadgedSmc>, GrantError> {
    let mut conduit = CapConduit::new();
    for (id, cap) in TEED_FUNCTIONS.into_iter().zip(slots) {
        conduit.grant(id, BadgedSmc { cap, ipc })?;
    }
    Ok(conduit)
}
