//! Where the hosted stack keeps its sockets, RAM, state and logs: one state directory.

use std::path::{Path, PathBuf};

/// The state directory used when none is named: relative, so each checkout has its own.
pub const DEFAULT_STATE_DIR: &str = ".teesys";

/// Every path of one hosted stack, derived from its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    dir: PathBuf,
}

impl StatePaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StatePaths { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sparse normal-world RAM file, shared with the secure world.
    pub fn ram(&self) -> PathBuf {
        self.dir.join("ram")
    }

    /// init's control socket for teectl.
    pub fn init_ctl(&self) -> PathBuf {
        self.dir.join("init.ctl")
    }

    /// tpmd's native consumer socket (tee-proto TPM frames).
    pub fn tpm_sock(&self) -> PathBuf {
        self.dir.join("tpm.sock")
    }

    /// Reserved for tpmd's swtpm-protocol data channel.
    pub fn swtpm_sock(&self) -> PathBuf {
        self.dir.join("swtpm.sock")
    }

    /// Reserved for tpmd's swtpm-protocol control channel.
    pub fn swtpm_ctrl(&self) -> PathBuf {
        self.dir.join("swtpm.sock.ctrl")
    }

    /// bnxtd's consumer socket (tee-proto BNXT frames).
    pub fn bnxt_sock(&self) -> PathBuf {
        self.dir.join("bnxt.sock")
    }

    /// The fTPM's NV state file, kept by the secure world across its own restarts.
    pub fn ftpm_nv(&self) -> PathBuf {
        self.dir.join("ftpm.nv")
    }

    /// The log of a daemon (`secure-world`, `init`).
    pub fn log(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.log"))
    }

    /// The pid file of a daemon.
    pub fn pid_file(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.pid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_lives_in_the_state_dir_and_none_collide() {
        let paths = StatePaths::new("state");
        let all = [
            paths.ram(),
            paths.init_ctl(),
            paths.tpm_sock(),
            paths.swtpm_sock(),
            paths.swtpm_ctrl(),
            paths.bnxt_sock(),
            paths.ftpm_nv(),
            paths.log("init"),
            paths.pid_file("init"),
        ];
        for path in &all {
            assert_eq!(path.parent(), Some(Path::new("state")));
        }
        let mut names: Vec<_> = all.iter().collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(paths.swtpm_ctrl(), Path::new("state/swtpm.sock.ctrl"));
    }
}
