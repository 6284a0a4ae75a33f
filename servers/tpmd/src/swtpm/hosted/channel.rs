//! One accepted connection of each channel: the sans-IO state ([`DataConnection`],
//! [`ControlDecoder`]) on a buffered socket.

use std::io;
use std::vec::Vec;

use tee_proto::tpm::{TpmRequest, TpmResponse};
use tracing::{debug, info};

use super::socket::{Buffered, ReadOutcome};
use crate::swtpm::{answer, ControlDecoder, ControlEvent, DataConnection, DataOutput, Ticket};

/// Most commands of one data connection taken from its bytes and not yet answered (one in
/// tpmd's core, the rest waiting their turn); past it the connection's bytes stay unframed and
/// its socket unread until answers go out (clients are lockstep; this only bounds a client
/// that pipelines).
pub const MAX_AWAITING: usize = 16;

/// Whether a connection has more to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Open,
    /// Everything owed was written; drop the connection.
    Finished,
}

/// A data connection.
#[derive(Debug)]
pub struct DataChannel {
    socket: Buffered,
    connection: DataConnection,
    finished: bool,
    /// Bytes received, and bytes of them that made commands: the difference is a command
    /// still arriving (or waiting for room).
    received: usize,
    framed: usize,
}

/// Takes complete commands while the connection has room for them.
fn take_commands(
    connection: &mut DataConnection,
    framed: &mut usize,
    commands: &mut Vec<(Ticket, TpmRequest)>,
) {
    while connection.awaiting() < MAX_AWAITING {
        let Some((ticket, request)) = connection.next_command() else {
            return;
        };
        let TpmRequest::Command { bytes } = &request;
        *framed = framed.saturating_add(bytes.len());
        commands.push((ticket, request));
    }
}

impl DataChannel {
    pub fn new(socket: Buffered) -> DataChannel {
        DataChannel {
            socket,
            connection: DataConnection::new(),
            finished: false,
            received: 0,
            framed: 0,
        }
    }

    /// Reads what arrived; every complete command there is room for goes to `commands` for
    /// tpmd.
    pub fn on_readable(
        &mut self,
        commands: &mut Vec<(Ticket, TpmRequest)>,
    ) -> io::Result<Liveness> {
        let connection = &mut self.connection;
        let framed = &mut self.framed;
        let received = &mut self.received;
        let outcome = self.socket.read_chunks(|chunk| {
            connection.receive(chunk);
            *received = received.saturating_add(chunk.len());
            take_commands(connection, framed, commands);
            connection.wants_input() && connection.awaiting() < MAX_AWAITING
        })?;
        if outcome == ReadOutcome::Closed {
            self.connection.input_closed();
            take_commands(&mut self.connection, &mut self.framed, commands);
        }
        if let Some(error) = self.connection.framing_error() {
            debug!(%error, "swtpm data: framing lost; answering TPM_RC_COMMAND_SIZE");
        }
        self.pump()
    }

    /// tpmd's answer to the command with `ticket`; commands that waited for room go to
    /// `commands`.
    pub fn on_answer(
        &mut self,
        ticket: Ticket,
        response: &TpmResponse,
        commands: &mut Vec<(Ticket, TpmRequest)>,
    ) -> io::Result<Liveness> {
        if let Err(error) = self.connection.answer(ticket, response) {
            debug!(%error, "swtpm data: answer dropped");
        }
        let liveness = self.pump();
        take_commands(&mut self.connection, &mut self.framed, commands);
        liveness
    }

    /// Commands taken and not answered yet.
    pub fn awaiting(&self) -> usize {
        self.connection.awaiting()
    }

    /// Whether bytes of a command not taken yet are held.
    pub fn has_partial(&self) -> bool {
        self.received > self.framed && self.connection.wants_input()
    }

    /// The socket became writable.
    pub fn on_writable(&mut self) -> io::Result<Liveness> {
        self.socket.flush()?;
        Ok(self.liveness())
    }

    pub fn wants_read(&self) -> bool {
        self.connection.wants_input() && self.connection.awaiting() < MAX_AWAITING
    }

    pub fn wants_write(&self) -> bool {
        self.socket.wants_write()
    }

    pub fn socket(&self) -> &Buffered {
        &self.socket
    }

    /// Writes every answer that is due, in command order.
    fn pump(&mut self) -> io::Result<Liveness> {
        while let Some(output) = self.connection.poll_output() {
            match output {
                DataOutput::Write(bytes) => self.socket.send(&bytes)?,
                DataOutput::Close => self.finished = true,
            }
        }
        Ok(self.liveness())
    }

    fn liveness(&self) -> Liveness {
        if self.finished && !self.socket.wants_write() {
            Liveness::Finished
        } else {
            Liveness::Open
        }
    }
}

/// A control connection.
#[derive(Debug)]
pub struct ControlChannel {
    socket: Buffered,
    decoder: ControlDecoder,
    closing: bool,
}

impl ControlChannel {
    pub fn new(socket: Buffered) -> ControlChannel {
        ControlChannel {
            socket,
            decoder: ControlDecoder::new(),
            closing: false,
        }
    }

    /// Reads requests and answers each at once.
    pub fn on_readable(&mut self) -> io::Result<Liveness> {
        let decoder = &mut self.decoder;
        let mut answers = Vec::new();
        let outcome = self.socket.read_chunks(|chunk| {
            answers.extend(decoder.push(chunk).map(|request| answer(&request)));
            true
        })?;
        for reply in answers {
            if let Some(event) = reply.event {
                log_event(event);
                // swtpm ends the connection with the process; tpmd just ends the connection.
                self.closing |= event == ControlEvent::Shutdown;
            }
            self.socket.send(&reply.response.encode())?;
        }
        if outcome == ReadOutcome::Closed {
            if let Err(error) = self.decoder.finish() {
                debug!(%error, "swtpm control: request cut short");
                // The peer may only have closed its sending side; tell it what swtpm would.
                let _ = self.socket.send(&error.response().encode());
            }
            self.closing = true;
        }
        self.on_writable()
    }

    /// The socket became writable.
    pub fn on_writable(&mut self) -> io::Result<Liveness> {
        self.socket.flush()?;
        if self.closing && !self.socket.wants_write() {
            Ok(Liveness::Finished)
        } else {
            Ok(Liveness::Open)
        }
    }

    pub fn wants_read(&self) -> bool {
        !self.closing
    }

    /// Whether part of a request has arrived.
    pub fn has_partial(&self) -> bool {
        self.decoder.is_mid_request()
    }

    pub fn wants_write(&self) -> bool {
        self.socket.wants_write()
    }

    pub fn socket(&self) -> &Buffered {
        &self.socket
    }
}

fn log_event(event: ControlEvent) {
    match event {
        ControlEvent::Init { delete_volatile } => info!(
            delete_volatile,
            "swtpm control: INIT acknowledged; the TPM resets only with a normal-world boot"
        ),
        ControlEvent::Shutdown => {
            info!("swtpm control: SHUTDOWN acknowledged; tpmd keeps serving (init owns its life)")
        }
        ControlEvent::Stop => {
            info!("swtpm control: STOP acknowledged; the shared TPM keeps running")
        }
    }
}
