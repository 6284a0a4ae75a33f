//! Seed bug 376e4199e327: driver-private RPC buffers registered with the secure world like
//! client buffers. The RPC that made or frees the buffer waits for a nested REGISTER_SHM or
//! UNREGISTER_SHM call, and resumes when that call is served.

use optee_abi::mem::PhysMem;
use optee_abi::msg::MsgArg;
use optee_abi::smc::Regs;

use crate::call::Outcome;
use crate::config::Millis;
use crate::engine::CallEngine;
use crate::frames::Run;
use crate::registry::Registry;
use crate::types::{CallId, CallStatus, Purpose};

impl CallEngine {
    /// Registers a private RPC buffer before answering the ALLOC; false when it cannot, and the
    /// ALLOC is answered at once.
    pub(super) fn register_private<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        now: Millis,
        parent: CallId,
        cookie: u64,
        answer: Regs,
    ) -> bool {
        let Some(buf) = reg.private.get(&cookie).copied() else {
            return false;
        };
        let Some(list) = reg.page_list_for(buf.run) else {
            return false;
        };
        let arg = MsgArg::register_shm(list.pa, buf.run.bytes(), cookie);
        let purpose = Purpose::RegisterPrivate {
            parent,
            cookie,
            list,
        };
        match self.submit(reg, now, purpose, &arg) {
            Ok(_) => {
                self.park(parent, answer, CallStatus::WaitingChild);
                true
            }
            Err(_) => {
                reg.frames.free(list);
                false
            }
        }
    }

    /// Unregisters a private RPC buffer before freeing it; false when it cannot, and the FREE is
    /// answered at once.
    pub(super) fn unregister_private<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        now: Millis,
        parent: CallId,
        cookie: u64,
        answer: Regs,
    ) -> bool {
        let arg = MsgArg::unregister_shm(cookie);
        let purpose = Purpose::UnregisterPrivate { parent, cookie };
        match self.submit(reg, now, purpose, &arg) {
            Ok(_) => {
                self.park(parent, answer, CallStatus::WaitingChild);
                true
            }
            Err(_) => false,
        }
    }

    /// The nested REGISTER_SHM of buffer `cookie` ended: record whether the secure world now
    /// holds it, and resume the ALLOC that waits.
    pub fn on_private_registered<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        parent: CallId,
        cookie: u64,
        list: Run,
        outcome: &Outcome,
    ) {
        reg.frames.free(list);
        let registered = outcome.succeeded();
        if let Some(buf) = reg.private.get_mut(&cookie) {
            buf.registered = registered;
        }
        self.send_next(parent);
    }

    /// The nested UNREGISTER_SHM of buffer `cookie` ended: free it, and resume the FREE that waits.
    pub fn on_private_unregistered<M: PhysMem>(
        &mut self,
        reg: &mut Registry<M>,
        parent: CallId,
        cookie: u64,
    ) {
        self.free_private(reg, cookie);
        self.send_next(parent);
    }
}
