//! The figures of one bench run and how they are written: BENCHMARKS.md for people, a JSON
//! document for scripts.

use std::fmt::Write as _;

use serde::Serialize;

/// What a figure must reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Goal {
    /// The ratio must be at most this.
    RatioAtMost(f64),
    /// The ratio must be at least this.
    RatioAtLeast(f64),
    /// The teesys figure itself must be at most this (in its own unit).
    ValueAtMost(f64),
    /// Reported, no goal.
    Reported,
}

impl Goal {
    fn describe(&self, unit: &str) -> String {
        match self {
            Goal::RatioAtMost(limit) => format!("≤ {limit}×"),
            Goal::RatioAtLeast(limit) => format!("≥ {limit}×"),
            Goal::ValueAtMost(limit) => format!("≤ {limit} {unit}"),
            Goal::Reported => "—".into(),
        }
    }

    fn met(&self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match (self, ratio) {
            (Goal::RatioAtMost(limit), Some(ratio)) => Some(ratio <= *limit),
            (Goal::RatioAtLeast(limit), Some(ratio)) => Some(ratio >= *limit),
            (Goal::ValueAtMost(limit), _) => Some(value <= *limit),
            _ => None,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable key for scripts.
    pub id: String,
    pub figure: String,
    pub unit: String,
    /// `None` when the figure could not be measured (see `note`).
    pub teesys: Option<f64>,
    pub baseline: Option<f64>,
    /// What the baseline is.
    pub baseline_name: String,
    pub ratio: Option<f64>,
    pub goal: Goal,
    pub met: Option<bool>,
    /// Tails and other figures of the same measurement.
    pub detail: String,
    pub how: String,
    /// Why a goal is missed (measured in this run), or why nothing was measured.
    pub note: String,
}

impl Figure {
    /// A measured figure; the ratio is teesys / baseline.
    #[allow(clippy::too_many_arguments)]
    pub fn measured(
        id: &str,
        figure: &str,
        unit: &str,
        teesys: f64,
        baseline: Option<(f64, &str)>,
        goal: Goal,
        detail: String,
        how: &str,
    ) -> Figure {
        let ratio = baseline.and_then(|(b, _)| (b > 0.0).then_some(teesys / b));
        Figure {
            id: id.into(),
            figure: figure.into(),
            unit: unit.into(),
            teesys: Some(teesys),
            baseline: baseline.map(|(b, _)| b),
            baseline_name: baseline.map_or(String::new(), |(_, name)| name.into()),
            ratio,
            goal,
            met: goal.met(teesys, ratio),
            detail,
            how: how.into(),
            note: String::new(),
        }
    }

    /// A figure that could not be measured in this run, and why.
    pub fn missing(id: &str, figure: &str, goal: Goal, how: &str, why: String) -> Figure {
        Figure {
            id: id.into(),
            figure: figure.into(),
            unit: String::new(),
            teesys: None,
            baseline: None,
            baseline_name: String::new(),
            ratio: None,
            goal,
            met: None,
            detail: String::new(),
            how: how.into(),
            note: why,
        }
    }

    /// With a stated cause, kept only when the goal is missed.
    pub fn gap(mut self, cause: impl Into<String>) -> Figure {
        if self.met == Some(false) {
            self.note = cause.into();
        }
        self
    }
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub quick: bool,
    /// `uptime`'s load averages at the start and at the end of the run.
    pub load_start: [f64; 3],
    pub load_end: [f64; 3],
    pub cpus: usize,
    /// The CPU every process of the run was pinned to, if any.
    pub pinned_cpu: Option<usize>,
    pub seconds: f64,
    pub figures: Vec<Figure>,
    /// Where the time goes, measured per hop in this run.
    pub breakdown: Vec<(String, String)>,
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    [
        fields.next().unwrap_or(0.0),
        fields.next().unwrap_or(0.0),
        fields.next().unwrap_or(0.0),
    ]
}

/// A number with about three significant digits.
pub fn num(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        "0".into()
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else if magnitude >= 0.001 {
        format!("{value:.3}")
    } else {
        format!("{value:.2e}")
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// BENCHMARKS.md.
pub fn markdown(run: &Run) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# teesys benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask bench`{} ({} build). Every figure is measured against a \
         baseline measured in the same run, so the ratios hold on a loaded machine where the \
         absolute figures drift. Load average (1, 5, 15 min) {} at the start, {} at the end, on \
         {} CPUs{}; the run took {:.0} s.\n",
        if run.quick {
            " --quick (tiny iteration counts: a check that the bench works, not a measurement)"
        } else {
            ""
        },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        run.load_start.map(|l| format!("{l:.2}")).join(" "),
        run.load_end.map(|l| format!("{l:.2}")).join(" "),
        run.cpus,
        match run.pinned_cpu {
            Some(cpu) => format!(
                ", every process of the run pinned to CPU {cpu} (`--all-cpus` not to): a \
                 hand-off between processes is then a context switch for teesys and baselines \
                 alike, not a wake-up of an idle CPU, whose cost a virtual machine can vary \
                 tenfold from one placement of a process pair to the next"
            ),
            None => String::new(),
        },
        run.seconds
    );
    let _ = writeln!(
        out,
        "| figure | teesys | baseline | ratio | goal | met | how measured |\n|---|---|---|---|---|---|---|"
    );
    for f in &run.figures {
        let value =
            |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{} {}", num(v), f.unit));
        let baseline = match f.baseline {
            Some(b) => format!("{} {} ({})", num(b), f.unit, f.baseline_name),
            None if !f.baseline_name.is_empty() => f.baseline_name.clone(),
            None => "—".into(),
        };
        let teesys = if f.detail.is_empty() {
            value(f.teesys)
        } else {
            format!("{}; {}", value(f.teesys), f.detail)
        };
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None if f.teesys.is_none() => "not measured",
            None => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&f.figure),
            cell(&teesys),
            cell(&baseline),
            f.ratio.map_or("—".into(), |r| format!("{}×", num(r))),
            cell(&f.goal.describe(&f.unit)),
            met,
            cell(&f.how)
        );
    }
    let notes: Vec<&Figure> = run.figures.iter().filter(|f| !f.note.is_empty()).collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\n## Gaps and what was not measured\n");
        for f in notes {
            let _ = writeln!(out, "* **{}**: {}", f.figure, f.note);
        }
    }
    if !run.breakdown.is_empty() {
        let _ = writeln!(out, "\n## Where the time goes (measured in this run)\n");
        for (what, figure) in &run.breakdown {
            let _ = writeln!(out, "* {what}: {figure}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_goal_is_judged_on_the_ratio() {
        let f = Figure::measured(
            "x",
            "x",
            "µs",
            30.0,
            Some((10.0, "raw")),
            Goal::RatioAtMost(2.0),
            String::new(),
            "",
        );
        assert_eq!(f.ratio, Some(3.0));
        assert_eq!(f.met, Some(false));
        let f = f.gap("three hops");
        assert_eq!(f.note, "three hops");
        let bandwidth = Figure::measured(
            "y",
            "y",
            "MB/s",
            400.0,
            Some((1000.0, "memcpy")),
            Goal::RatioAtLeast(0.3),
            String::new(),
            "",
        )
        .gap("unused");
        assert_eq!(bandwidth.met, Some(true));
        assert!(bandwidth.note.is_empty(), "a met goal states no gap");
    }

    #[test]
    fn the_markdown_has_one_row_per_figure_and_lists_gaps() {
        let run = Run {
            quick: true,
            load_start: [0.5, 0.4, 0.3],
            load_end: [0.6, 0.4, 0.3],
            cpus: 2,
            pinned_cpu: Some(0),
            seconds: 1.0,
            figures: vec![
                Figure::measured(
                    "a",
                    "kexec cycle",
                    "ms",
                    7.0,
                    None,
                    Goal::ValueAtMost(5.0),
                    "p99 9 ms".into(),
                    "100 cycles",
                )
                .gap("respawns"),
                Figure::missing("q", "QEMU kexec", Goal::Reported, "", "no qemu".into()),
            ],
            breakdown: vec![("hop".into(), "5 µs".into())],
        };
        let text = markdown(&run);
        assert!(text.contains("| kexec cycle | 7.00 ms; p99 9 ms | — | — | ≤ 5 ms | **no** |"));
        assert!(text.contains("* **kexec cycle**: respawns"));
        assert!(text.contains("* **QEMU kexec**: no qemu"));
        assert!(text.contains("0.50 0.40 0.30"));
    }
}
