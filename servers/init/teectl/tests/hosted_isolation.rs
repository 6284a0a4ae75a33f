//! Capabilities on the real hosted stack: only teed holds the SMC conduit, and nothing but the
//! endpoints init handed to its clients leads to teed.
#![allow(clippy::unwrap_used)]

mod live;

use live::{named_socket_inodes, socket_inodes, LiveStack};
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
    // The clients' named sockets are their own consumer listeners, nothing of the secure world.
    let secure_paths = [stack.paths.secure_sock(), stack.paths.secure_ctl()]
        .map(|path| path.display().to_string());
    for pid in [stack.pid(ServerKind::Tpmd), stack.pid(ServerKind::Bnxtd)] {
        for inode in socket_inodes(pid) {
            if let Some((_, path)) = named.iter().find(|(named, _)| *named == inode) {
                assert!(!secure_paths.contains(path), "a client holds {path}");
            }
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
