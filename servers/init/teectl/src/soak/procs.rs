//! Descriptor count and resident memory of the stack's long-lived processes (init and the
//! secure world), sampled before and after a soak: a leak per operation shows as growth.
//!
//! "Flat" allows a small, stated slack, because both samples are taken on a settled stack but
//! not at the same instant of its life:
//! * descriptors: [`FD_SLACK`]. A settled stack holds the same descriptors after any number
//!   of operations (measured: init 14, the secure world 6, before and after 500 chaos steps).
//!   The slack covers a connection init is accepting or closing at the moment of the sample
//!   (a status request, a server's endpoint handed over); a leak of one descriptor per
//!   operation exceeds it after five operations.
//! * resident memory: [`RSS_SLACK_KIB`] of VmRSS growth. The warm-up (a whole 8 MiB coredump
//!   copy, every TPM command kind) brings both processes to their working set first, the RAM
//!   file's pages the secure world touches included. Measured on the development VM over 120 s
//!   of chaos with consumers (500 steps, 230,000 consumer requests): init's VmRSS did not move,
//!   the secure world's moved within 60 KiB, all of it RssAnon (heap), none of it shared pages.
//!   The slack is over ten times that movement, and a leak of 8 KiB per step (a 4 MiB
//!   registration's page list) exceeds it within 130 steps, half of a one-minute soak; a leak
//!   of 16 bytes (the smallest heap block) per consumer request within a minute too.

use std::path::Path;

use serde::Serialize;

/// Descriptors a process may hold beyond (or below) its first sample.
pub const FD_SLACK: u32 = 4;
/// VmRSS growth, in KiB, a process may show between the samples.
pub const RSS_SLACK_KIB: u64 = 1024;

/// One look at a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcSample {
    pub pid: u32,
    /// Entries of /proc/PID/fd.
    pub fds: u32,
    /// VmRSS of /proc/PID/status.
    pub rss_kib: u64,
    /// RssAnon (heap and stacks; where a leak lives), for the report.
    pub rss_anon_kib: u64,
}

/// Why a process could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("no process {pid}: {source}")]
    Gone {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("no {field} in /proc/{pid}/status")]
    Missing { pid: u32, field: &'static str },
}

/// The kB figure of a `Field:   1234 kB` line of /proc/PID/status.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn sample(pid: u32) -> Result<ProcSample, SampleError> {
    let dir = Path::new("/proc").join(pid.to_string());
    let gone = |source| SampleError::Gone { pid, source };
    let fds = std::fs::read_dir(dir.join("fd")).map_err(gone)?.count();
    let status = std::fs::read_to_string(dir.join("status")).map_err(gone)?;
    let field =
        |field: &'static str| status_kib(&status, field).ok_or(SampleError::Missing { pid, field });
    Ok(ProcSample {
        pid,
        fds: u32::try_from(fds).unwrap_or(u32::MAX),
        rss_kib: field("VmRSS")?,
        rss_anon_kib: field("RssAnon")?,
    })
}

/// A process's figures before and after a soak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcFigures {
    pub name: String,
    pub before: ProcSample,
    pub after: ProcSample,
}

impl ProcFigures {
    /// What is not flat, one message each.
    pub fn problems(&self) -> Vec<String> {
        let (before, after) = (&self.before, &self.after);
        let mut found = Vec::new();
        if before.pid != after.pid {
            found.push(format!(
                "{}: pid {} became {} (restarted)",
                self.name, before.pid, after.pid
            ));
            return found;
        }
        if before.fds.abs_diff(after.fds) > FD_SLACK {
            found.push(format!(
                "{}: {} descriptors, {} before (slack {FD_SLACK})",
                self.name, after.fds, before.fds
            ));
        }
        let growth = after.rss_kib.saturating_sub(before.rss_kib);
        if growth > RSS_SLACK_KIB {
            found.push(format!(
                "{}: VmRSS grew {growth} KiB to {} KiB (slack {RSS_SLACK_KIB} KiB)",
                self.name, after.rss_kib
            ));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tx\nVmRSS:\t   2048 kB\nRssAnon:\t  512 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(2048));
        assert_eq!(status_kib(status, "RssAnon"), Some(512));
        assert_eq!(status_kib(status, "VmHWM"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = sample(std::process::id());
        assert!(me.is_ok_and(|s| s.fds > 0 && s.rss_kib > 0));
    }

    #[test]
    fn growth_beyond_the_slack_is_not_flat() {
        let before = ProcSample {
            pid: 7,
            fds: 20,
            rss_kib: 10_000,
            rss_anon_kib: 4_000,
        };
        let figures = |after| ProcFigures {
            name: "init".into(),
            before,
            after,
        };
        let flat = ProcSample {
            fds: 22,
            rss_kib: 10_000 + RSS_SLACK_KIB,
            ..before
        };
        assert!(figures(flat).problems().is_empty());
        let leaky = ProcSample {
            fds: 20 + FD_SLACK + 1,
            rss_kib: 10_001 + RSS_SLACK_KIB,
            ..before
        };
        assert_eq!(figures(leaky).problems().len(), 2);
        let restarted = ProcSample { pid: 8, ..before };
        assert_eq!(figures(restarted).problems().len(), 1);
    }
}
