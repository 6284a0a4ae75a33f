//! Hostile local peers against a real stack: a peer trickling one byte every 1.5 s into every
//! socket of the state directory that accepts connections (init.ctl, the consumer sockets,
//! the swtpm sockets) must not delay `teectl status` past a second.
//!
//! Timing is a functional bound ("answered within a second at all"), not a benchmark: init
//! used to read control frames with a blocking read, so a trickler stalled every request
//! behind it for seconds.
#![allow(clippy::unwrap_used)]

mod live;

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use live::LiveStack;
use tee_proto::control::StackPhase;

/// The pace of the trickle.
const TRICKLE_EVERY: Duration = Duration::from_millis(1_500);
/// What `teectl status` must answer within.
const STATUS_BOUND: Duration = Duration::from_secs(1);
/// How long status is asked back to back while the peers trickle: past the first trickled
/// bytes, past init's frame deadline (2 s, when the trickler is dropped and reconnects) and
/// a few ticks more.
const UNDER_ATTACK: Duration = Duration::from_secs(6);

/// Every socket file in `dir` that accepts a connection.
fn listening_sockets(dir: &Path) -> Vec<PathBuf> {
    let mut sockets: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_socket())
        .map(|entry| entry.path())
        .filter(|path| UnixStream::connect(path).is_ok())
        .collect();
    sockets.sort();
    sockets
}

/// Connects to `path` and writes one byte (of a frame header announcing 16 bytes, so it
/// never completes in time) every [`TRICKLE_EVERY`]; reconnects when dropped. Reports each
/// byte delivered on `delivered`.
fn trickle(path: PathBuf, stop: Arc<AtomicBool>, delivered: mpsc::Sender<PathBuf>) {
    let pattern = [0x10u8, 0, 0, 0];
    let mut stream: Option<UnixStream> = None;
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        if stream.is_none() {
            stream = UnixStream::connect(&path).ok();
            next = 0;
        }
        let sent = stream
            .as_mut()
            .is_some_and(|s| s.write_all(&pattern[next % pattern.len()..][..1]).is_ok());
        if sent {
            next += 1;
            let _ = delivered.send(path.clone());
        } else {
            stream = None;
        }
        thread::sleep(TRICKLE_EVERY);
    }
}

#[test]
fn status_answers_within_a_second_while_peers_trickle_into_every_socket() {
    let stack = LiveStack::up_with("trickle", true);
    let sockets = listening_sockets(stack.paths.dir());
    let names: Vec<String> = sockets
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "init.ctl",
        "tpm.sock",
        "bnxt.sock",
        "swtpm.sock",
        "swtpm.sock.ctrl",
    ] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (delivered_tx, delivered) = mpsc::channel();
    let tricklers: Vec<_> = sockets
        .iter()
        .map(|path| {
            let (path, stop, tx) = (path.clone(), Arc::clone(&stop), delivered_tx.clone());
            thread::spawn(move || trickle(path, stop, tx))
        })
        .collect();
    // Every socket has a frame started by a peer before the first request.
    let mut started: Vec<PathBuf> = Vec::new();
    while started.len() < sockets.len() {
        let path = delivered.recv_timeout(Duration::from_secs(10)).unwrap();
        if !started.contains(&path) {
            started.push(path);
        }
    }

    let attack = Instant::now();
    let mut control = stack.control();
    let mut worst = Duration::ZERO;
    let mut asked = 0;
    while attack.elapsed() < UNDER_ATTACK {
        let asked_at = Instant::now();
        let status = control.status().unwrap();
        let took = asked_at.elapsed();
        assert!(
            took < STATUS_BOUND,
            "status took {took:?} under the trickle"
        );
        assert_eq!(status.phase, StackPhase::Running);
        worst = worst.max(took);
        asked += 1;
    }
    // A fresh teectl process too, connection and all.
    let asked_at = Instant::now();
    let output = stack.teectl(&["status"]);
    let teectl_took = asked_at.elapsed();
    assert!(output.status.success(), "{output:?}");
    assert!(
        teectl_took < STATUS_BOUND,
        "teectl status took {teectl_took:?}"
    );
    // The secure world still answered init's statistics request within its deadline.
    assert!(control.status().unwrap().secure.is_some());
    eprintln!(
        "under a trickle into {names:?}: {asked} status requests, the slowest {worst:?}; \
         teectl status {teectl_took:?}"
    );

    stop.store(true, Ordering::Relaxed);
    for trickler in tricklers {
        trickler.join().unwrap();
    }
    stack.down();
}
