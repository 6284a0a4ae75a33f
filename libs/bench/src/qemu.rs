//! The QEMU guest's kexec cycle, read from the `timings.json` a `cargo xtask qemu` run wrote
//! (`cargo xtask bench` runs one before the bench). The bench does not boot QEMU itself: the
//! run takes minutes of TCG and needs the kernel and cross tools xtask fetches.

use std::path::Path;

use crate::table::{num, Figure, Goal};

const ID: &str = "qemu_kexec";
const NAME: &str = "QEMU guest kexec cycle";
const HOW: &str = "`cargo xtask qemu --kexecs N` run by `cargo xtask bench`: from the shutdown \
                   IPC sent to the next boot's teed ready, per real kexec of Debian's 6.12 arm64 \
                   kernel under QEMU TCG";

/// The figure from the run's timings, against the hosted kexec cycle of this run.
pub fn figure(
    timings: Option<&Path>,
    missing: Option<&str>,
    hosted_kexec_ms: Option<f64>,
) -> Figure {
    let cycles = match timings.map(read_cycles) {
        Some(Ok(cycles)) => cycles,
        Some(Err(why)) => return Figure::missing(ID, NAME, Goal::Reported, HOW, why),
        None => {
            let why = missing.unwrap_or("no QEMU run was given (--qemu-timings)");
            return Figure::missing(ID, NAME, Goal::Reported, HOW, why.to_string());
        }
    };
    let mut sorted = cycles.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2] as f64;
    Figure::measured(
        ID,
        NAME,
        "ms",
        median,
        hosted_kexec_ms.map(|ms| (ms, "the hosted kexec cycle of this run")),
        Goal::Reported,
        format!(
            "min {} ms, max {} ms over {} kexecs",
            num(sorted[0] as f64),
            num(sorted[sorted.len() - 1] as f64),
            sorted.len()
        ),
        HOW,
    )
}

/// The per-kexec cycle times of a timings file; an error says what is wrong with it.
fn read_cycles(path: &Path) -> Result<Vec<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_cycles(&text).map_err(|why| format!("{}: {why}", path.display()))
}

fn parse_cycles(text: &str) -> Result<Vec<u64>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let cycles = value
        .get("kexec_cycle_ms")
        .and_then(|v| v.as_array())
        .ok_or("no kexec_cycle_ms list")?
        .iter()
        .map(|v| {
            v.as_u64()
                .ok_or("a kexec cycle that is not a whole number of ms")
        })
        .collect::<Result<Vec<u64>, _>>()?;
    if cycles.is_empty() {
        return Err("the run did no kexec".into());
    }
    Ok(cycles)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_cycles_and_refuses_what_is_not_a_run() {
        let text = r#"{"cold_boot_ms": 3000, "kexec_cycle_ms": [4100, 3900, 4300]}"#;
        assert_eq!(parse_cycles(text).unwrap(), vec![4100, 3900, 4300]);
        assert!(parse_cycles(r#"{"kexec_cycle_ms": []}"#).is_err());
        assert!(parse_cycles(r#"{"kexec_cycle_ms": [1.5]}"#).is_err());
        assert!(parse_cycles(r#"{"cold_boot_ms": 3}"#).is_err());
        assert!(parse_cycles("not json").is_err());
    }

    #[test]
    fn figure_is_the_median_against_the_hosted_cycle() {
        let dir = std::env::temp_dir().join(format!("teesys-bench-qemu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("timings.json");
        std::fs::write(&path, r#"{"kexec_cycle_ms": [4000, 5000, 3000]}"#).unwrap();
        let figure = figure(Some(&path), None, Some(10.0));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(figure.teesys, Some(4000.0));
        assert_eq!(figure.ratio, Some(400.0));
        let missing = super::figure(None, Some("not run (--no-qemu or --quick)"), Some(10.0));
        assert_eq!(missing.teesys, None);
        assert!(missing.note.contains("--no-qemu"));
    }
}
