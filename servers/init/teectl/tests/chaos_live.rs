//! `teectl soak chaos` with live consumers on the real hosted stack: kills, kexecs, crashes
//! and resets while TPM NV increments, GetRandom, PCR extends and coredump copies run, with
//! every answer checked, no acknowledged increment lost, no consumer stuck, and flat
//! descriptors and memory for init and the secure world. One minute in the default run; ten
//! with `TEESYS_SOAK=1`.
#![allow(clippy::unwrap_used)]

mod live;

use std::sync::Mutex;

use live::LiveStack;

/// One soak at a time: two would share the machine's two cores and each other's deadlines.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn soak() -> bool {
    std::env::var_os("TEESYS_SOAK").is_some()
}

/// Runs the soak on a fresh stack and checks its JSON summary.
fn chaos_with_consumers(name: &str, seconds: u64, seed: u64) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stack = LiveStack::up(name);
    let output = stack.teectl(&[
        "--json",
        "soak",
        "chaos",
        "--seconds",
        &seconds.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no summary ({e}):\n{stdout}\n{stderr}"));
    let live = &summary["live"];
    // The figures, for whoever reads the test's output.
    eprintln!("{}", serde_json::to_string_pretty(live).unwrap());
    assert!(output.status.success(), "{summary}\n{stderr}");
    assert_eq!(summary["leaks"].as_array().unwrap().len(), 0, "{summary}");
    assert_eq!(summary["errors"].as_array().unwrap().len(), 0, "{summary}");
    assert_eq!(live["problems"].as_array().unwrap().len(), 0, "{live}");
    // The chaos happened, and the consumers were served through it.
    assert!(summary["kexecs"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["kills"].as_u64().unwrap() > 0, "{summary}");
    for kind in [
        "nv_increment",
        "nv_read",
        "get_random",
        "pcr_check",
        "coredump_chunk",
    ] {
        assert!(
            live["ops"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind}: {live}"
        );
    }
    // Failures were only of the expected kinds.
    let errors = &live["errors"];
    for fatal in ["timed_out", "wrong", "unexpected"] {
        assert_eq!(errors[fatal], 0, "{live}");
    }
    // No acknowledged increment lost; none invented.
    let nv = &live["nv"];
    let (base, acknowledged, attempted) = (
        nv["base"].as_u64().unwrap(),
        nv["acknowledged"].as_u64().unwrap(),
        nv["attempted"].as_u64().unwrap(),
    );
    let counter = live["nv_final"].as_u64().unwrap();
    assert!(acknowledged > 0, "{live}");
    assert!(counter >= base + acknowledged, "{live}");
    assert!(counter <= base + attempted, "{live}");
    // Both long-lived processes were sampled before and after.
    let names: Vec<_> = live["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["init", "secure-world"]);
    let report = stack.down().unwrap();
    assert!(report.after.secure.unwrap().is_quiescent());
}

#[test]
fn a_minute_of_chaos_with_live_consumers_loses_nothing() {
    chaos_with_consumers("chaos-live", 60, 14);
}

#[test]
fn ten_minutes_of_chaos_with_live_consumers_lose_nothing() {
    if !soak() {
        eprintln!("skipped: set TEESYS_SOAK=1 (cargo xtask test --soak) for the 600 s soak");
        return;
    }
    chaos_with_consumers("chaos-live-long", 600, 15);
}

/// The counter check the soak applies at every read fails a soak whose counter is behind the
/// increments the TPM acknowledged.
#[test]
fn the_nv_check_catches_a_lost_increment() {
    use teectl::soak::checks::{NvBook, Violation};
    use teectl::soak::live::LiveReport;
    use teectl::soak::SoakSummary;

    let mut book = NvBook::open(40);
    for _ in 0..3 {
        book.sending();
        book.acknowledge();
    }
    assert_eq!(book.check_read(43), Ok(()));
    // Acknowledged, yet the counter still reads 43: that increment was lost.
    book.sending();
    book.acknowledge();
    let lost = book.check_read(43).unwrap_err();
    assert!(matches!(
        lost,
        Violation::CounterBehind { expected: 44, .. }
    ));
    let mut summary = SoakSummary::default();
    assert!(summary.passed());
    summary.live = Some(LiveReport {
        problems: vec![lost.to_string()],
        ..LiveReport::default()
    });
    assert!(!summary.passed());
    assert!(summary.live.unwrap().problems[0].contains("lost an acknowledged increment"));
}
