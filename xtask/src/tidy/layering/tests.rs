use super::*;
use crate::metadata;

/// The package names of the workspace after its reorganisation.
const FINAL_PACKAGES: &[&str] = &[
    "optee-abi",
    "tee-proto",
    "tee-rt",
    "tee-client",
    "tee-sim",
    "libtpms",
    "bnxt-image",
    "tee-test-support",
    "secure-world",
    "secure-world-host",
    "teed",
    "tpmd",
    "bnxtd",
    "teesys-init",
    "teesys-root",
    "teectl",
    "smc-caps",
    "tee-redox",
    "teed-redox",
    "tpmd-redox",
    "bnxtd-redox",
    "teesys-bench",
    "xtask",
];

/// The intended final layout: (package, [(dependency, kind)]), kinds spelled as in metadata.
const CLEAN: &[(&str, &[(&str, &str)])] = &[
    ("optee-abi", &[]),
    ("tee-proto", &[("optee-abi", "null")]),
    ("tee-rt", &[("optee-abi", "null"), ("tee-proto", "null")]),
    (
        "tee-client",
        &[
            ("optee-abi", "null"),
            ("tee-proto", "null"),
            ("tee-rt", "null"),
        ],
    ),
    ("libtpms", &[]),
    ("bnxt-image", &[]),
    (
        "secure-world",
        &[
            ("optee-abi", "null"),
            ("libtpms", "null"),
            ("bnxt-image", "null"),
        ],
    ),
    (
        "secure-world-host",
        &[
            ("secure-world", "null"),
            ("tee-rt", "null"),
            ("tee-proto", "null"),
        ],
    ),
    (
        "tee-test-support",
        &[
            ("secure-world", "null"),
            ("teed", "null"),
            ("tee-rt", "null"),
        ],
    ),
    (
        "teed",
        &[
            ("tee-proto", "null"),
            ("tee-rt", "null"),
            ("secure-world", "\"dev\""),
        ],
    ),
    (
        "tpmd",
        &[
            ("tee-client", "null"),
            ("tee-proto", "null"),
            ("tee-test-support", "\"dev\""),
        ],
    ),
    (
        "bnxtd",
        &[
            ("tee-client", "null"),
            ("bnxt-image", "null"),
            ("tee-test-support", "\"dev\""),
        ],
    ),
    (
        "teesys-init",
        &[("tee-proto", "null"), ("tee-test-support", "\"dev\"")],
    ),
    (
        "teesys-root",
        &[("teesys-init", "null"), ("tee-rt", "null")],
    ),
    (
        "teectl",
        &[
            ("tee-client", "null"),
            ("bnxt-image", "null"),
            ("tee-test-support", "\"dev\""),
        ],
    ),
    (
        "tee-sim",
        &[
            ("secure-world", "null"),
            ("teed", "null"),
            ("tpmd", "null"),
            ("libtpms", "\"dev\""),
        ],
    ),
    ("smc-caps", &[("optee-abi", "null")]),
    (
        "tee-redox",
        &[
            ("optee-abi", "null"),
            ("tee-proto", "null"),
            ("tee-client", "null"),
        ],
    ),
    (
        "teed-redox",
        &[
            ("teed", "null"),
            ("tee-redox", "null"),
            ("smc-caps", "null"),
            ("tee-test-support", "\"dev\""),
            ("tpmd-redox", "\"dev\""),
            ("bnxtd-redox", "\"dev\""),
        ],
    ),
    ("tpmd-redox", &[("tpmd", "null"), ("tee-redox", "null")]),
    ("bnxtd-redox", &[("bnxtd", "null"), ("tee-redox", "null")]),
    (
        "teesys-bench",
        &[
            ("teectl", "null"),
            ("tee-sim", "null"),
            ("tee-test-support", "null"),
        ],
    ),
    ("xtask", &[]),
];

fn metadata_json(packages: &[(&str, Vec<(&str, &str)>)]) -> String {
    let packages: Vec<String> = packages
        .iter()
        .map(|(name, dependencies)| {
            let dependencies: Vec<String> = dependencies
                .iter()
                // A registry dependency rides along to show it is never judged.
                .chain(&[("serde", "null")])
                .map(|(dependency, kind)| {
                    format!(r#"{{"name": "{dependency}", "kind": {kind}, "optional": false}}"#)
                })
                .collect();
            format!(
                r#"{{"name": "{name}", "dependencies": [{}]}}"#,
                dependencies.join(", ")
            )
        })
        .collect();
    format!(r#"{{"packages": [{}]}}"#, packages.join(", "))
}

/// The clean layout plus `extra` edges, through JSON as `cargo metadata` would give it.
fn layout_with(extra: &[(&str, &str, &str)]) -> Metadata {
    let packages: Vec<(&str, Vec<(&str, &str)>)> = CLEAN
        .iter()
        .map(|(name, dependencies)| {
            let mut dependencies = dependencies.to_vec();
            for (from, to, kind) in extra {
                if from == name {
                    dependencies.push((to, kind));
                }
            }
            (*name, dependencies)
        })
        .collect();
    metadata::parse(&metadata_json(&packages)).unwrap()
}

fn found(metadata: &Metadata) -> Vec<(String, String, DepKind, &'static str)> {
    check(metadata, RULES)
        .into_iter()
        .map(|v| (v.from, v.to, v.kind, v.rule))
        .collect()
}

#[test]
fn the_final_layout_is_clean() {
    let metadata = layout_with(&[]);
    assert_eq!(found(&metadata), []);
    let names: Vec<&str> = metadata.packages.iter().map(|p| p.name.as_str()).collect();
    let mut expected = FINAL_PACKAGES.to_vec();
    expected.sort_unstable();
    let mut names = names.clone();
    names.sort_unstable();
    assert_eq!(names, expected, "CLEAN must list every final package");
}

#[test]
fn catches_redox_shells_leaning_on_the_hosted_layer_or_on_teed() {
    let metadata = layout_with(&[
        ("tee-redox", "tee-rt", "null"),
        ("tee-redox", "teed", "\"dev\""),
        ("tpmd-redox", "teed", "\"dev\""),
        ("smc-caps", "tee-proto", "null"),
    ]);
    let rules: Vec<(String, String, &str)> = found(&metadata)
        .into_iter()
        .map(|(from, to, _, rule)| (from, to, rule))
        .collect();
    let owned = |from: &str, to: &str, rule| (from.to_owned(), to.to_owned(), rule);
    assert_eq!(
        rules,
        [
            owned("smc-caps", "tee-proto", "smc-caps-on-the-abi-alone"),
            owned("tee-redox", "tee-rt", "redox-shells-not-hosted"),
            owned("tee-redox", "teed", "redox-layer-knows-no-server"),
            owned(
                "tpmd-redox",
                "teed",
                "redox-clients-reach-secure-world-through-teed"
            ),
        ]
    );
}

#[test]
fn catches_forbidden_edges_with_their_rule() {
    let metadata = layout_with(&[
        ("tpmd", "secure-world", "\"dev\""),
        ("tee-proto", "tee-rt", "null"),
        ("teesys-init", "secure-world", "null"),
    ]);
    let owned = |from: &str, to: &str, kind, rule| (from.to_owned(), to.to_owned(), kind, rule);
    assert_eq!(
        found(&metadata),
        [
            owned(
                "tee-proto",
                "tee-rt",
                DepKind::Normal,
                "proto-above-abi-only"
            ),
            owned(
                "teesys-init",
                "secure-world",
                DepKind::Normal,
                "init-blind-to-secure-world"
            ),
            owned(
                "tpmd",
                "secure-world",
                DepKind::Dev,
                "clients-reach-secure-world-through-teed"
            ),
        ]
    );
}

#[test]
fn a_violation_names_both_packages_the_kind_and_the_rule() {
    let violations = check(&layout_with(&[("bnxtd", "libtpms", "\"dev\"")]), RULES);
    assert_eq!(violations.len(), 1, "{violations:?}");
    let message = violations[0].to_string();
    for part in [
        "bnxtd",
        "libtpms",
        "dev dependency",
        "clients-reach-secure-world-through-teed",
    ] {
        assert!(message.contains(part), "{message}");
    }
}

#[test]
fn shipped_only_rules_ignore_dev_dependencies() {
    // A dev dependency on tee-test-support is how products test; secure-world's tests may use
    // anything.
    let metadata = layout_with(&[
        ("teed", "tee-test-support", "\"dev\""),
        ("secure-world", "tee-rt", "\"dev\""),
    ]);
    assert_eq!(found(&metadata), []);
    let metadata = layout_with(&[
        ("teed", "tee-test-support", "null"),
        ("secure-world", "tee-rt", "\"build\""),
        ("optee-abi", "xtask", "\"build\""),
    ]);
    let rules: Vec<(String, &str)> = found(&metadata)
        .into_iter()
        .map(|(from, _, _, rule)| (from, rule))
        .collect();
    assert_eq!(
        rules,
        [
            ("optee-abi".to_owned(), "abi-at-the-bottom"),
            ("optee-abi".to_owned(), "products-ship-no-tooling"),
            ("secure-world".to_owned(), "secure-world-stands-alone"),
            ("teed".to_owned(), "products-ship-no-tooling"),
        ]
    );
}

#[test]
fn test_only_crates_may_depend_on_anything() {
    let metadata = layout_with(&[
        ("tee-sim", "tee-test-support", "null"),
        ("tee-test-support", "libtpms", "null"),
    ]);
    assert_eq!(found(&metadata), []);
}

#[test]
fn rules_naming_a_missing_package_are_skipped() {
    // Today's workspace: no secure-world-host yet, so the server rule waits, while the
    // tee-proto rule, whose packages all exist, already holds.
    let packages = vec![
        ("optee-abi", vec![]),
        ("tee-rt", vec![]),
        ("libtpms", vec![]),
        ("secure-world", vec![]),
        ("teed", vec![]),
        ("tee-proto", vec![("tee-rt", "null")]),
        ("tpmd", vec![("libtpms", "\"dev\"")]),
        ("bnxtd", vec![]),
    ];
    let metadata = metadata::parse(&metadata_json(&packages)).unwrap();
    let rules: Vec<&str> = found(&metadata).into_iter().map(|v| v.3).collect();
    assert_eq!(rules, ["proto-above-abi-only"]);
}

#[test]
fn rules_name_only_final_packages() {
    // A misspelt package would silently disable its rule forever.
    for rule in RULES {
        for name in rule.named_packages().chain(NOT_PRODUCTS.iter().copied()) {
            assert!(FINAL_PACKAGES.contains(&name), "{}: {name}", rule.name);
        }
    }
}

#[test]
fn optional_dependencies_count_and_say_so() {
    let json = r#"{"packages": [
        {"name": "optee-abi", "dependencies": []},
        {"name": "tee-rt", "dependencies": []},
        {"name": "tee-proto", "dependencies": [
            {"name": "tee-rt", "kind": null, "optional": true}]}
    ]}"#;
    let violations = check(&metadata::parse(json).unwrap(), RULES);
    assert_eq!(violations.len(), 1, "{violations:?}");
    let message = violations[0].to_string();
    assert!(
        message.starts_with("tee-proto has an optional normal dependency on tee-rt"),
        "{message}"
    );
}
