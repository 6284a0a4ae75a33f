//! The hosted secure-world process on its control channel: it answers statistics and machine
//! resets, hands out a new conduit that retires the old one, shrugs off malformed packets, and
//! ends when init closes the channel. The test plays the launcher and init.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use optee_abi::smc::{func, ret};
use tee_proto::secure::{SecureRequest, SecureResponse, SecureStats};
use tee_proto::{decode, Frame, Header, WireError, FRAME_MAX};
use tee_rt::conduit::{read_regs, write_regs};
use tee_rt::endpoint::Endpoint;
use tee_rt::spawn::{spawn_with_endpoint, SECURE_CONTROL_FD_ENV};

struct World {
    child: Child,
    control: Endpoint,
    dir: std::path::PathBuf,
}

impl World {
    fn start(name: &str) -> World {
        let dir = std::env::temp_dir().join(format!("sw-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (theirs, control) = Endpoint::pair().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_secure-world"));
        command
            .arg("--ram")
            .arg(dir.join("ram"))
            .args(["--ram-size", &(64u64 << 20).to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_with_endpoint(command, SECURE_CONTROL_FD_ENV, theirs).unwrap();
        World {
            child,
            control,
            dir,
        }
    }

    /// Sends `body` as request `request_id` and returns the answer with its attachments.
    fn ask(&self, request_id: u32, body: SecureRequest) -> (SecureResponse, Vec<OwnedFd>) {
        let frame = Frame {
            header: Header::new(0, 0, request_id),
            body,
        };
        self.control.send_frame(&frame, &[]).unwrap();
        self.answer(request_id)
    }

    fn answer(&self, request_id: u32) -> (SecureResponse, Vec<OwnedFd>) {
        let mut buf = vec![0u8; FRAME_MAX];
        let (len, fds) = self.control.recv(&mut buf).unwrap().unwrap();
        let answer: Frame<SecureResponse> = decode(&buf[..len]).unwrap();
        assert_eq!(answer.header.request_id, request_id);
        (answer.body, fds)
    }

    fn stats(&self) -> SecureStats {
        match self.ask(1, SecureRequest::Stats).0 {
            SecureResponse::Stats(stats) => stats,
            other => panic!("{other:?}"),
        }
    }

    fn conduit(&self) -> UnixStream {
        match self.ask(7, SecureRequest::NewConduit) {
            (SecureResponse::Conduit, mut fds) if fds.len() == 1 => {
                let stream = UnixStream::from(fds.remove(0));
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                stream
            }
            (other, fds) => panic!("{other:?} with {} attachments", fds.len()),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn smc(conduit: &mut UnixStream, id: u32) -> [u64; 8] {
    write_regs(conduit, &[u64::from(id), 0, 0, 0, 0, 0, 0, 0]).unwrap();
    read_regs(conduit).unwrap().unwrap()
}

#[test]
fn the_control_channel_counts_smcs_and_resets_the_machine() {
    let world = World::start("control");
    let fresh = world.stats();
    assert_eq!((fresh.smcs, fresh.resets, fresh.registrations), (0, 0, 0));
    assert_eq!(fresh.threads_free, 2);
    assert!(fresh.is_quiescent());

    let mut conduit = world.conduit();
    let uid = smc(&mut conduit, func::CALLS_UID);
    assert_eq!(uid[0], 0x384f_b3e0);
    assert_eq!(
        smc(&mut conduit, func::ENABLE_SHM_CACHE)[0],
        u64::from(ret::OK)
    );
    let busy = world.stats();
    assert_eq!(busy.smcs, 2);
    assert!(busy.cache_enabled);

    assert_eq!(
        world.ask(2, SecureRequest::Reset).0,
        SecureResponse::ResetDone
    );
    let reset = world.stats();
    assert_eq!(reset.resets, 1);
    // A reset clears what the normal world set up.
    assert!(!reset.cache_enabled);
    assert_eq!(reset.smcs, 2);
}

#[test]
fn malformed_control_packets_are_answered_or_dropped_and_the_channel_goes_on() {
    let world = World::start("malformed");
    // A good header and a body tag no request has: answered BadRequest with its request id.
    let mut buf = [0u8; FRAME_MAX];
    let frame = Frame {
        header: Header::new(0, 0, 9),
        body: SecureRequest::Stats,
    };
    let mut bytes = tee_proto::encode(&frame, &mut buf).unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = 0x55;
    world.control.send(&bytes, &[]).unwrap();
    assert_eq!(
        world.answer(9).0,
        SecureResponse::Error(WireError::BadRequest)
    );
    // Another protocol version: nobody to answer; the packet is dropped and the channel works.
    world.control.send(&[0x7f, 0x00, 0x01], &[]).unwrap();
    // Descriptors sent to the secure world are closed, not kept.
    let (stray, mut peer) = UnixStream::pair().unwrap();
    let frame = Frame {
        header: Header::new(0, 0, 1),
        body: SecureRequest::Stats,
    };
    world
        .control
        .send_frame(&frame, &[std::os::fd::AsFd::as_fd(&stray)])
        .unwrap();
    assert!(matches!(world.answer(1).0, SecureResponse::Stats(_)));
    drop(stray);
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        peer.read_to_end(&mut rest).unwrap(),
        0,
        "the stray end was kept"
    );
    assert_eq!(world.stats().smcs, 0);
}

#[test]
fn a_new_conduit_retires_the_old_one() {
    let world = World::start("replace");
    let mut first = world.conduit();
    assert_eq!(smc(&mut first, func::CALLS_REVISION)[0], 2);
    let mut second = world.conduit();
    assert_eq!(smc(&mut second, func::CALLS_REVISION)[0], 2);
    // The first conduit was cut off: end of stream, not a hang.
    let mut rest = Vec::new();
    assert_eq!(first.read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(world.stats().smcs, 2);
}

#[test]
fn the_secure_world_ends_when_its_control_channel_closes() {
    let mut world = World::start("orphan");
    assert_eq!(world.stats().smcs, 0);
    let (replacement, _) = Endpoint::pair().unwrap();
    drop(std::mem::replace(&mut world.control, replacement));
    let start = Instant::now();
    loop {
        if let Some(status) = world.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the secure world outlived its control channel"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
