//! Who each teesys daemon is on Redox, which schemes it opens before it drops into the null
//! namespace, and who may open the paths of the scheme it serves. `sysroot/redox/policy.toml`
//! states the same for people (a test keeps the two in step); the adapters enforce the path
//! rules, the daemons' mains open nothing else, and `setrens(0, 0)` makes that final.
//!
//! Identities are uid and gid: Redox's init runs every service as root, so tpmd and bnxtd drop
//! to their own uid and gid before they open teed's scheme, and teed tells them apart by it.
//! teed stays root: the kernel's `memory` scheme maps physical memory for root alone, and the
//! `smc` scheme teed needs would be root-only as well.

use tee_proto::lifecycle::ServerKind;

use crate::caller::Caller;

/// A daemon: who it runs as, the scheme it serves, and the schemes it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonPolicy {
    pub daemon: &'static str,
    pub kind: ServerKind,
    pub uid: u32,
    pub gid: u32,
    /// The scheme it registers.
    pub provides: &'static str,
    /// Every scheme it opens before `setrens(0, 0)` (`namespace`: the scheme-creation
    /// capability redox-scheme's `Socket` opens).
    pub opens: &'static [&'static str],
}

/// teed: the SMC capabilities and physical memory; serves `tee`.
pub const TEED: DaemonPolicy = DaemonPolicy {
    daemon: "teed",
    kind: ServerKind::Teed,
    uid: 0,
    gid: 0,
    provides: "tee",
    opens: &["namespace", "event", "time", "smc", "memory"],
};

/// tpmd: teed's scheme only; serves `tpm`.
pub const TPMD: DaemonPolicy = DaemonPolicy {
    daemon: "tpmd",
    kind: ServerKind::Tpmd,
    uid: 901,
    gid: 901,
    provides: "tpm",
    opens: &["namespace", "event", "time", "tee"],
};

/// bnxtd: teed's scheme only; serves `bnxt`.
pub const BNXTD: DaemonPolicy = DaemonPolicy {
    daemon: "bnxtd",
    kind: ServerKind::Bnxtd,
    uid: 902,
    gid: 902,
    provides: "bnxt",
    opens: &["namespace", "event", "time", "tee"],
};

/// The three daemons.
pub const DAEMONS: [DaemonPolicy; 3] = [TEED, TPMD, BNXTD];

/// The group whose members may open `/scheme/tpm/tpm0` besides root (the role Linux gives the
/// `tss` group on `/dev/tpmrm0`).
pub const TPM_GROUP: u32 = 903;

/// Who may open a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// uid 0.
    Root,
    /// A client daemon (tpmd or bnxtd), known by its uid and gid together.
    Clients,
    /// uid 0, or a caller whose gid is this group.
    RootOrGroup(u32),
}

impl Who {
    /// Whether `caller` qualifies.
    pub fn admits(self, caller: &Caller) -> bool {
        match self {
            Who::Root => caller.is_root(),
            Who::Clients => client_kind(caller).is_some(),
            Who::RootOrGroup(gid) => caller.is_root() || caller.gid == gid,
        }
    }
}

/// One path of a teesys scheme and who may open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRule {
    pub scheme: &'static str,
    /// The path; `<generation>` stands for a decimal number.
    pub path: &'static str,
    pub who: Who,
}

/// Every path the three schemes serve.
pub const PATHS: [PathRule; 7] = [
    PathRule {
        scheme: "tee",
        path: "client/<generation>",
        who: Who::Clients,
    },
    PathRule {
        scheme: "tee",
        path: "window",
        who: Who::Clients,
    },
    PathRule {
        scheme: "tee",
        path: "control",
        who: Who::Root,
    },
    PathRule {
        scheme: "tpm",
        path: "tpm0",
        who: Who::RootOrGroup(TPM_GROUP),
    },
    PathRule {
        scheme: "tpm",
        path: "control",
        who: Who::Root,
    },
    PathRule {
        scheme: "bnxt",
        path: "nic",
        who: Who::Root,
    },
    PathRule {
        scheme: "bnxt",
        path: "control",
        who: Who::Root,
    },
];

/// The rule for `path` of `scheme`.
pub fn rule(scheme: &str, path: &str) -> Option<PathRule> {
    PATHS
        .into_iter()
        .find(|rule| rule.scheme == scheme && rule.path == path)
}

/// The client daemon `caller` is, by uid and gid together.
pub fn client_kind(caller: &Caller) -> Option<ServerKind> {
    [TPMD, BNXTD]
        .into_iter()
        .find(|daemon| daemon.uid == caller.uid && daemon.gid == caller.gid)
        .map(|daemon| daemon.kind)
}

/// The policy of daemon `kind`.
pub fn daemon(kind: ServerKind) -> DaemonPolicy {
    match kind {
        ServerKind::Teed => TEED,
        ServerKind::Tpmd => TPMD,
        ServerKind::Bnxtd => BNXTD,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
