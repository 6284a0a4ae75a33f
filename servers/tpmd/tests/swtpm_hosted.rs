//! The hosted swtpm front-end in front of the real tpmd core (with the fake teed of the core's
//! tests): many consumers at once, each answered correctly and in order, over real sockets.
#![allow(clippy::unwrap_used)]

mod common;
mod swtpm_support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tee_proto::tpm::{TpmRequest, TpmResponse};
use tee_proto::Frame;
use tpmd::swtpm::hosted::SwtpmFrontEnd;
use tpmd::ConsumerId;

use common::{expected_response, tpm_command, Harness};
use swtpm_support::{serve, Backend, Gone, Scratch, ScriptedTpm, Served};

/// The tpmd core, started against the fake teed, as the backend of the front-end.
struct CoreBackend {
    harness: Harness,
    gone: Arc<Gone>,
}

impl Backend for CoreBackend {
    fn submit(&mut self, consumer: ConsumerId, frame: Frame<TpmRequest>) {
        let harness = &mut self.harness;
        harness
            .core
            .handle_consumer(harness.now, &mut harness.ram, consumer, frame);
        harness.pump();
    }

    fn answers(&mut self) -> Vec<(ConsumerId, Frame<TpmResponse>)> {
        std::mem::take(&mut self.harness.to_consumers)
    }

    fn consumer_gone(&mut self, consumer: ConsumerId) {
        self.harness.core.consumer_gone(consumer);
        self.gone.push(consumer);
    }
}

struct Stack {
    data_path: PathBuf,
    gone: Arc<Gone>,
    _served: Served,
    _dir: Scratch,
}

fn front_end(dir: &Scratch) -> (SwtpmFrontEnd, PathBuf) {
    let data_path = dir.0.join("swtpm.sock");
    let data = OwnedFd::from(UnixListener::bind(&data_path).unwrap());
    let control = OwnedFd::from(UnixListener::bind(dir.0.join("swtpm.sock.ctrl")).unwrap());
    (
        SwtpmFrontEnd::from_unix_fds(data, control).unwrap(),
        data_path,
    )
}

fn core_stack() -> Stack {
    let dir = Scratch::new("swtpm-hosted");
    let (front_end, data_path) = front_end(&dir);
    let gone = Arc::new(Gone::default());
    let backend = CoreBackend {
        harness: Harness::serving(),
        gone: Arc::clone(&gone),
    };
    Stack {
        data_path,
        gone,
        _served: serve(front_end, backend),
        _dir: dir,
    }
}

fn read_response(stream: &mut UnixStream) -> Vec<u8> {
    let mut header = [0u8; 10];
    stream.read_exact(&mut header).unwrap();
    let size = u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize;
    let mut response = header.to_vec();
    response.resize(size, 0);
    stream.read_exact(&mut response[10..]).unwrap();
    response
}

fn connect(path: &PathBuf) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn eight_consumers_in_parallel_each_get_their_own_answers_in_order() {
    const CONSUMERS: u32 = 8;
    const COMMANDS: u32 = 1000;
    let stack = core_stack();
    let started = Instant::now();
    let clients: Vec<_> = (0..CONSUMERS)
        .map(|client| {
            let path = stack.data_path.clone();
            thread::spawn(move || {
                let mut stream = connect(&path);
                for n in 0..COMMANDS {
                    // A command code unique to this client and command: the fake TA's
                    // response names it, so a misrouted or reordered answer shows.
                    let command = tpm_command(0x1000_0000 | client << 16 | n, &[0, 16]);
                    stream.write_all(&command).unwrap();
                    assert_eq!(read_response(&mut stream), expected_response(&command));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} commands from {CONSUMERS} swtpm consumers in {elapsed:?} ({:?} per command)",
        CONSUMERS * COMMANDS,
        elapsed / (CONSUMERS * COMMANDS)
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}

#[test]
fn tcti_style_connection_per_command_from_many_threads() {
    const CONSUMERS: u32 = 8;
    const COMMANDS: u32 = 100;
    let stack = core_stack();
    let clients: Vec<_> = (0..CONSUMERS)
        .map(|client| {
            let path = stack.data_path.clone();
            thread::spawn(move || {
                for n in 0..COMMANDS {
                    let mut stream = connect(&path);
                    let command = tpm_command(0x2000_0000 | client << 16 | n, &[]);
                    stream.write_all(&command).unwrap();
                    assert_eq!(read_response(&mut stream), expected_response(&command));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // Every connection is forgotten by the core once it closed.
    let all = (CONSUMERS * COMMANDS) as usize;
    assert!(
        stack.gone.wait_for(all, Duration::from_secs(10)) >= all,
        "connections not released"
    );
    let mut gone = stack.gone.list();
    gone.sort();
    gone.dedup();
    assert_eq!(
        gone.len(),
        (CONSUMERS * COMMANDS) as usize,
        "one consumer id each"
    );
}

#[test]
fn pipelined_commands_are_answered_in_order_then_a_bad_frame_closes() {
    let stack = core_stack();
    let mut stream = connect(&stack.data_path);
    let commands: Vec<Vec<u8>> = (0..5).map(|n| tpm_command(0x3000_0000 + n, &[])).collect();
    let mut burst = commands.concat();
    // A header declaring 5 bytes: framing is lost after the five good commands.
    burst.extend_from_slice(&[0x80, 0x01, 0, 0, 0, 5]);
    stream.write_all(&burst).unwrap();
    for command in &commands {
        assert_eq!(read_response(&mut stream), expected_response(command));
    }
    assert_eq!(
        read_response(&mut stream),
        [0x80, 0x01, 0, 0, 0, 0x0a, 0, 0, 0x01, 0x42]
    );
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the connection is closed after the error");
}

#[test]
fn a_half_closed_connection_still_gets_its_answer() {
    let dir = Scratch::new("swtpm-half-close");
    let (front_end, data_path) = front_end(&dir);
    let _served = serve(front_end, ScriptedTpm::default());
    let mut stream = connect(&data_path);
    let get_random = tpm_command(swtpm_support::CC_GET_RANDOM, &[0, 3]);
    stream.write_all(&get_random).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut everything = Vec::new();
    stream.read_to_end(&mut everything).unwrap();
    assert_eq!(everything, swtpm_support::scripted_response(&get_random));
}

#[test]
fn a_consumer_that_leaves_mid_command_is_forgotten() {
    let stack = core_stack();
    let mut stream = connect(&stack.data_path);
    // Half a command, then gone.
    stream
        .write_all(&tpm_command(0x4000_0000, &[1, 2, 3])[..7])
        .unwrap();
    drop(stream);
    assert!(
        stack.gone.wait_for(1, Duration::from_secs(5)) >= 1,
        "consumer not released"
    );
    assert_eq!(stack.gone.count(), 1);
}
