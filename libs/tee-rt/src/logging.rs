//! Logging for the hosted daemons: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), every line prefixed with the daemon's name so interleaved output of init and its
//! servers stays readable.

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;

use tee_proto::lifecycle::ServerKind;
use tee_proto::Generation;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber for `daemon`. A second call (or another subscriber already
/// installed, as in tests) leaves the first in place.
pub fn init(daemon: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let result = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(PrefixedStderr::new(daemon))
        .with_ansi(io::stderr().is_terminal())
        .try_init();
    if result.is_err() {
        tracing::debug!(daemon, "a subscriber was already installed");
    }
}

/// The span one server incarnation logs in: `teed{gen=N}`, `tpmd{gen=N}`, `bnxtd{gen=N}`.
pub fn incarnation_span(kind: ServerKind, generation: Generation) -> tracing::Span {
    match kind {
        ServerKind::Teed => tracing::info_span!("teed", gen = generation),
        ServerKind::Tpmd => tracing::info_span!("tpmd", gen = generation),
        ServerKind::Bnxtd => tracing::info_span!("bnxtd", gen = generation),
    }
}

/// An error with all its sources, `outer: inner: innermost`, for one log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Makes a stderr writer that prefixes every line with `"<daemon>: "`.
#[derive(Debug, Clone)]
pub struct PrefixedStderr {
    prefix: Arc<str>,
}

impl PrefixedStderr {
    pub fn new(daemon: &str) -> PrefixedStderr {
        PrefixedStderr {
            prefix: Arc::from(format!("{daemon}: ")),
        }
    }
}

impl<'a> MakeWriter<'a> for PrefixedStderr {
    type Writer = LinePrefixer<io::StderrLock<'static>>;

    fn make_writer(&'a self) -> Self::Writer {
        LinePrefixer::new(Arc::clone(&self.prefix), io::stderr().lock())
    }
}

/// Writes `prefix` before every line that passes through it.
#[derive(Debug)]
pub struct LinePrefixer<W: Write> {
    prefix: Arc<str>,
    inner: W,
    at_line_start: bool,
}

impl<W: Write> LinePrefixer<W> {
    pub fn new(prefix: Arc<str>, inner: W) -> LinePrefixer<W> {
        LinePrefixer {
            prefix,
            inner,
            at_line_start: true,
        }
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for LinePrefixer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for line in buf.split_inclusive(|byte| *byte == b'\n') {
            if self.at_line_start {
                self.inner.write_all(self.prefix.as_bytes())?;
            }
            self.inner.write_all(line)?;
            self.at_line_start = line.ends_with(b"\n");
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_line_gets_the_prefix_once() {
        let mut out = LinePrefixer::new(Arc::from("teed: "), Vec::new());
        out.write_all(b"one\ntw").unwrap();
        out.write_all(b"o\n\nthree").unwrap();
        out.write_all(b"\n").unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert_eq!(text, "teed: one\nteed: two\nteed: \nteed: three\n");
    }

    #[test]
    fn error_chains_name_every_cause() {
        let inner = io::Error::new(io::ErrorKind::NotFound, "no such socket");
        let outer = crate::endpoint::EndpointError::Io(inner);
        assert_eq!(error_chain(&outer), "endpoint i/o failed: no such socket");
    }

    #[test]
    fn init_twice_does_not_panic() {
        init("test-daemon");
        init("test-daemon");
        tracing::info!("logged once the subscriber is in place");
    }
}
