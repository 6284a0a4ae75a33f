//! A handle's queue of whole messages waiting to be read: one `read` takes one message, or
//! refuses a buffer too short for it (the message stays queued), as a packet socket would
//! rather than a byte stream, so no reader ever sees half a frame.

use std::collections::VecDeque;

use crate::error::SchemeError;

/// Messages queued per handle before a reader that does not read loses the newest (it is left
/// to the sender's deadlines, as hosted endpoints drop a frame a peer has no room for).
pub const OUTBOX_MAX: usize = 64;

/// One queued message and the request id it answers, when it is a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    request_id: Option<u32>,
    bytes: Vec<u8>,
}

/// The messages waiting for one handle's reader.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Message>,
}

impl Outbox {
    /// Queues `bytes`, answering `request_id` if it is a frame.
    pub fn push(&mut self, request_id: Option<u32>, bytes: Vec<u8>) -> Result<(), SchemeError> {
        if self.queue.len() >= OUTBOX_MAX {
            return Err(SchemeError::QueueFull);
        }
        self.queue.push_back(Message { request_id, bytes });
        Ok(())
    }

    /// Moves the oldest message into `buf` and returns its length.
    pub fn pop_into(&mut self, buf: &mut [u8]) -> Result<usize, SchemeError> {
        let need = self
            .queue
            .front()
            .map(|message| message.bytes.len())
            .ok_or(SchemeError::WouldBlock)?;
        Self::copy(&mut self.queue, 0, need, buf)
    }

    /// Moves the answer to `request_id` into `buf`; `Ok(None)` when it is not queued (yet).
    pub fn take_answer(
        &mut self,
        request_id: u32,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SchemeError> {
        let Some(index) = self
            .queue
            .iter()
            .position(|message| message.request_id == Some(request_id))
        else {
            return Ok(None);
        };
        let need = self.queue[index].bytes.len();
        Self::copy(&mut self.queue, index, need, buf).map(Some)
    }

    fn copy(
        queue: &mut VecDeque<Message>,
        index: usize,
        need: usize,
        buf: &mut [u8],
    ) -> Result<usize, SchemeError> {
        if buf.len() < need {
            return Err(SchemeError::BufferTooSmall {
                need,
                got: buf.len(),
            });
        }
        let message = queue.remove(index).ok_or(SchemeError::WouldBlock)?;
        buf[..need].copy_from_slice(&message.bytes);
        Ok(need)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Whole messages per read, as the hosted endpoints' SOCK_SEQPACKET (unix(7)) delivers
    /// them, but a short buffer is refused rather than truncating the frame.
    #[test]
    fn reads_whole_messages_in_order_and_keeps_one_a_short_buffer_cannot_hold() {
        let mut outbox = Outbox::default();
        let mut buf = [0u8; 8];
        assert_eq!(outbox.pop_into(&mut buf), Err(SchemeError::WouldBlock));
        outbox.push(Some(1), vec![1, 2, 3]).unwrap();
        outbox.push(None, vec![4]).unwrap();
        assert_eq!(
            outbox.pop_into(&mut buf[..2]),
            Err(SchemeError::BufferTooSmall { need: 3, got: 2 })
        );
        assert_eq!(outbox.len(), 2, "the message stays queued");
        assert_eq!(outbox.pop_into(&mut buf), Ok(3));
        assert_eq!(&buf[..3], &[1, 2, 3]);
        assert_eq!(outbox.pop_into(&mut buf), Ok(1));
        assert!(outbox.is_empty());
    }

    /// redox-scheme `SchemeSync::call`: the answer to the call's own request, whatever else is
    /// queued (teed's replies may come out of order, tee-proto `teed.rs`).
    #[test]
    fn takes_the_answer_to_one_request_out_of_order() {
        let mut outbox = Outbox::default();
        outbox.push(Some(1), vec![1]).unwrap();
        outbox.push(Some(2), vec![2, 2]).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(outbox.take_answer(3, &mut buf), Ok(None));
        assert_eq!(outbox.take_answer(2, &mut buf), Ok(Some(2)));
        assert_eq!(outbox.pop_into(&mut buf), Ok(1));
        assert_eq!(buf[0], 1);
    }

    /// As tee-rt's endpoints drop a frame a peer has no room for (`tee_rt::serve`), bounded.
    #[test]
    fn a_reader_that_never_reads_loses_the_newest() {
        let mut outbox = Outbox::default();
        for i in 0..OUTBOX_MAX {
            outbox.push(None, vec![i as u8]).unwrap();
        }
        assert_eq!(outbox.push(None, vec![0]), Err(SchemeError::QueueFull));
        let mut buf = [0u8; 1];
        assert_eq!(outbox.pop_into(&mut buf), Ok(1));
        assert_eq!(buf[0], 0, "the oldest is kept");
    }
}
