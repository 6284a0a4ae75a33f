//! The hosted secure-world process: its control socket answers statistics and machine resets,
//! and a new conduit connection replaces the old one (a restarted teed reconnects).
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use optee_abi::smc::{func, ret};
use tee_proto::secure::{SecureRequest, SecureResponse, SecureStats};
use tee_proto::{decode, encode, Frame, Header, WireError, FRAME_MAX};
use tee_rt::conduit::{read_regs, write_regs};
use tee_rt::framing::{read_frame, write_frame};

struct World {
    child: Child,
    dir: PathBuf,
}

impl World {
    fn start(name: &str) -> World {
        let dir = std::env::temp_dir().join(format!("sw-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_secure-world"))
            .arg("--conduit")
            .arg(dir.join("secure.sock"))
            .arg("--control")
            .arg(dir.join("secure.ctl"))
            .arg("--ram")
            .arg(dir.join("ram"))
            .args(["--ram-size", &(64u64 << 20).to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let world = World { child, dir };
        let start = Instant::now();
        while !world.control_path().exists() || !world.conduit_path().exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "secure world did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        world
    }

    fn control_path(&self) -> PathBuf {
        self.dir.join("secure.ctl")
    }

    fn conduit_path(&self) -> PathBuf {
        self.dir.join("secure.sock")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn ask(stream: &mut UnixStream, request_id: u32, body: SecureRequest) -> SecureResponse {
    let mut buf = [0u8; FRAME_MAX];
    let frame = Frame {
        header: Header::new(0, 0, request_id),
        body,
    };
    write_frame(stream, encode(&frame, &mut buf).unwrap()).unwrap();
    let mut answer = Vec::new();
    read_frame(stream, &mut answer, FRAME_MAX).unwrap();
    let answer: Frame<SecureResponse> = decode(&answer).unwrap();
    assert_eq!(answer.header.request_id, request_id);
    answer.body
}

fn stats(stream: &mut UnixStream) -> SecureStats {
    match ask(stream, 1, SecureRequest::Stats) {
        SecureResponse::Stats(stats) => stats,
        other => panic!("{other:?}"),
    }
}

fn smc(conduit: &mut UnixStream, id: u32) -> [u64; 8] {
    write_regs(conduit, &[u64::from(id), 0, 0, 0, 0, 0, 0, 0]).unwrap();
    read_regs(conduit).unwrap().unwrap()
}

#[test]
fn control_socket_counts_smcs_and_resets_the_machine() {
    let world = World::start("control");
    let mut control = connect(&world.control_path());
    let fresh = stats(&mut control);
    assert_eq!((fresh.smcs, fresh.resets, fresh.registrations), (0, 0, 0));
    assert_eq!(fresh.threads_free, 2);
    assert!(fresh.is_quiescent());

    let mut conduit = connect(&world.conduit_path());
    let uid = smc(&mut conduit, func::CALLS_UID);
    assert_eq!(uid[0], 0x384f_b3e0);
    assert_eq!(
        smc(&mut conduit, func::ENABLE_SHM_CACHE)[0],
        u64::from(ret::OK)
    );
    let busy = stats(&mut control);
    assert_eq!(busy.smcs, 2);
    assert!(busy.cache_enabled);

    assert_eq!(
        ask(&mut control, 2, SecureRequest::Reset),
        SecureResponse::ResetDone
    );
    let reset = stats(&mut control);
    assert_eq!(reset.resets, 1);
    // A reset clears what the normal world set up.
    assert!(!reset.cache_enabled);
    assert_eq!(reset.smcs, 2);
}

#[test]
fn malformed_control_frames_are_answered_and_garbage_drops_the_connection() {
    let world = World::start("malformed");
    let mut control = connect(&world.control_path());
    // A good header and a body tag no request has: answered BadRequest with its request id.
    let mut buf = [0u8; FRAME_MAX];
    let frame = Frame {
        header: Header::new(0, 0, 9),
        body: SecureRequest::Stats,
    };
    let mut bytes = encode(&frame, &mut buf).unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = 0x55;
    write_frame(&mut control, &bytes).unwrap();
    let mut answer = Vec::new();
    read_frame(&mut control, &mut answer, FRAME_MAX).unwrap();
    let answer: Frame<SecureResponse> = decode(&answer).unwrap();
    assert_eq!(answer.header.request_id, 9);
    assert_eq!(answer.body, SecureResponse::Error(WireError::BadRequest));
    // The connection still works.
    assert_eq!(stats(&mut control).smcs, 0);

    // Another protocol version: nobody to answer, the connection is closed.
    write_frame(&mut control, &[0x7f, 0x00, 0x01]).unwrap();
    let mut rest = Vec::new();
    assert_eq!(control.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn a_new_conduit_connection_replaces_the_old_one() {
    let world = World::start("replace");
    let mut first = connect(&world.conduit_path());
    assert_eq!(smc(&mut first, func::CALLS_REVISION)[0], 2);
    let mut second = connect(&world.conduit_path());
    assert_eq!(smc(&mut second, func::CALLS_REVISION)[0], 2);
    // The first connection was cut off: end of stream, not a hang.
    let mut rest = Vec::new();
    assert_eq!(first.read_to_end(&mut rest).unwrap(), 0);
    let mut control = connect(&world.control_path());
    assert_eq!(stats(&mut control).smcs, 2);
}
