//! Capabilities on the real hosted stack: only teed holds the SMC conduit, and nothing but the
//! endpoints init handed to its clients leads to teed.
#![allow(clippy::unwrap_used)]

mod live;

use std::os::fd::AsRawFd;
use std::time::Duration;

use live::{named_socket_inodes, socket_inodes, LiveStack};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use tee_proto::control::ControlRequest;
use tee_proto::lifecycle::ServerKind;

#[test]
fn only_teed_holds_the_conduit_and_teed_has_no_address() {
    let stack = LiveStack::up("isolation");
    let status = stack.status();
    let conduit = status
        .conduit_inode
        .expect("init reports the conduit it handed out");
    let teed = stack.pid(ServerKind::Teed);
    assert!(
        socket_inodes(teed).contains(&conduit),
        "teed does not hold the conduit"
    );
    for (who, pid) in [
        ("tpmd", stack.pid(ServerKind::Tpmd)),
        ("bnxtd", stack.pid(ServerKind::Bnxtd)),
        ("init", stack.init_pid()),
    ] {
        assert!(
            !socket_inodes(pid).contains(&conduit),
            "{who} holds a copy of the conduit"
        );
    }

    // No path leads to teed: none of its sockets is bound to an address.
    let named = named_socket_inodes();
    for inode in socket_inodes(teed) {
        if let Some((_, path)) = named.iter().find(|(named, _)| *named == inode) {
            panic!("teed holds a socket bound to {path}");
        }
    }
    // Nor to the secure world: it holds no socket bound to an address, and no file in the state
    // directory is a socket of its.
    for inode in socket_inodes(stack.secure_world_pid()) {
        if let Some((_, path)) = named.iter().find(|(named, _)| *named == inode) {
            panic!("the secure world holds a socket bound to {path}");
        }
    }

    // A restarted teed gets a new conduit, and again only it holds one.
    let report = stack.op(ControlRequest::Kill(ServerKind::Teed));
    let new_conduit = report.after.conduit_inode.unwrap();
    assert_ne!(new_conduit, conduit);
    let new_teed = report.after.server(ServerKind::Teed).pid.unwrap();
    assert_ne!(new_teed, teed);
    assert!(socket_inodes(new_teed).contains(&new_conduit));
    for pid in [
        stack.pid(ServerKind::Tpmd),
        stack.pid(ServerKind::Bnxtd),
        stack.init_pid(),
    ] {
        let held = socket_inodes(pid);
        assert!(!held.contains(&new_conduit) && !held.contains(&conduit));
    }
}

/// The 64-byte register frame of OP-TEE's CALLS_UID fast call, as teed's conduit carries it.
fn calls_uid_frame() -> [u8; 64] {
    let mut frame = [0u8; 64];
    frame[..8].copy_from_slice(&u64::from(optee_abi::smc::func::CALLS_UID).to_le_bytes());
    frame
}

/// Whether `answer` holds OP-TEE's API UID in a0..a3, as the secure world answers CALLS_UID.
fn is_optee_uid(answer: &[u8]) -> bool {
    answer.len() >= 32
        && (0..4).all(|i| {
            let word = u64::from_le_bytes(answer[i * 8..i * 8 + 8].try_into().unwrap());
            word == u64::from(optee_abi::smc::MSG_UID[i])
        })
}

/// Sends an SMC frame into the socket at `path` the way a hostile local process would, over a
/// stream and over a seqpacket connection; returns what came back within a short wait.
fn smc_through(path: &std::path::Path) -> Vec<Vec<u8>> {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let wait = Duration::from_millis(500);
    let mut answers = Vec::new();
    if let Ok(mut stream) = UnixStream::connect(path) {
        stream.set_read_timeout(Some(wait)).unwrap();
        let _ = stream.write_all(&calls_uid_frame());
        let mut answer = vec![0u8; 256];
        if let Ok(n) = stream.read(&mut answer) {
            answer.truncate(n);
            answers.push(answer);
        }
    }
    let seqpacket = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    if connect(seqpacket.as_raw_fd(), &UnixAddr::new(path).unwrap()).is_ok() {
        let endpoint = tee_rt::endpoint::Endpoint::from_fd(seqpacket);
        let _ = endpoint.send(&calls_uid_frame(), &[]);
        let mut set = tee_rt::event::PollSet::new();
        set.register(
            endpoint.as_fd(),
            tee_rt::event::Token(0),
            tee_rt::event::Interest::READABLE,
        );
        if set.wait(Some(wait)).is_ok_and(|ready| !ready.is_empty()) {
            let mut answer = vec![0u8; 4096];
            if let Ok(Some((n, _))) = endpoint.recv(&mut answer) {
                answer.truncate(n);
                answers.push(answer);
            }
        }
    }
    answers
}

#[test]
fn no_socket_in_the_state_directory_answers_an_smc_and_the_tpm_answers_after() {
    let stack = LiveStack::up("smc-probe");
    let mut probed = 0;
    for entry in std::fs::read_dir(stack.paths.dir()).unwrap() {
        let path = entry.unwrap().path();
        let is_socket = std::fs::symlink_metadata(&path)
            .is_ok_and(|meta| std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
        if !is_socket {
            continue;
        }
        probed += 1;
        for answer in smc_through(&path) {
            assert!(
                !is_optee_uid(&answer),
                "{} answered an SMC as OP-TEE",
                path.display()
            );
        }
    }
    assert!(probed >= 3, "init.ctl, tpm.sock and bnxt.sock at least");
    // Nothing took teed's place: the TPM still answers.
    let startup = stack.teectl(&["tpm", "startup"]);
    let random = stack.teectl(&["tpm", "getrandom", "8"]);
    assert!(
        startup.status.success() && random.status.success(),
        "{}{}{}",
        String::from_utf8_lossy(&startup.stdout),
        String::from_utf8_lossy(&random.stdout),
        String::from_utf8_lossy(&random.stderr)
    );
    assert_eq!(stack.status().server(ServerKind::Teed).generation, 1);
}

#[test]
fn teectl_without_a_stack_says_how_to_start_one() {
    let dir = std::env::temp_dir().join(format!("teesys-nostack-{}", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_teectl"))
        .arg("--state-dir")
        .arg(&dir)
        .arg("status")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stack not running") && stderr.contains("teectl up"),
        "{stderr}"
    );
}

/// The mappings of `pid` backed by a file or memory object (not anonymous, not the binary's
/// own code and libraries).
fn shared_mappings(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter_map(|line| {
            let path = line.split_whitespace().nth(5)?;
            let shared = line.split_whitespace().nth(1)?.ends_with('s');
            shared.then(|| path.to_string())
        })
        .collect()
}

#[test]
fn each_client_maps_only_its_own_window_and_cannot_resize_it() {
    let stack = LiveStack::up("windows");
    let ram = stack.paths.ram().display().to_string();
    for (kind, own) in [
        (ServerKind::Tpmd, "tpmd-window"),
        (ServerKind::Bnxtd, "bnxtd-window"),
    ] {
        let pid = stack.pid(kind);
        let mappings = shared_mappings(pid);
        assert!(
            mappings.iter().all(|m| m.contains(own)),
            "{kind:?} maps {mappings:?}"
        );
        assert!(!mappings.is_empty(), "{kind:?} maps no window");
        assert!(!mappings.iter().any(|m| m.contains(&ram)));
        // Its descriptors lead to nothing of RAM but its window either.
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let link = std::fs::read_link(entry.unwrap().path()).unwrap();
            let link = link.to_string_lossy();
            assert!(!link.contains(&ram), "{kind:?} holds the RAM file");
            let other = if own == "tpmd-window" {
                "bnxtd-window"
            } else {
                "tpmd-window"
            };
            assert!(!link.contains(other), "{kind:?} holds {link}");
        }
    }
    // teed and the secure world see the windows in place; the RAM file is theirs alone.
    for pid in [stack.pid(ServerKind::Teed), stack.secure_world_pid()] {
        let mappings = shared_mappings(pid);
        assert!(mappings.iter().any(|m| m.contains(&ram)));
        assert!(mappings.iter().any(|m| m.contains("tpmd-window")));
        assert!(mappings.iter().any(|m| m.contains("bnxtd-window")));
    }

    // A hostile tpmd: its window cannot shrink or grow, and scribbling over its own buffer
    // hurts nobody else: teed and the secure world keep serving. (tpmd closed its descriptor
    // once mapped; the test takes the same object from init, which keeps it for the next
    // incarnation.)
    let window = std::fs::read_dir(format!("/proc/{}/fd", stack.init_pid()))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            std::fs::read_link(path).is_ok_and(|l| l.to_string_lossy().contains("tpmd-window"))
        })
        .expect("init keeps tpmd's window");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&window)
        .unwrap();
    assert!(file.set_len(0).is_err(), "the window could be truncated");
    assert!(file.set_len(1 << 30).is_err(), "the window could grow");
    std::os::unix::fs::FileExt::write_all_at(&file, &[0xA5; 4096], 0).unwrap();
    drop(file);
    let startup = stack.teectl(&["tpm", "startup"]);
    let random = stack.teectl(&["tpm", "getrandom", "8"]);
    assert!(startup.status.success() && random.status.success());
    let status = stack.status();
    for kind in [ServerKind::Teed, ServerKind::Tpmd, ServerKind::Bnxtd] {
        assert_eq!(status.server(kind).generation, 1, "{kind:?} restarted");
    }
}

#[test]
fn teed_notices_a_lost_conduit_at_once_and_init_shows_it() {
    let stack = LiveStack::up("conduit-lost");
    let before = stack.status();
    assert!(
        !before
            .server(ServerKind::Teed)
            .holds
            .unwrap()
            .tee_unavailable
    );
    // The secure world dies (its process killed): nobody has sent an SMC yet.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stack.secure_world_pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let unavailable = loop {
        let holds = stack.status().server(ServerKind::Teed).holds;
        if holds.is_some_and(|h| h.tee_unavailable) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(unavailable, "init never showed teed's lost conduit");
    let shown = stack.teectl(&["status"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("TEE UNAVAILABLE"));
    // The TPM consumer hears a clear "TEE unavailable", not a hang.
    let random = stack.teectl(&["tpm", "getrandom", "8"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&random.stdout),
        String::from_utf8_lossy(&random.stderr)
    );
    assert!(
        !random.status.success() && said.to_lowercase().contains("unavailable"),
        "{said}"
    );
}
