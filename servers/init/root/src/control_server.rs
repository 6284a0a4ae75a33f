//! init's side of `init.ctl`: operator requests in, status and operation reports out.
//!
//! A request is read whole (teectl writes a frame at once; a short read timeout keeps a stuck
//! peer from holding init). Operations run through the supervisor like any other input; their
//! reply waits until [`PendingOp::check`] says they ran their course. Every reply carries a
//! fresh status, for which live servers are asked what they hold (`Status`, with a short
//! deadline: a server that does not answer shows no holdings).

use std::os::unix::net::UnixStream;

use tee_proto::control::{ControlInterface, ControlResponse, OpKind, OpReport};
use tee_proto::lifecycle::{InitRequest, ServerStatus};
use tee_proto::{accept_request, Frame, Header, Incoming, WireError, FRAME_MAX};
use tee_rt::framing::{read_frame, FrameError};

use crate::control_state::{
    op_kind, ActiveOp, PendingReply, ReplyBody, StatusQuery, CONTROL_GENERATION,
    CONTROL_IO_TIMEOUT, STATUS_QUERY_MS,
};
use crate::ops::PendingOp;
use crate::shell::Host;
use crate::status::{holdings, shutdown_summary, stack_status, HostFacts};
use crate::wire::send_frame;
use teesys_init::view::{Phase, SupervisedState};
use teesys_init::{server_index, INIT_GENERATION, SERVERS};

impl Host {
    /// A new teectl connection.
    pub(super) fn accept_control(&mut self) {
        match self.control.accept() {
            Ok((conn, _)) => {
                let timeouts = conn
                    .set_read_timeout(Some(CONTROL_IO_TIMEOUT))
                    .and_then(|()| conn.set_write_timeout(Some(CONTROL_IO_TIMEOUT)));
                match timeouts {
                    Ok(()) => self.idle_conns.push(conn),
                    Err(error) => tracing::warn!(%error, "control connection dropped"),
                }
            }
            Err(error) => tracing::warn!(%error, "control accept failed"),
        }
    }

    /// A control connection is readable: one request (or its end).
    pub(super) fn serve_control(&mut self, mut conn: UnixStream) {
        let mut buf = Vec::new();
        match read_frame(&mut conn, &mut buf, FRAME_MAX) {
            Ok(()) => {}
            Err(FrameError::Closed) => return,
            Err(error) => {
                tracing::warn!(%error, "control connection dropped");
                return;
            }
        }
        let frame = match accept_request::<ControlInterface>(&buf, CONTROL_GENERATION) {
            Incoming::Request(frame) => frame,
            Incoming::Answer(answer) => {
                self.write_reply(conn, answer);
                return;
            }
            Incoming::Drop(error) => {
                tracing::warn!(%error, "undecodable control frame; connection dropped");
                return;
            }
        };
        tracing::info!(request = ?frame.body, "control request");
        match op_kind(frame.body) {
            None => self.begin_reply(conn, frame.header, ReplyBody::Status),
            Some(op) => match self.begin_op(op) {
                Ok(pending) => {
                    self.op = Some(ActiveOp {
                        pending,
                        conn,
                        request: frame.header,
                    })
                }
                Err(error) => self.write_reply(
                    conn,
                    Frame {
                        header: frame.header.reply_to(CONTROL_GENERATION),
                        body: ControlResponse::Error(error),
                    },
                ),
            },
        }
    }

    /// Starts `op` if it applies now.
    fn begin_op(&mut self, op: OpKind) -> Result<PendingOp, WireError> {
        if self.op.is_some() || self.down.requested {
            return Err(WireError::Busy);
        }
        let now = self.now();
        let view = self.sup.snapshot();
        let pending = PendingOp::new(op, now, &view);
        let world_up = matches!(view.phase, Phase::Booting | Phase::Running);
        match op {
            OpKind::Kexec | OpKind::Reboot | OpKind::Crash { .. } | OpKind::Down if !world_up => {
                return Err(WireError::Busy)
            }
            OpKind::Kexec => self.sup.request_kexec(now),
            OpKind::Reboot => self.sup.request_reboot(now),
            OpKind::Crash { hard } => self.sup.request_crash(now, !hard),
            OpKind::Down => {
                self.down.requested = true;
                // An orderly reboot's shutdown IPC; the host then does not boot again.
                self.sup.request_reboot(now);
            }
            OpKind::Restart(kind) => {
                if !world_up || view.server(kind).state == SupervisedState::NotStarted {
                    return Err(WireError::Busy);
                }
                self.sup.request_restart(now, kind);
            }
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
    fn begin_reply(&mut self, conn: UnixStream, request: Header, body: ReplyBody) {
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
        let query = StatusQuery {
            ids,
            holds: [None; 3],
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
                secure: self.secure_stats(),
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

    /// Writes an answer and keeps the connection for the next request.
    fn write_reply(&mut self, mut conn: UnixStream, frame: Frame<ControlResponse>) {
        match send_frame(&mut conn, &frame) {
            Ok(()) => self.idle_conns.push(conn),
            Err(error) => tracing::warn!(%error, "control reply not delivered"),
        }
    }
}
