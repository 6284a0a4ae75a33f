//! Forged requests, and the simulator's deliberate breaks of its own behaviour (off unless a
//! test turns one on in [`super::config::Breaks`]) that show the checks catch what they claim.

use optee_abi::msg::{cmd, MsgArg, Param as MsgParam, RawParam};
use optee_abi::smc::Regs;
use rand::Rng;
use tee_proto::teed::{Param, TeedRequest};
use tee_proto::{Frame, Header};

use super::net::{Channel, Message};
use super::Sim;
use crate::ram::SharedRam;

/// Request ids the simulator uses for frames it forges.
const HOSTILE_BASE: u32 = 0xF000_0000;

impl Sim {
    /// A client forges a request for the other client's session or buffer: frees the victim's
    /// buffer, closes its session, or invokes with a memref into its buffer (through the
    /// victim's session or its own).
    pub(crate) fn hostile_frame(&mut self) {
        let (Some(t), Some(b)) = (self.tpmd.as_ref(), self.bnxtd.as_ref()) else {
            return;
        };
        let (attacker, victim) = if self.rng.gen() {
            (t.id, b.id)
        } else {
            (b.id, t.id)
        };
        let Some(generation) = self.teed.as_ref().map(|t| t.generation()) else {
            return;
        };
        let (session, shm) = self.checker.known(victim);
        let own_session = self.checker.known(attacker).0;
        let memref_into = |shm| {
            heapless::Vec::from_slice(&[Param::MemrefIn {
                shm,
                offset: 0,
                size: 16,
            }])
            .unwrap_or_default()
        };
        let body = match (session, shm, own_session, self.rng.gen_range(0..4)) {
            (_, Some(shm), _, 0) => TeedRequest::ShmFree { shm },
            (Some(session), _, _, 1) => TeedRequest::CloseSession { session },
            // Through the attacker's own session: only the buffer-owner check stands between it
            // and the victim's buffer.
            (_, Some(shm), Some(own), 3) => TeedRequest::Invoke {
                session: own,
                func: 0,
                cancel_id: 0,
                params: memref_into(shm),
            },
            (Some(session), Some(shm), _, _) => TeedRequest::Invoke {
                session,
                func: 0,
                cancel_id: 0,
                params: memref_into(shm),
            },
            _ => return,
        };
        self.stats.hostile_frames += 1;
        let request_id = HOSTILE_BASE + self.stats.hostile_frames as u32;
        self.note(format!("hostile {attacker} -> {body:?}"));
        // Broken on purpose: the forged frame arrives labelled as the victim's own.
        let sender = if self.cfg.breaks.forged_requests_as_victim {
            victim
        } else {
            attacker
        };
        self.hostile_pending.push((sender, request_id));
        let frame = Frame {
            header: Header::new(0, generation, request_id),
            body,
        };
        self.net
            .push(Channel::ClientToTeed(sender), Message::TeedRequest(frame));
    }

    /// Broken on purpose: a REGISTER_SHM on its way to the secure world gets the cookie of a
    /// registration the secure world already retired in this lifetime.
    pub(crate) fn reuse_a_retired_cookie(&mut self, ram: &mut SharedRam, regs: &Regs) {
        let arg_pages = self.teed.as_ref().and_then(|t| t.arg_pages());
        let Some(pa) = crate::harness::message_pa(regs, arg_pages) else {
            return;
        };
        let Ok(mut arg) = MsgArg::read_from(ram, pa) else {
            return;
        };
        let Some(old) = self.checker.a_retired_cookie() else {
            return;
        };
        if arg.cmd != cmd::REGISTER_SHM {
            return;
        }
        let Some(first) = arg.params.first_mut() else {
            return;
        };
        let Ok(MsgParam::Tmem {
            dir,
            buf_ptr,
            size,
            shm_ref,
            noncontig,
            meta,
        }) = first.decode_typed()
        else {
            return;
        };
        *first = RawParam::from(MsgParam::Tmem {
            dir,
            buf_ptr,
            size,
            shm_ref: old,
            noncontig,
            meta,
        });
        if arg.write_to(ram, pa).is_ok() {
            self.note(format!(
                "conduit: registration {shm_ref:#x} sent as {old:#x}"
            ));
        }
    }
}
