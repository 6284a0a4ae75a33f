use std::collections::BTreeMap;

use super::*;

/// The policy file people read, next to the init units.
const POLICY_TOML: &str = include_str!("../../../../sysroot/redox/policy.toml");
/// The image configuration fragment that creates the users and groups.
const CONFIG_TOML: &str = include_str!("../../../../sysroot/redox/config.toml");

/// A value of the small TOML subset the policy file uses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int(u64),
    Str(String),
    List(Vec<String>),
}

/// `[section]` → key → value, for the subset the file uses (no nesting, no multi-line values).
fn parse(text: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            continue;
        }
        let (key, value) = line.split_once(" = ").expect("key = value");
        let key = key.trim().trim_matches('"').to_string();
        let value = value.trim();
        let value = if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            Value::List(
                list.split(',')
                    .map(|item| item.trim().trim_matches('"').to_string())
                    .filter(|item| !item.is_empty())
                    .collect(),
            )
        } else if value.starts_with('"') || value.starts_with('{') {
            Value::Str(value.trim_matches('"').to_string())
        } else {
            Value::Int(value.parse().expect("an integer"))
        };
        sections
            .entry(current.clone())
            .or_default()
            .insert(key, value);
    }
    sections
}

fn who_text(who: Who) -> String {
    match who {
        Who::Root => "root".into(),
        Who::Clients => "clients".into(),
        Who::RootOrGroup(gid) => format!("root-or-group:{gid}"),
    }
}

/// redox-scheme `CallerCtx` (uid, gid at openat) is what the path rules judge.
#[test]
fn the_policy_file_says_what_the_code_enforces() {
    let file = parse(POLICY_TOML);
    for daemon in DAEMONS {
        let section = &file[&format!("daemon.{}", daemon.daemon)];
        assert_eq!(
            section["uid"],
            Value::Int(u64::from(daemon.uid)),
            "{}",
            daemon.daemon
        );
        assert_eq!(
            section["gid"],
            Value::Int(u64::from(daemon.gid)),
            "{}",
            daemon.daemon
        );
        assert_eq!(section["provides"], Value::Str(daemon.provides.into()));
        let opens = daemon.opens.iter().map(|s| s.to_string()).collect();
        assert_eq!(section["opens"], Value::List(opens), "{}", daemon.daemon);
    }
    let daemons = file.keys().filter(|k| k.starts_with("daemon.")).count();
    assert_eq!(daemons, DAEMONS.len());
    assert_eq!(file["group"]["tpm"], Value::Int(u64::from(TPM_GROUP)));
    let paths = &file["path"];
    assert_eq!(paths.len(), PATHS.len());
    for rule in PATHS {
        let key = format!("{}:{}", rule.scheme, rule.path);
        assert_eq!(paths[&key], Value::Str(who_text(rule.who)), "{key}");
    }
}

/// The image creates the users and groups the daemons drop to (redox installer's `[users.*]`
/// and `[groups.*]` tables).
#[test]
fn the_image_fragment_creates_the_policys_users_and_groups() {
    let file = parse(CONFIG_TOML);
    for daemon in [TPMD, BNXTD] {
        let user = &file[&format!("users.{}", daemon.daemon)];
        assert_eq!(user["uid"], Value::Int(u64::from(daemon.uid)));
        assert_eq!(user["gid"], Value::Int(u64::from(daemon.gid)));
        let group = &file[&format!("groups.{}", daemon.daemon)];
        assert_eq!(group["gid"], Value::Int(u64::from(daemon.gid)));
    }
    assert_eq!(file["groups.tpm"]["gid"], Value::Int(u64::from(TPM_GROUP)));
}

/// redox-scheme `CallerCtx`: uid and gid of the opener, both matched.
#[test]
fn clients_are_known_by_uid_and_gid_together() {
    let caller = |uid, gid| Caller { pid: 7, uid, gid };
    assert_eq!(
        client_kind(&caller(TPMD.uid, TPMD.gid)),
        Some(ServerKind::Tpmd)
    );
    assert_eq!(
        client_kind(&caller(BNXTD.uid, BNXTD.gid)),
        Some(ServerKind::Bnxtd)
    );
    // Half an identity is none: tpmd's uid in bnxtd's group, and root.
    assert_eq!(client_kind(&caller(TPMD.uid, BNXTD.gid)), None);
    assert_eq!(client_kind(&caller(0, 0)), None);
    assert!(!Who::Clients.admits(&caller(0, 0)));
    assert!(Who::RootOrGroup(TPM_GROUP).admits(&caller(1000, TPM_GROUP)));
    assert!(!Who::RootOrGroup(TPM_GROUP).admits(&caller(1000, 1000)));
    assert!(!Who::Root.admits(&caller(TPMD.uid, TPMD.gid)));
}

/// Redox drivers' convention (bgad `main.rs`): a daemon serves one scheme; `setrens(0, 0)`
/// leaves it what it opened.
#[test]
fn every_daemon_serves_one_scheme_and_clients_open_teeds() {
    let schemes: Vec<&str> = DAEMONS.iter().map(|d| d.provides).collect();
    assert_eq!(schemes, ["tee", "tpm", "bnxt"]);
    for daemon in DAEMONS {
        assert!(
            !daemon.opens.contains(&daemon.provides),
            "{}",
            daemon.daemon
        );
        // Only teed reaches the secure world or physical memory.
        let privileged = daemon.opens.contains(&"smc") || daemon.opens.contains(&"memory");
        assert_eq!(
            privileged,
            daemon.kind == ServerKind::Teed,
            "{}",
            daemon.daemon
        );
        // Every scheme a daemon serves has a control path for root.
        assert_eq!(
            rule(daemon.provides, "control").map(|r| r.who),
            Some(Who::Root)
        );
    }
    assert!(TPMD.opens.contains(&"tee") && BNXTD.opens.contains(&"tee"));
}
