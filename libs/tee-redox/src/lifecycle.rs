//! The lifecycle protocol on Redox: the daemon's own `Hello`, and the `control` path.
//!
//! No teesys init runs on Redox (Redox's init starts the daemons), so each daemon sends its core
//! the `Hello` it builds from its command line ([`crate::boot`]) under [`HELLO_REQUEST_ID`],
//! and the answer decides readiness ([`Startup`]). Everything else of the lifecycle interface
//! (`Status`, `Shutdown` before a reboot) comes from whoever holds the `control` handle: root
//! only, one at a time, frames of `tee_proto::lifecycle` both ways. A control frame cannot
//! forge the daemon's `Hello` or hand it endpoints (there are none to hand on Redox): those
//! are answered `BadRequest` without reaching the core.

use tee_proto::lifecycle::{InitRequest, ServerEvent};
use tee_proto::{accept_request, Frame, Generation, Incoming, Interface, LifecycleInterface};
use tee_proto::{FRAME_MAX, PROTOCOL_VERSION};

use crate::adapter::Startup;
use crate::caller::Caller;
use crate::error::SchemeError;
use crate::outbox::Outbox;

/// The path of the lifecycle handle in every teesys scheme.
pub const CONTROL_PATH: &str = "control";

/// The request id of the daemon's own `Hello`; refused on the control path.
pub const HELLO_REQUEST_ID: u32 = u32::MAX;

/// What a control write asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    /// A lifecycle request for the core.
    Forward(Frame<InitRequest>),
    /// Answered at once, without the core (stale generation, or a request only the daemon or a
    /// hosted init may make).
    Answer(Frame<ServerEvent>),
}

/// The daemon's start-up and its control handle.
#[derive(Debug)]
pub struct Lifecycle {
    startup: Startup,
    control: Option<usize>,
    outbox: Outbox,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            startup: Startup::Pending,
            control: None,
            outbox: Outbox::default(),
        }
    }
}

impl Lifecycle {
    /// How the daemon's `Hello` was answered.
    pub fn startup(&self) -> Startup {
        self.startup
    }

    /// Whether `caller` may open the control path now.
    pub fn may_open(&self, caller: &Caller) -> Result<(), SchemeError> {
        if !caller.is_root() {
            return Err(SchemeError::Denied);
        }
        if self.control.is_some() {
            return Err(SchemeError::Busy);
        }
        Ok(())
    }

    /// The control path was opened as handle `id`.
    pub fn opened(&mut self, id: usize) {
        self.control = Some(id);
    }

    /// Handle `id` closed; if it was the control handle, its unread answers go with it.
    pub fn closed(&mut self, id: usize) {
        if self.control == Some(id) {
            self.control = None;
            self.outbox = Outbox::default();
        }
    }

    /// Checks one control write for a daemon of generation `generation`.
    pub fn screen(&self, bytes: &[u8], generation: Generation) -> Result<Screened, SchemeError> {
        if bytes.len() > FRAME_MAX {
            return Err(SchemeError::TooLarge {
                len: bytes.len(),
                max: FRAME_MAX,
            });
        }
        match accept_request::<LifecycleInterface>(bytes, generation) {
            Incoming::Request(frame) => {
                let forbidden = frame.header.request_id == HELLO_REQUEST_ID
                    || matches!(
                        frame.body,
                        InitRequest::Hello { .. }
                            | InitRequest::ClientEndpoint { .. }
                            | InitRequest::TeedEndpoint { .. }
                    );
                if forbidden {
                    return Ok(Screened::Answer(Frame {
                        header: frame.header.reply_to(generation),
                        body: LifecycleInterface::bad_request(),
                    }));
                }
                Ok(Screened::Forward(frame))
            }
            Incoming::Answer(answer) => Ok(Screened::Answer(answer)),
            Incoming::Drop(error) => {
                tracing::warn!(%error, "undecodable control frame refused");
                Err(SchemeError::Malformed)
            }
        }
    }

    /// An event from the core: the answer to the daemon's `Hello` settles start-up; anything
    /// else goes to the control handle. Returns the control handle when it became readable.
    pub fn on_event(&mut self, frame: Frame<ServerEvent>) -> Option<usize> {
        if frame.header.request_id == HELLO_REQUEST_ID && self.startup == Startup::Pending {
            self.startup = match frame.body {
                ServerEvent::Ready { generation } => Startup::Ready { generation },
                ServerEvent::Declined { reason } => Startup::Declined(reason),
                other => {
                    tracing::error!(?other, "the core refused the daemon's own Hello");
                    Startup::Refused
                }
            };
            return None;
        }
        self.answer(&frame)
    }

    /// Queues `frame` for the control handle; returns it when it became readable.
    pub fn answer(&mut self, frame: &Frame<ServerEvent>) -> Option<usize> {
        let Some(id) = self.control else {
            tracing::debug!(event = ?frame.body, "lifecycle event with no control handle open dropped");
            return None;
        };
        let mut buf = vec![0u8; FRAME_MAX];
        let bytes = match tee_proto::encode(frame, &mut buf) {
            Ok(bytes) => bytes.to_vec(),
            Err(error) => {
                tracing::error!(%error, "lifecycle event does not encode");
                return None;
            }
        };
        match self.outbox.push(Some(frame.header.request_id), bytes) {
            Ok(()) => Some(id),
            Err(error) => {
                tracing::warn!(%error, "lifecycle event dropped");
                None
            }
        }
    }

    /// The control handle's next answer.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, SchemeError> {
        self.outbox.pop_into(buf)
    }

    /// The control handle's answer to `request_id`, if it is already there.
    pub fn take_answer(
        &mut self,
        request_id: u32,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SchemeError> {
        self.outbox.take_answer(request_id, buf)
    }

    /// Whether the control handle has an answer to read.
    pub fn readable(&self) -> bool {
        !self.outbox.is_empty()
    }
}

/// The request of a `call`: the first `request_len` bytes of `payload`, copied out because the
/// answer is written over it.
pub fn call_request(payload: &[u8], request_len: usize) -> Result<Vec<u8>, SchemeError> {
    payload
        .get(..request_len)
        .map(<[u8]>::to_vec)
        .ok_or(SchemeError::TooLarge {
            len: request_len,
            max: payload.len(),
        })
}

/// The request id a frame's header names, when the header decodes at this protocol version.
pub fn request_id(bytes: &[u8]) -> Option<u32> {
    tee_proto::decode_header(bytes)
        .ok()
        .filter(|(header, _)| header.version == PROTOCOL_VERSION)
        .map(|(header, _)| header.request_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tee_proto::lifecycle::{DeclineReason, ShutdownReason};
    use tee_proto::{Header, WireError};

    const ROOT: Caller = Caller {
        pid: 1,
        uid: 0,
        gid: 0,
    };
    const USER: Caller = Caller {
        pid: 2,
        uid: 1000,
        gid: 1000,
    };

    fn encoded(request_id: u32, body: InitRequest) -> Vec<u8> {
        let frame = Frame {
            header: Header::new(0, 0, request_id),
            body,
        };
        let mut buf = vec![0u8; FRAME_MAX];
        tee_proto::encode(&frame, &mut buf).unwrap().to_vec()
    }

    /// Only root may create or reach system schemes by default (Redox `/etc/login_schemes.toml`
    /// gives users their schemes); the lifecycle path is root's alone.
    #[test]
    fn control_is_root_only_and_one_at_a_time() {
        let mut lifecycle = Lifecycle::default();
        assert_eq!(lifecycle.may_open(&USER), Err(SchemeError::Denied));
        assert_eq!(lifecycle.may_open(&ROOT), Ok(()));
        lifecycle.opened(5);
        assert_eq!(lifecycle.may_open(&ROOT), Err(SchemeError::Busy));
        lifecycle.closed(4);
        assert_eq!(lifecycle.may_open(&ROOT), Err(SchemeError::Busy));
        lifecycle.closed(5);
        assert_eq!(lifecycle.may_open(&ROOT), Ok(()));
    }

    /// tee-proto `lifecycle.rs`: Hello comes from init alone; on Redox the daemon is its own
    /// init, so a control frame may not make one.
    #[test]
    fn control_frames_cannot_forge_hello_or_endpoints() {
        let lifecycle = Lifecycle::default();
        let shutdown = InitRequest::Shutdown {
            reason: ShutdownReason::Reboot,
        };
        assert!(matches!(
            lifecycle.screen(&encoded(7, shutdown), 3),
            Ok(Screened::Forward(_))
        ));
        for (id, body) in [
            (HELLO_REQUEST_ID, InitRequest::Status),
            (8, InitRequest::TeedEndpoint { teed_generation: 2 }),
        ] {
            let Ok(Screened::Answer(answer)) = lifecycle.screen(&encoded(id, body), 3) else {
                panic!("not refused: {body:?}");
            };
            assert_eq!(answer.body, ServerEvent::Error(WireError::BadRequest));
            assert_eq!(answer.header.request_id, id);
        }
        assert_eq!(
            lifecycle.screen(&[0xff, 0xff, 0xff], 3),
            Err(SchemeError::Malformed)
        );
        assert!(matches!(
            lifecycle.screen(&vec![0; FRAME_MAX + 1], 3),
            Err(SchemeError::TooLarge { .. })
        ));
    }

    /// base init `service.rs`: a notify service is ready when it says so; here, when the core
    /// answered the daemon's own Hello (Ready or Declined).
    #[test]
    fn the_hello_answer_settles_start_up_and_the_rest_goes_to_control() {
        let mut lifecycle = Lifecycle::default();
        let event = |id, body| Frame {
            header: Header::new(3, 0, id),
            body,
        };
        // Without a control handle an event has nowhere to go.
        assert_eq!(
            lifecycle.on_event(event(9, ServerEvent::Ready { generation: 3 })),
            None
        );
        lifecycle.opened(4);
        let declined = ServerEvent::Declined {
            reason: DeclineReason::SecureWorldUnavailable,
        };
        assert_eq!(lifecycle.on_event(event(HELLO_REQUEST_ID, declined)), None);
        assert_eq!(
            lifecycle.startup(),
            Startup::Declined(DeclineReason::SecureWorldUnavailable)
        );
        assert!(lifecycle.startup().settled());
        assert!(!lifecycle.readable());
        assert_eq!(
            lifecycle.on_event(event(9, ServerEvent::Ready { generation: 3 })),
            Some(4)
        );
        let mut buf = vec![0u8; FRAME_MAX];
        let len = lifecycle.read(&mut buf).unwrap();
        let frame: Frame<ServerEvent> = tee_proto::decode(&buf[..len]).unwrap();
        assert_eq!(frame.header.request_id, 9);
    }
}
