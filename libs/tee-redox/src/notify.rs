//! Readiness for Redox's init: a service of `type = "notify"` finds a pipe's write end named by
//! the environment variable `INIT_NOTIFY` and writes one byte to it once it serves; init reads
//! that byte, and takes end of file as "exited without notifying readiness" (base `init`,
//! `service.rs`). Init starts services one after another, so a daemon that never notifies and
//! never exits holds up the boot: each daemon notifies as soon as its core answered its `Hello`,
//! declined or not.

/// The variable init names the pipe with.
pub const INIT_NOTIFY_ENV: &str = "INIT_NOTIFY";

/// The byte written (init reads one byte, whatever it is).
pub const READY_BYTE: [u8; 1] = [b'R'];

/// `INIT_NOTIFY` holds no descriptor number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("INIT_NOTIFY=`{0}` is not a descriptor number")]
pub struct BadNotifyFd(pub String);

/// The descriptor init named, or `None` when the daemon was not started as a notify service.
pub fn notify_fd(value: Option<&str>) -> Result<Option<usize>, BadNotifyFd> {
    match value {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| BadNotifyFd(text.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// base init `service.rs`: `INIT_NOTIFY` names the pipe's write end; one byte is readiness.
    #[test]
    fn reads_the_descriptor_number_or_nothing() {
        assert_eq!(notify_fd(None), Ok(None));
        assert_eq!(notify_fd(Some("5")), Ok(Some(5)));
        assert_eq!(notify_fd(Some(" 12\n")), Ok(Some(12)));
        assert!(notify_fd(Some("five")).is_err());
        assert!(notify_fd(Some("-1")).is_err());
        assert_eq!(READY_BYTE.len(), 1);
    }
}
