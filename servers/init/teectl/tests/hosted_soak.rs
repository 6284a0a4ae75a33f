//! `teectl soak kexec --cycles 100` on the real hosted stack finishes with zero leaks
//! (10,000 cycles and a two-minute chaos run with `TEESYS_SOAK=1`).
#![allow(clippy::unwrap_used)]

mod live;

use live::LiveStack;

fn soak() -> bool {
    std::env::var_os("TEESYS_SOAK").is_some()
}

#[test]
fn a_hundred_kexecs_leak_nothing() {
    let cycles: u64 = if soak() { 10_000 } else { 100 };
    let stack = LiveStack::up("soak");
    let cycles_arg = cycles.to_string();
    let output = stack.teectl(&["--json", "soak", "kexec", "--cycles", &cycles_arg]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["kexecs"], cycles);
    assert_eq!(summary["leaks"].as_array().unwrap().len(), 0, "{summary}");
    assert_eq!(summary["errors"].as_array().unwrap().len(), 0, "{summary}");
    // One report line per cycle before the summary.
    assert_eq!(stdout.lines().count() as u64, cycles + 1);
    let report = stack.down().unwrap();
    assert!(report.after.secure.unwrap().is_quiescent());
}

#[test]
fn chaos_keeps_the_invariant() {
    let stack = LiveStack::up("chaos");
    let seconds = if soak() { "120" } else { "5" };
    let output = stack.teectl(&["soak", "chaos", "--seconds", seconds, "--seed", "11"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("soak: PASS"), "{last}");
    let report = stack.down().unwrap();
    assert!(report.after.secure.unwrap().is_quiescent());
}
