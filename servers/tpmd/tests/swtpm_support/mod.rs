//! Test support for the hosted swtpm front-end: an event loop in a thread that drives a
//! [`SwtpmFrontEnd`] the way tpmd's shell does, with a pluggable backend in place of teed; and
//! in [`tools`], the real TPM clients the tests drive against it.
#![allow(clippy::unwrap_used, dead_code)]

pub mod tools;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tee_proto::tpm::{TpmRequest, TpmResponse};
use tee_proto::Frame;
use tee_rt::event::PollSet;
use tpmd::swtpm::hosted::{Inbound, SwtpmFrontEnd};
use tpmd::ConsumerId;

pub const CC_STARTUP: u32 = 0x144;
pub const CC_GET_RANDOM: u32 = 0x17b;
pub const RC_COMMAND_CODE: u32 = 0x143;

/// What stands where tpmd's core would: takes commands, gives answers (maybe later).
pub trait Backend: Send + 'static {
    fn submit(&mut self, consumer: ConsumerId, frame: Frame<TpmRequest>);
    /// Answers ready since the last call.
    fn answers(&mut self) -> Vec<(ConsumerId, Frame<TpmResponse>)>;
    fn consumer_gone(&mut self, consumer: ConsumerId);
}

/// A scripted TPM answering at once: Startup succeeds, GetRandom(n) gives bytes 1..=n, the
/// rest is TPM_RC_COMMAND_CODE. Records every command code.
#[derive(Default)]
pub struct ScriptedTpm {
    pub codes: Arc<Mutex<Vec<u32>>>,
    pub gone: Arc<Gone>,
    ready: Vec<(ConsumerId, Frame<TpmResponse>)>,
}

/// The consumers the front-end forgot, in order, with a condition tests wait on instead of
/// sleeping.
#[derive(Default)]
pub struct Gone {
    consumers: Mutex<Vec<ConsumerId>>,
    changed: Condvar,
}

impl Gone {
    pub fn push(&self, consumer: ConsumerId) {
        self.consumers.lock().unwrap().push(consumer);
        self.changed.notify_all();
    }

    /// The consumers gone so far.
    pub fn list(&self) -> Vec<ConsumerId> {
        self.consumers.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.consumers.lock().unwrap().len()
    }

    /// Waits until at least `n` consumers are gone, or `timeout` passed; returns how many are.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let consumers = self.consumers.lock().unwrap();
        let (consumers, _) = self
            .changed
            .wait_timeout_while(consumers, timeout, |gone| gone.len() < n)
            .unwrap();
        consumers.len()
    }
}

pub fn scripted_response(command: &[u8]) -> Vec<u8> {
    let code = u32::from_be_bytes(command[6..10].try_into().unwrap());
    let (rc, parameters) = match code {
        CC_STARTUP => (0, Vec::new()),
        CC_GET_RANDOM => {
            let wanted = u16::from_be_bytes(command[10..12].try_into().unwrap());
            let mut parameters = wanted.to_be_bytes().to_vec();
            parameters.extend((1..=wanted).map(|n| n as u8));
            (0u32, parameters)
        }
        _ => (RC_COMMAND_CODE, Vec::new()),
    };
    let size = (10 + parameters.len()) as u32;
    let mut response = vec![0x80, 0x01];
    response.extend_from_slice(&size.to_be_bytes());
    response.extend_from_slice(&rc.to_be_bytes());
    response.extend_from_slice(&parameters);
    response
}

impl Backend for ScriptedTpm {
    fn submit(&mut self, consumer: ConsumerId, frame: Frame<TpmRequest>) {
        let TpmRequest::Command { bytes } = frame.body;
        let code = u32::from_be_bytes(bytes[6..10].try_into().unwrap());
        self.codes.lock().unwrap().push(code);
        let response = TpmResponse::Response {
            bytes: heapless::Vec::from_slice(&scripted_response(&bytes)).unwrap(),
        };
        let header = frame.header.reply_to(0);
        self.ready.push((
            consumer,
            Frame {
                header,
                body: response,
            },
        ));
    }

    fn answers(&mut self) -> Vec<(ConsumerId, Frame<TpmResponse>)> {
        std::mem::take(&mut self.ready)
    }

    fn consumer_gone(&mut self, consumer: ConsumerId) {
        self.gone.push(consumer);
    }
}

/// Every command answered with the same tpmd error.
pub struct FailingTpmd(
    pub tee_proto::tpm::TpmError,
    Vec<(ConsumerId, Frame<TpmResponse>)>,
);

impl FailingTpmd {
    pub fn new(error: tee_proto::tpm::TpmError) -> FailingTpmd {
        FailingTpmd(error, Vec::new())
    }
}

impl Backend for FailingTpmd {
    fn submit(&mut self, consumer: ConsumerId, frame: Frame<TpmRequest>) {
        let header = frame.header.reply_to(0);
        self.1.push((
            consumer,
            Frame {
                header,
                body: TpmResponse::Error(self.0),
            },
        ));
    }

    fn answers(&mut self) -> Vec<(ConsumerId, Frame<TpmResponse>)> {
        std::mem::take(&mut self.1)
    }

    fn consumer_gone(&mut self, _consumer: ConsumerId) {}
}

/// A scratch directory for sockets, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tpmd-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The event loop thread; stops and joins on drop.
pub struct Served {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Runs `front_end` against `backend` in a thread, as tpmd's shell would.
pub fn serve(front_end: SwtpmFrontEnd, backend: impl Backend) -> Served {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let thread = thread::spawn(move || event_loop(front_end, backend, &stop_flag));
    Served {
        stop,
        thread: Some(thread),
    }
}

fn event_loop(mut front_end: SwtpmFrontEnd, mut backend: impl Backend, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let ready = {
            let mut set = PollSet::new();
            front_end.register(&mut set);
            set.wait(Some(Duration::from_millis(20))).unwrap()
        };
        for readiness in ready {
            assert!(SwtpmFrontEnd::owns(readiness.token));
            front_end.on_ready(&readiness);
            // Answers can end connections too, and let a connection's next command in.
            loop {
                let Inbound { requests, gone } = front_end.take_inbound();
                for (consumer, frame) in requests {
                    assert!(SwtpmFrontEnd::owns_consumer(consumer));
                    backend.submit(consumer, frame);
                }
                for consumer in gone {
                    backend.consumer_gone(consumer);
                }
                let answers = backend.answers();
                if answers.is_empty() {
                    break;
                }
                for (consumer, frame) in answers {
                    front_end.answer(consumer, &frame);
                }
            }
        }
    }
}

/// Brings down the stack in `dir` with `teectl down` and removes the directory (a test's drop).
pub fn stack_down(teectl: &std::path::Path, dir: &std::path::Path) {
    let _ = std::process::Command::new(teectl)
        .arg("--state-dir")
        .arg(dir)
        .arg("down")
        .output();
    let _ = std::fs::remove_dir_all(dir);
}
