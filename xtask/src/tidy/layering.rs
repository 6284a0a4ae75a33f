//! Which workspace crate may depend on which: the layering rules, checked on `cargo metadata`.
//!
//! The rules describe the workspace after its reorganisation. A rule that names a package the
//! workspace does not have yet is skipped, silently: the part of the reorganisation it guards
//! has not landed, and the rule starts to hold the day every package it names exists.

use std::collections::BTreeSet;
use std::fmt;

use crate::metadata::{DepKind, Metadata};

/// Dependencies that end up in what a crate ships (dev dependencies only build its tests).
const SHIPPED: &[DepKind] = &[DepKind::Normal, DepKind::Build];
/// Every kind: a test's dependency still ties the crates' builds and designs together.
const ANY_KIND: &[DepKind] = &[DepKind::Normal, DepKind::Build, DepKind::Dev];

/// Workspace packages that are not products: the build tool, the test-only crates and the bench.
pub const NOT_PRODUCTS: &[&str] = &["xtask", "tee-test-support", "tee-sim", "teesys-bench"];

/// The packages a rule constrains.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    Packages(&'static [&'static str]),
    /// Every workspace package but [`NOT_PRODUCTS`].
    Products,
}

/// Which workspace dependencies a rule allows its subjects.
#[derive(Debug, Clone, Copy)]
pub enum Allowed {
    /// Only these workspace packages (none when empty).
    Only(&'static [&'static str]),
    /// Any workspace package except these.
    AllBut(&'static [&'static str]),
}

#[derive(Debug)]
pub struct Rule {
    /// Short name printed with every violation.
    pub name: &'static str,
    pub subject: Subject,
    /// The dependency kinds the rule looks at.
    pub kinds: &'static [DepKind],
    pub allowed: Allowed,
    /// Why the rule exists, printed with every violation.
    pub why: &'static str,
}

pub const RULES: &[Rule] = &[
    Rule {
        name: "abi-at-the-bottom",
        subject: Subject::Packages(&["optee-abi"]),
        kinds: SHIPPED,
        allowed: Allowed::Only(&[]),
        why: "the OP-TEE ABI is shared by both worlds, so it can lean on neither",
    },
    Rule {
        name: "proto-above-abi-only",
        subject: Subject::Packages(&["tee-proto"]),
        kinds: SHIPPED,
        allowed: Allowed::Only(&["optee-abi"]),
        why: "every process speaks tee-proto; it must not drag a runtime or a server along",
    },
    Rule {
        name: "secure-world-stands-alone",
        subject: Subject::Packages(&["secure-world"]),
        kinds: SHIPPED,
        allowed: Allowed::Only(&["optee-abi", "libtpms", "bnxt-image"]),
        why: "the OP-TEE model knows nothing of the normal world; secure-world-host is its process",
    },
    Rule {
        name: "clients-reach-secure-world-through-teed",
        subject: Subject::Packages(&["tpmd", "bnxtd"]),
        kinds: ANY_KIND,
        allowed: Allowed::AllBut(&["teed", "secure-world", "secure-world-host", "libtpms"]),
        why: "tpmd and bnxtd only talk to teed over IPC; their tests use tee-test-support",
    },
    Rule {
        name: "init-blind-to-secure-world",
        subject: Subject::Packages(&["teesys-init", "teesys-root"]),
        kinds: ANY_KIND,
        allowed: Allowed::AllBut(&["secure-world", "secure-world-host", "libtpms"]),
        why: "init supervises processes, not the secure world; its tests use tee-test-support",
    },
    Rule {
        name: "smc-caps-on-the-abi-alone",
        subject: Subject::Packages(&["smc-caps"]),
        kinds: SHIPPED,
        allowed: Allowed::Only(&["optee-abi"]),
        why: "teed's Redox and seL4 shells share the capability conduit; it is no_std and leans on the ABI alone",
    },
    Rule {
        name: "redox-shells-not-hosted",
        subject: Subject::Packages(&["tee-redox", "teed-redox", "tpmd-redox", "bnxtd-redox"]),
        kinds: SHIPPED,
        allowed: Allowed::AllBut(&["tee-rt", "secure-world", "secure-world-host", "libtpms"]),
        why: "a Redox daemon is its core and the Redox layer: tee-rt is the hosted (Linux) layer, and the secure world is reached through SMC capabilities only",
    },
    Rule {
        name: "redox-layer-knows-no-server",
        subject: Subject::Packages(&["tee-redox"]),
        kinds: ANY_KIND,
        allowed: Allowed::AllBut(&[
            "teed",
            "tpmd",
            "bnxtd",
            "teed-redox",
            "tpmd-redox",
            "bnxtd-redox",
        ]),
        why: "tee-redox serves every daemon alike; each daemon's Redox crate brings its own core",
    },
    Rule {
        name: "redox-clients-reach-secure-world-through-teed",
        subject: Subject::Packages(&["tpmd-redox", "bnxtd-redox"]),
        kinds: ANY_KIND,
        allowed: Allowed::AllBut(&[
            "teed",
            "teed-redox",
            "secure-world",
            "secure-world-host",
            "libtpms",
        ]),
        why: "on Redox too, tpmd and bnxtd only talk to teed through its scheme",
    },
    Rule {
        name: "products-ship-no-tooling",
        subject: Subject::Products,
        kinds: SHIPPED,
        allowed: Allowed::AllBut(&["tee-test-support", "xtask"]),
        why: "the test harness and the build tool stay out of shipped code (dev deps are fine)",
    },
];

/// One forbidden workspace dependency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub from: String,
    pub to: String,
    pub kind: DepKind,
    /// Behind a feature: still a dependency, since some build of the package ships it.
    pub optional: bool,
    pub rule: &'static str,
    pub why: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} {} dependency on {}, breaking layering rule `{}`: {}",
            self.from,
            if self.optional { "an optional" } else { "a" },
            self.kind.label(),
            self.to,
            self.rule,
            self.why
        )
    }
}

impl Rule {
    /// Every package the rule names; the rule applies once all of them exist.
    fn named_packages(&self) -> impl Iterator<Item = &'static str> {
        let subjects: &[&str] = match self.subject {
            Subject::Packages(names) => names,
            Subject::Products => &[],
        };
        let listed = match self.allowed {
            Allowed::Only(names) | Allowed::AllBut(names) => names,
        };
        subjects.iter().chain(listed).copied()
    }

    fn applies_to(&self, package: &str) -> bool {
        match self.subject {
            Subject::Packages(names) => names.contains(&package),
            Subject::Products => !NOT_PRODUCTS.contains(&package),
        }
    }

    fn allows(&self, dependency: &str) -> bool {
        match self.allowed {
            Allowed::Only(names) => names.contains(&dependency),
            Allowed::AllBut(names) => !names.contains(&dependency),
        }
    }
}

/// The forbidden edges of `metadata` under `rules`, sorted, each named once per rule and kind.
pub fn check(metadata: &Metadata, rules: &[Rule]) -> Vec<Violation> {
    let mut found = BTreeSet::new();
    let active = rules
        .iter()
        .filter(|rule| rule.named_packages().all(|name| metadata.has_package(name)));
    for rule in active {
        for package in metadata
            .packages
            .iter()
            .filter(|p| rule.applies_to(&p.name))
        {
            for dependency in &package.dependencies {
                if metadata.has_package(&dependency.name)
                    && rule.kinds.contains(&dependency.kind)
                    && !rule.allows(&dependency.name)
                {
                    found.insert(Violation {
                        from: package.name.clone(),
                        to: dependency.name.clone(),
                        kind: dependency.kind,
                        optional: dependency.optional,
                        rule: rule.name,
                        why: rule.why,
                    });
                }
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
