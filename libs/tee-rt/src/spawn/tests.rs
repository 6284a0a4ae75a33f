use super::*;

use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;

/// Kills and reaps a child when the test ends, however it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open_fds(pid: u32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    fds.sort_unstable();
    fds
}

/// The child's environment. Right after spawn the new image may still be setting up its
/// stack (/proc then shows an empty environment), so this waits, boundedly, for it to appear.
fn environment(pid: u32) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        if !raw.is_empty() || started.elapsed() > std::time::Duration::from_secs(5) {
            return raw
                .split(|b| *b == 0)
                .map(|var| String::from_utf8_lossy(var).into_owned())
                .collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn child_inherits_exactly_its_lifecycle_endpoint() {
    let (init_side, child_side) = Endpoint::pair().unwrap();
    // Descriptors this process holds must not reach the child.
    let _unrelated = Endpoint::pair().unwrap();
    let mut child = Reaped(
        spawn_server(
            Path::new("/bin/sleep"),
            &[OsStr::new("30")],
            child_side,
            &[("EXTRA", "yes")],
        )
        .unwrap(),
    );
    let pid = child.0.id();
    // Read first: once the environment shows, exec has also closed the close-on-exec fds.
    let env = environment(pid);
    assert!(env.iter().any(|var| var == "EXTRA=yes"), "{env:?}");
    let lifecycle: i32 = env
        .iter()
        .find_map(|var| var.strip_prefix(&format!("{LIFECYCLE_FD_ENV}=")))
        .unwrap()
        .parse()
        .unwrap();
    assert!(lifecycle > 2);
    // execve installs the new image (and its environment) a moment before it closes the
    // close-on-exec descriptors (Rust's exec-error pipe among them): wait for that to finish.
    let expected = vec![0, 1, 2, lifecycle];
    let mut fds = open_fds(pid);
    for _ in 0..400 {
        if fds == expected {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        fds = open_fds(pid);
    }
    assert_eq!(fds, expected);
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{lifecycle}")).unwrap();
    assert!(
        target.to_string_lossy().starts_with("socket:"),
        "{target:?}"
    );

    // The parent's copy was closed by spawn_server, the child's goes with it: the pair ends.
    init_side.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    assert!(init_side.recv(&mut buf).unwrap_err().is_would_block());
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(init_side.recv(&mut buf).unwrap().is_none());
}

#[test]
fn spawning_a_missing_program_fails_and_closes_the_endpoint() {
    let (init_side, child_side) = Endpoint::pair().unwrap();
    let error = spawn_server(
        Path::new("/nonexistent/teesys-server"),
        &[],
        child_side,
        &[],
    )
    .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    init_side.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    assert!(init_side.recv(&mut buf).unwrap().is_none());
}

#[test]
fn taking_the_lifecycle_endpoint_checks_every_step() {
    let taken = AtomicBool::new(false);
    assert!(matches!(
        take_lifecycle(None, &taken),
        Err(SpawnError::Missing)
    ));
    for bad in ["", "x", "-4", "2"] {
        assert!(
            matches!(take_lifecycle(Some(bad.into()), &taken), Err(SpawnError::NotANumber { value }) if value == bad),
            "{bad:?}"
        );
    }
    // A number no descriptor has.
    assert!(matches!(
        take_lifecycle(Some("999999".into()), &taken),
        Err(SpawnError::NotOpen { fd: 999_999 })
    ));
    assert!(!taken.load(Ordering::SeqCst));

    // A stream socket is not an endpoint.
    let (stream, _peer) = UnixStream::pair().unwrap();
    let raw = stream.into_raw_fd();
    assert!(matches!(
        take_lifecycle(Some(raw.to_string()), &taken),
        Err(SpawnError::NotSeqpacket { fd }) if fd == raw
    ));

    let taken = AtomicBool::new(false);
    let (ours, peer) = Endpoint::pair().unwrap();
    let raw = ours.into_fd().into_raw_fd();
    let endpoint = take_lifecycle(Some(format!(" {raw}\n")), &taken).unwrap();
    endpoint.send(b"hello init", &[]).unwrap();
    let mut buf = [0u8; 16];
    let (len, _) = peer.recv(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..len], b"hello init");
    let flags = fcntl(endpoint.as_fd(), FcntlArg::F_GETFD).unwrap();
    assert_ne!(flags & FdFlag::FD_CLOEXEC.bits(), 0);
    // Only once.
    assert!(matches!(
        take_lifecycle(Some(raw.to_string()), &taken),
        Err(SpawnError::AlreadyTaken)
    ));
}

#[test]
fn sibling_binaries_are_found_next_to_the_executable_or_above_deps() {
    let exe = std::env::current_exe().unwrap();
    let own_name = exe.file_name().unwrap().to_str().unwrap();
    assert_eq!(sibling_binary(own_name).unwrap(), exe);
    let error = sibling_binary("teesys-no-such-binary").unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    assert!(error.to_string().contains("teesys-no-such-binary"));
}
