//! One data connection: its commands go to tpmd tagged with a [`Ticket`], and its answers go
//! back in the order the commands came, whatever order tpmd answers in.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use tee_proto::tpm::{TpmRequest, TpmResponse};

use super::data::{framing_error_response, response_bytes, DataDecoder, DataError};

/// Names one command of a connection; the shell uses it as the request id of the frame it
/// sends to the tpmd core and hands it back with the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u32);

/// What the shell must do on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutput {
    /// Write these bytes.
    Write(Vec<u8>),
    /// Close the connection: everything owed has been written.
    Close,
}

/// An answer for a ticket the connection is not waiting on (never issued, or answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no command with ticket {} awaits an answer", .0 .0)]
pub struct UnknownTicket(pub Ticket);

#[derive(Debug)]
struct Awaiting {
    ticket: Ticket,
    answer: Option<Vec<u8>>,
}

/// The sans-IO state of one data connection.
///
/// The shell: [`receive`](Self::receive)s bytes, takes [`next_command`](Self::next_command)
/// until `None` and submits each to tpmd, [`answer`](Self::answer)s each ticket with tpmd's
/// response, and carries out [`poll_output`](Self::poll_output) until `None`. At end of input
/// it calls [`input_closed`](Self::input_closed), then drains `next_command` once more. After a
/// framing error the answers owed are written, then TPM_RC_COMMAND_SIZE, then `Close`.
#[derive(Debug, Default)]
pub struct DataConnection {
    decoder: DataDecoder,
    next_ticket: u32,
    awaiting: VecDeque<Awaiting>,
    framing_error: Option<DataError>,
    framing_error_written: bool,
    input_closed: bool,
    closed: bool,
}

impl DataConnection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes read from the connection.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.wants_input() {
            self.decoder.push(bytes);
        }
    }

    /// The peer will send nothing more.
    pub fn input_closed(&mut self) {
        self.input_closed = true;
    }

    /// Whether reading more from the connection is of any use.
    pub fn wants_input(&self) -> bool {
        !self.input_closed && self.framing_error.is_none() && !self.closed
    }

    /// The next complete command for tpmd, with the ticket its answer must carry.
    pub fn next_command(&mut self) -> Option<(Ticket, TpmRequest)> {
        if self.framing_error.is_some() || self.closed {
            return None;
        }
        match self.decoder.next_command() {
            Ok(Some(request)) => {
                let ticket = Ticket(self.next_ticket);
                self.next_ticket = self.next_ticket.wrapping_add(1);
                self.awaiting.push_back(Awaiting {
                    ticket,
                    answer: None,
                });
                Some((ticket, request))
            }
            Ok(None) => {
                if self.input_closed {
                    self.framing_error = self.decoder.finish().err();
                }
                None
            }
            Err(error) => {
                self.framing_error = Some(error);
                None
            }
        }
    }

    /// tpmd's answer to the command with `ticket`.
    pub fn answer(&mut self, ticket: Ticket, response: &TpmResponse) -> Result<(), UnknownTicket> {
        let slot = self
            .awaiting
            .iter_mut()
            .find(|slot| slot.ticket == ticket && slot.answer.is_none())
            .ok_or(UnknownTicket(ticket))?;
        slot.answer = Some(response_bytes(response).to_vec());
        Ok(())
    }

    /// The next thing to do on the connection, in command order.
    pub fn poll_output(&mut self) -> Option<DataOutput> {
        if self.closed {
            return None;
        }
        if let Some(front) = self.awaiting.front_mut() {
            let bytes = front.answer.take()?;
            self.awaiting.pop_front();
            return Some(DataOutput::Write(bytes));
        }
        if let Some(error) = self.framing_error {
            if !self.framing_error_written {
                self.framing_error_written = true;
                return Some(DataOutput::Write(framing_error_response(error).to_vec()));
            }
            self.closed = true;
            return Some(DataOutput::Close);
        }
        if self.input_closed && self.decoder.buffered() == 0 {
            self.closed = true;
            return Some(DataOutput::Close);
        }
        None
    }

    /// Commands handed to tpmd whose answers have not been written yet.
    pub fn awaiting(&self) -> usize {
        self.awaiting.len()
    }

    /// The framing error that ends this connection, if any.
    pub fn framing_error(&self) -> Option<DataError> {
        self.framing_error
    }

    /// Whether [`DataOutput::Close`] has been issued.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
