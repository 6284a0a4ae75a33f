//! init's side of `init.ctl`: operator requests in, status and operation reports out.
//!
//! A request is taken once its frame is whole ([`crate::control_conns`]: read without
//! blocking, one deadline per frame). Operations run through the supervisor like any other
//! input; their reply waits until [`PendingOp::check`] says they ran their course. Every reply
//! carries a fresh status, for which live servers are asked what they hold (`Status`) and the
//! secure world what it holds (`Stats`), all with a short deadline: what does not answer in
//! time shows as unknown.

use tee_proto::control::{ControlResponse, OpKind, OpReport};
use tee_proto::lifecycle::{InitRequest, ServerStatus};
use tee_proto::secure::{SecureRequest, SecureResponse};
use tee_proto::{Frame, Header, WireError};

use crate::control_conns::{ConnId, Read};
use crate::control_screen::{admit, screen, Admission, Screened};
use crate::control_state::{
    ActiveOp, PendingReply, ReplyBody, SecureQuery, StatusQuery, CONTROL_GENERATION,
    STATUS_QUERY_MS,
};
use crate::ops::PendingOp;
use crate::secure_link::SecureAnswer;
use crate::shell::Host;
use crate::status::{holdings, shutdown_summary, stack_status, HostFacts};
use teesys_init::view::{Phase, SupervisedState};
use teesys_init::{server_index, INIT_GENERATION, SERVERS};

impl Host {
    /// New teectl connections.
    pub(super) fn accept_control(&mut self) {
        let now = self.now();
        self.conns.accept(now, &self.control);
    }

    /// A control connection is readable: a request once its frame is whole.
    pub(super) fn serve_control(&mut self, conn: ConnId) {
        let now = self.now();
        let buf = match self.conns.receive(now, conn) {
            Read::Frame(buf) => buf,
            Read::Nothing | Read::Gone => return,
        };
        let (header, request, op) = match screen(&buf) {
            Screened::Request {
                header,
                request,
                op,
            } => (header, request, op),
            Screened::Answer(answer) => {
                self.write_reply(conn, *answer);
                return;
            }
            Screened::Drop(error) => {
                tracing::warn!(%error, "undecodable control frame; connection dropped");
                self.conns.remove(conn);
                return;
            }
        };
        tracing::info!(?request, "control request");
        match op {
            None => self.begin_reply(conn, header, ReplyBody::Status),
            Some(op) => match self.begin_op(op) {
                Ok(pending) => {
                    self.op = Some(ActiveOp {
                        pending,
                        conn,
                        request: header,
                    })
                }
                Err(error) => self.write_reply(
                    conn,
                    Frame {
                        header: header.reply_to(CONTROL_GENERATION),
                        body: ControlResponse::Error(error),
                    },
                ),
            },
        }
    }

    /// Starts `op` if it applies now.
    fn begin_op(&mut self, op: OpKind) -> Result<PendingOp, WireError> {
        let now = self.now();
        let view = self.sup.snapshot();
        let admission = Admission {
            op_running: self.op.is_some(),
            down_requested: self.down.requested,
            world_up: matches!(view.phase, Phase::Booting | Phase::Running),
            started: SERVERS.map(|kind| view.server(kind).state != SupervisedState::NotStarted),
            process: SERVERS.map(|kind| self.procs[server_index(kind)].is_some()),
        };
        admit(op, &admission)?;
        let pending = PendingOp::new(op, now, &view);
        match op {
            OpKind::Kexec => self.sup.request_kexec(now),
            OpKind::Reboot => self.sup.request_reboot(now),
            OpKind::Crash { hard } => self.sup.request_crash(now, !hard),
            OpKind::Down => {
                self.down.requested = true;
                // An orderly reboot's shutdown IPC; the host then does not boot again.
                self.sup.request_reboot(now);
            }
            OpKind::Restart(kind) => self.sup.request_restart(now, kind),
            OpKind::Kill(kind) => {
                let process = self.procs[server_index(kind)]
                    .as_mut()
                    .ok_or(WireError::NotFound)?;
                tracing::warn!(?kind, pid = process.pid(), "operator kill -9");
                process.kill().map_err(|error| {
                    tracing::error!(?kind, %error, "kill failed");
                    WireError::NotFound
                })?;
            }
        }
        Ok(pending)
    }

    /// Moves the running operation to its reply once it ran its course.
    pub(super) fn progress_op(&mut self) {
        let now = self.now();
        let view = self.sup.snapshot();
        let Some(outcome) = self
            .op
            .as_ref()
            .and_then(|active| active.pending.check(now, &view, self.down.finished))
        else {
            return;
        };
        let Some(active) = self.op.take() else {
            return;
        };
        let pending = active.pending;
        let shutdown = view
            .last_shutdown
            .as_ref()
            .filter(|outcome| pending.has_shutdown() && outcome.started_at >= pending.started_at)
            .map(shutdown_summary);
        tracing::info!(op = ?pending.op, ?outcome, "operation finished");
        let left = if pending.has_shutdown() {
            self.left_at_transition.take().map(Box::new)
        } else {
            None
        };
        self.begin_reply(
            active.conn,
            active.request,
            ReplyBody::Op {
                op: pending.op,
                outcome,
                took_ms: now.saturating_sub(pending.started_at),
                shutdown,
                left,
            },
        );
    }

    /// Asks every live server what it holds; the reply goes out when all answered.
    fn begin_reply(&mut self, conn: ConnId, request: Header, body: ReplyBody) {
        let mut ids = [None; 3];
        for kind in SERVERS {
            let Some(generation) = self.live(kind).map(|process| process.generation) else {
                continue;
            };
            let id = self.host_request_id();
            let frame = Frame {
                header: Header::new(INIT_GENERATION, generation, id),
                body: InitRequest::Status,
            };
            if let Some(process) = self.live(kind) {
                if process.send(&frame, &[]).is_ok() {
                    ids[server_index(kind)] = Some(id);
                }
            }
        }
        let secure = match self.ask_secure(SecureRequest::Stats, STATUS_QUERY_MS) {
            Some(id) => SecureQuery::Asked(id),
            None => SecureQuery::Done(None),
        };
        let query = StatusQuery {
            ids,
            holds: [None; 3],
            secure,
            deadline: self.now().saturating_add(STATUS_QUERY_MS),
        };
        self.replies.push(PendingReply {
            conn,
            request,
            body,
            query,
        });
    }

    /// A server's `Status`; true when it answered one of the host's queries.
    pub(super) fn record_status(
        &mut self,
        index: usize,
        request_id: u32,
        status: &ServerStatus,
    ) -> bool {
        let mut matched = false;
        for reply in &mut self.replies {
            if reply.query.ids[index] == Some(request_id) {
                reply.query.holds[index] = Some(holdings(status));
                matched = true;
            }
        }
        matched
    }

    /// The secure world's answer to a reply's `Stats` (or its failure).
    pub(super) fn record_secure(&mut self, request_id: u32, answer: SecureAnswer) {
        let stats = match answer {
            SecureAnswer::Answered(SecureResponse::Stats(stats)) => Some(stats),
            SecureAnswer::Answered(other) => {
                tracing::warn!(?other, "secure world statistics refused");
                None
            }
            SecureAnswer::Failed => None,
        };
        for reply in &mut self.replies {
            if reply.query.secure == SecureQuery::Asked(request_id) {
                reply.query.secure = SecureQuery::Done(stats);
            }
        }
    }

    /// Sends every reply whose status is complete.
    pub(super) fn progress_replies(&mut self) {
        let now = self.now();
        let mut index = 0;
        while index < self.replies.len() {
            if !self.replies[index].query.complete(now) {
                index += 1;
                continue;
            }
            let reply = self.replies.swap_remove(index);
            let facts = HostFacts {
                pids: self.pids(),
                holds: reply.query.holds,
                secure: reply.query.secure_stats(),
                uptime_ms: now,
                conduit_inode: self.conduit_inode,
            };
            let status = stack_status(&self.sup.snapshot(), &facts);
            let body = match reply.body {
                ReplyBody::Status => ControlResponse::Status(status),
                ReplyBody::Op {
                    op,
                    outcome,
                    took_ms,
                    shutdown,
                    left,
                } => ControlResponse::Done(OpReport {
                    op,
                    outcome,
                    took_ms,
                    shutdown,
                    left_at_transition: left.map(|stats| *stats),
                    after: status,
                }),
            };
            self.write_reply(
                reply.conn,
                Frame {
                    header: reply.request.reply_to(CONTROL_GENERATION),
                    body,
                },
            );
        }
    }

    /// The earliest deadline of the collecting replies and the running operation.
    pub(super) fn control_deadline(&self) -> Option<u64> {
        let replies = self.replies.iter().map(|reply| reply.query.deadline);
        let op = self.op.as_ref().map(|active| active.pending.deadline);
        replies.chain(op).min()
    }

    /// Writes an answer; the connection may then send its next request.
    fn write_reply(&mut self, conn: ConnId, frame: Frame<ControlResponse>) {
        let now = self.now();
        self.conns.reply(now, conn, &frame);
    }
}
