//! `teesys-bench --quick`, as `cargo xtask test` runs it through this test: every figure of
//! the budget is measured (tiny counts, no timing judged) and written to both outputs.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use tee_test_support::hosted::{ensure_stack_binaries, ScratchDir};

/// Every figure the issue asks for, by id (the GetRandom rows need Debian's swtpm).
const ALWAYS: &[&str] = &[
    "null_request",
    "fast_smc",
    "coredump",
    "kexec_cycle",
    "rss_secure_world",
    "rss_init",
    "rss_teed",
    "rss_tpmd",
    "rss_bnxtd",
    "register_scale_model",
    "unregister_scale_model",
    "register_scale_teed",
    "unregister_scale_teed",
    "shutdown_n",
    "sim_steps",
];

#[test]
fn quick_bench_measures_every_figure_and_writes_both_reports() {
    ensure_stack_binaries();
    let out = ScratchDir::new("bench-quick").unwrap();
    // A QEMU run's timings as teesys-qemu writes them (the real run takes minutes).
    let timings = out.path().join("timings.json");
    std::fs::write(&timings, r#"{"kexec_cycle_ms": [4100, 3900, 4300]}"#).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_teesys-bench"))
        .arg("--quick")
        .arg("--out-dir")
        .arg(out.path())
        .arg("--qemu-timings")
        .arg(&timings)
        .status()
        .unwrap();
    assert!(status.success());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("benchmarks.json")).unwrap())
            .unwrap();
    assert_eq!(json["quick"], true);
    let figures = json["figures"].as_array().unwrap();
    let by_id = |id: &str| figures.iter().find(|f| f["id"] == id);
    let swtpm = Command::new("swtpm").arg("--version").output().is_ok();
    let getrandom: &[&str] = if swtpm {
        &["getrandom_unix", "getrandom_tcp"]
    } else {
        &[]
    };
    for id in ALWAYS.iter().chain(getrandom) {
        let figure = by_id(id).unwrap_or_else(|| panic!("no figure {id}"));
        let value = figure["teesys"]
            .as_f64()
            .unwrap_or_else(|| panic!("{figure}"));
        assert!(value > 0.0, "{figure}");
        assert!(
            figure["baseline"].as_f64().is_some_and(|b| b > 0.0),
            "{figure}"
        );
    }
    // The QEMU row is the run's median, against this run's hosted kexec cycle.
    let qemu = by_id("qemu_kexec").unwrap();
    assert_eq!(qemu["teesys"].as_f64(), Some(4100.0), "{qemu}");
    assert_eq!(
        qemu["baseline"].as_f64(),
        by_id("kexec_cycle").unwrap()["teesys"].as_f64(),
        "{qemu}"
    );

    let md = std::fs::read_to_string(out.path().join("BENCHMARKS.md")).unwrap();
    assert!(md.starts_with("# teesys benchmarks"));
    assert!(md.contains("| figure | teesys | baseline | ratio | goal | met | how measured |"));
    let rows = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| figure"))
        .count();
    assert_eq!(rows, figures.len(), "one table row per figure");
}
