//! A real hosted stack for integration tests: the secure-world process, init and its servers,
//! in a private state directory, stopped and removed in `Drop`. Every wait is bounded.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use tee_proto::control::{ControlRequest, OpOutcome, OpReport, StackStatus};
use tee_proto::lifecycle::ServerKind;
use teectl::stack::{self, Control, Daemons};
use teesys_root::StatePaths;

/// Sparse, so the size costs nothing; the seed's machine size.
pub const RAM_SIZE: u64 = 8 << 30;

pub struct LiveStack {
    pub paths: StatePaths,
    daemons: Option<Daemons>,
}

impl LiveStack {
    /// A fresh stack in its own state directory, booted and settled.
    pub fn up(name: &str) -> LiveStack {
        LiveStack::up_with(name, false)
    }

    /// [`LiveStack::up`], with tpmd's swtpm sockets too when `swtpm`.
    pub fn up_with(name: &str, swtpm: bool) -> LiveStack {
        tee_test_support::hosted::ensure_stack_binaries();
        let dir: PathBuf =
            std::env::temp_dir().join(format!("teesys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let paths = StatePaths::new(&dir);
        let (daemons, status) =
            stack::up(&paths, RAM_SIZE, swtpm, Duration::from_secs(60)).unwrap();
        assert!(stack::settled(&status));
        LiveStack {
            paths,
            daemons: Some(daemons),
        }
    }

    pub fn control(&self) -> Control {
        Control::connect(&self.paths).unwrap()
    }

    pub fn status(&self) -> StackStatus {
        self.control().status().unwrap()
    }

    /// Runs an operation that must complete.
    pub fn op(&self, request: ControlRequest) -> OpReport {
        let report = self.control().op(request).unwrap();
        assert_eq!(
            report.outcome,
            OpOutcome::Completed,
            "{request:?}: {report:?}"
        );
        report
    }

    pub fn pid(&self, kind: ServerKind) -> u32 {
        self.status().server(kind).pid.unwrap()
    }

    pub fn init_pid(&self) -> u32 {
        self.daemons.as_ref().unwrap().init.id()
    }

    pub fn secure_world_pid(&self) -> u32 {
        self.daemons.as_ref().unwrap().secure_world.id()
    }

    /// Runs teectl on this stack.
    pub fn teectl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_teectl"))
            .arg("--state-dir")
            .arg(self.paths.dir())
            .args(args)
            .output()
            .unwrap()
    }

    /// Orderly down; returns init's report.
    pub fn down(mut self) -> Option<OpReport> {
        let report = stack::down(&self.paths).unwrap().report;
        self.reap();
        report
    }

    fn reap(&mut self) {
        if let Some(mut daemons) = self.daemons.take() {
            for child in [&mut daemons.init, &mut daemons.secure_world] {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for LiveStack {
    fn drop(&mut self) {
        if self.daemons.is_some() {
            let _ = stack::down(&self.paths);
            self.reap();
        }
        let _ = std::fs::remove_dir_all(self.paths.dir());
    }
}

/// Socket inodes a process holds (`/proc/<pid>/fd/* -> socket:[N]`).
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let Ok(link) = std::fs::read_link(entry.unwrap().path()) else {
            continue;
        };
        let text = link.to_string_lossy().into_owned();
        if let Some(inode) = text
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.push(inode.parse().unwrap());
        }
    }
    inodes
}

/// Inodes of Unix sockets bound to a path (listeners and their accepted connections).
pub fn named_socket_inodes() -> Vec<(u64, String)> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields.get(6)?.parse().ok()?;
            let path = fields.get(7)?;
            Some((inode, path.to_string()))
        })
        .collect()
}
