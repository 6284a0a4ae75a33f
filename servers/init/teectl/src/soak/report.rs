//! The human form of a soak's summary (`--json` prints the summary itself).

use super::live::LiveReport;
use super::procs::{FD_SLACK, RSS_SLACK_KIB};
use super::SoakSummary;

fn verdict(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

/// The live consumers' figures (when there were consumers), then the summary line, then every
/// problem, indented: on a pass the summary is the last line.
pub fn human(summary: &SoakSummary) -> String {
    let mut text = String::new();
    let mut problems: Vec<&String> = Vec::new();
    if let Some(live) = &summary.live {
        for line in live_lines(live) {
            text.push_str(&line);
            text.push('\n');
        }
        problems.extend(&live.problems);
    }
    text.push_str(&format!(
        "soak: {} ({} steps: {} kexec, {} reboot, {} crash, {} kill ({} turned kexec), {} restart; \
         {} invariant checks, {} recheck(s); {} leak(s), {} error(s); heap {:?}..{:?} B; {} ms)",
        verdict(summary.passed()),
        summary.steps,
        summary.kexecs,
        summary.reboots,
        summary.crashes,
        summary.kills,
        summary.kills_turned_kexec,
        summary.restarts,
        summary.invariant_checks,
        summary.rechecks,
        summary.leaks.len(),
        summary.errors.len(),
        summary.heap_min,
        summary.heap_max,
        summary.took_ms
    ));
    problems.extend(&summary.leaks);
    problems.extend(&summary.errors);
    for line in problems {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}

fn live_lines(live: &LiveReport) -> Vec<String> {
    let mut lines = Vec::new();
    let ops: Vec<String> = live
        .ops
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    lines.push(format!("live consumers, ops: {}", ops.join(", ")));
    let e = &live.errors;
    lines.push(format!(
        "  errors: retryable {}, unavailable {}, disconnected {} (expected); \
         timed out {}, wrong {}, unexpected {} (fatal)",
        e.retryable, e.unavailable, e.disconnected, e.timed_out, e.wrong, e.unexpected
    ));
    for consumer in &live.consumers {
        let answered: u64 = consumer.ops.values().sum();
        let e = &consumer.errors;
        lines.push(format!(
            "    {}: {answered} answered; errors retryable {}, unavailable {}, disconnected {}, \
             fatal {}",
            consumer.name,
            e.retryable,
            e.unavailable,
            e.disconnected,
            e.fatal()
        ));
    }
    let nv = &live.nv;
    let counted = live.nv_final.map_or_else(
        || "not read".to_string(),
        |value| format!("{value} (+{})", value.saturating_sub(nv.base)),
    );
    lines.push(format!(
        "  NV counter: {} increment(s) acknowledged, {} sent; counter {} -> {counted}; \
         {} read(s) checked",
        nv.acknowledged, nv.attempted, nv.base, nv.reads_checked
    ));
    for figures in &live.processes {
        let (before, after) = (&figures.before, &figures.after);
        lines.push(format!(
            "  {} (pid {}): fds {} -> {} (slack {FD_SLACK}), VmRSS {} -> {} KiB \
             (slack {RSS_SLACK_KIB}), RssAnon {} -> {} KiB",
            figures.name,
            after.pid,
            before.fds,
            after.fds,
            before.rss_kib,
            after.rss_kib,
            before.rss_anon_kib,
            after.rss_anon_kib
        ));
    }
    lines.push(format!(
        "live consumers: {} ({} problem(s))",
        verdict(live.passed()),
        live.problems.len()
    ));
    lines
}
