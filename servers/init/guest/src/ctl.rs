//! The guest's control port (`teesys.ctl`, a second virtio-serial port): the launcher on the
//! host drives the scenario and the guest's init reports, one JSON object per line each way.
//! It reaches init only, never the secure world: init answers what it did and what its
//! servers answered; the launcher asks the secure world itself for its figures, on the secure
//! world's own control channel, at the moments init names (a transition waits for `Go`).

use serde::{Deserialize, Serialize};

use crate::boot::GuestBoot;

/// The virtio port name of the control port.
pub const CTL_PORT_NAME: &str = "teesys.ctl";

/// The longest line either side accepts (a TPM command or response in hex is ~8 KiB).
pub const LINE_MAX: usize = 64 << 10;

/// What the launcher asks of the guest's init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum HostCommand {
    /// A raw TPM 2.0 command for tpmd, as a consumer sends it.
    Tpm { id: u32, hex: String },
    /// bnxtd: firmware fastboot.
    BnxtLoad { id: u32 },
    /// bnxtd: the whole crash dump, checked in the guest against the image's checksum.
    Coredump { id: u32 },
    /// Orderly kexec: shutdown IPC, then the kernel loaded at boot.
    Kexec { id: u32 },
    /// A real panic (sysrq c) into the crash kernel: no shutdown IPC at all.
    Crash { id: u32 },
    /// Orderly reboot: shutdown IPC, then a machine reset.
    Reboot { id: u32 },
    /// Orderly power-off at the end of a run.
    PowerOff { id: u32 },
    /// The launcher took its figures: the announced transition may go ahead.
    Go,
}

/// How a server's start ended, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLine {
    pub server: String,
    pub generation: u32,
    pub outcome: String,
    /// The process's real uid once started (a server that mapped its window drops root).
    #[serde(default)]
    pub uid: Option<u32>,
    /// Its `/dev/mem` mappings as (physical address, length): all the physical memory it can
    /// reach.
    #[serde(default)]
    pub dev_mem: Vec<(u64, u64)>,
}

/// What the guest's init tells the launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum GuestEvent {
    /// init is up and has the port (first line of every boot).
    Hello { boot: GuestBoot, uptime_ms: u64 },
    /// Every server of this boot is ready, declined or given up.
    Booted {
        boot: GuestBoot,
        servers: Vec<ServerLine>,
        /// Guest uptime when teed settled (ready or declined), and when all had.
        teed_settled_uptime_ms: u64,
        uptime_ms: u64,
    },
    /// A background `kexec` load finished (`crash`: the crash kernel, `-p`).
    Loaded {
        crash: bool,
        ok: bool,
        took_ms: u64,
        detail: String,
    },
    /// The answer to a command.
    Reply {
        id: u32,
        ok: bool,
        detail: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hex: Option<String>,
    },
    /// The shutdown IPC is over (or, for a crash, skipped): init waits for `Go`, then
    /// performs `kind` (`kexec`, `crash`, `reboot`, `poweroff`).
    Transition {
        kind: String,
        /// Every server acked its shutdown (always false for a crash: none was sent).
        clean: bool,
        detail: String,
        uptime_ms: u64,
    },
}

/// Encodes one message as a line (JSON, newline-terminated).
pub fn encode<T: Serialize>(message: &T) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(message)?;
    line.push('\n');
    Ok(line)
}

/// Splits a byte stream into lines, across reads of any size; an overlong line is dropped
/// whole (and reported once) instead of growing the buffer without bound.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    overflowed: bool,
}

impl LineBuffer {
    /// Adds bytes; returns the complete lines they finished (without the newline).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<String, LineError>> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                if std::mem::take(&mut self.overflowed) {
                    lines.push(Err(LineError::TooLong));
                } else {
                    let line = std::mem::take(&mut self.buf);
                    lines.push(String::from_utf8(line).map_err(|_| LineError::NotUtf8));
                }
                self.buf.clear();
            } else if self.buf.len() >= LINE_MAX {
                self.overflowed = true;
                self.buf.clear();
            } else if !self.overflowed {
                self.buf.push(byte);
            }
        }
        lines
    }
}

/// A line that could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line longer than {LINE_MAX} bytes dropped")]
    TooLong,
    #[error("line is not UTF-8")]
    NotUtf8,
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string; `None` when it is not one.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::boot::GuestKind;

    #[test]
    fn messages_round_trip_as_single_lines() {
        let event = GuestEvent::Hello {
            boot: GuestBoot {
                number: 3,
                kind: GuestKind::Crash,
            },
            uptime_ms: 1234,
        };
        let line = encode(&event).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        let back: GuestEvent = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(back, event);
        let command = HostCommand::Tpm {
            id: 7,
            hex: to_hex(&[0x80, 1]),
        };
        let line = encode(&command).unwrap();
        assert!(line.contains(r#""cmd":"tpm""#), "{line}");
        assert_eq!(serde_json::from_str::<HostCommand>(&line).unwrap(), command);
    }

    #[test]
    fn lines_are_split_across_reads_and_overlong_ones_dropped() {
        let mut lines = LineBuffer::default();
        assert!(lines.push(b"{\"cmd\":").is_empty());
        let got = lines.push(b"\"go\"}\nab");
        assert_eq!(got, vec![Ok(r#"{"cmd":"go"}"#.to_string())]);
        assert_eq!(lines.push(b"c\n"), vec![Ok("abc".to_string())]);
        let long = vec![b'x'; LINE_MAX + 10];
        assert!(lines.push(&long).is_empty());
        assert_eq!(
            lines.push(b"tail\nok\n"),
            vec![Err(LineError::TooLong), Ok("ok".to_string())]
        );
        assert_eq!(lines.push(&[0xff, b'\n']), vec![Err(LineError::NotUtf8)]);
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 0xab, 0xff])).unwrap(),
            [0, 1, 0xab, 0xff]
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}

/// The real uid on the `Uid:` line of `/proc/<pid>/status`.
pub fn status_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

/// The `/dev/mem` mappings in `/proc/<pid>/maps`, as (physical address, length): for a
/// mapping of `/dev/mem` the offset column is the physical address.
pub fn dev_mem_mappings(maps: &str) -> Vec<(u64, u64)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let _perms = fields.next()?;
            let offset = fields.next()?;
            let path = fields.nth(2)?;
            if path != "/dev/mem" {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            Some((
                u64::from_str_radix(offset, 16).ok()?,
                end.checked_sub(start)?,
            ))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod proc_tests {
    use super::*;

    /// fs/proc/array.c (the Uid: line) and fs/proc/task_mmu.c (a file mapping's offset
    /// column: for /dev/mem, the physical address).
    #[test]
    fn the_real_uid_and_the_dev_mem_windows_are_read_from_proc() {
        let status = "Name:\ttpmd\nUid:\t61001\t61001\t61001\t61001\nGid:\t61001\n";
        assert_eq!(status_uid(status), Some(61001));
        assert_eq!(status_uid("Name:\tx\n"), None);
        let maps = "\
aaaab0000000-aaaab0200000 r-xp 00000000 00:02 12 /bin/tpmd
ffff80000000-ffff80010000 rw-s beef0000 00:05 4 /dev/mem
ffff90000000-ffff90001000 rw-p 00000000 00:00 0
ffffa0000000-ffffa1000000 rw-s bef00000 00:05 4 /dev/mem
";
        assert_eq!(
            dev_mem_mappings(maps),
            [(0xBEEF_0000, 0x1_0000), (0xBEF0_0000, 0x100_0000)]
        );
    }
}
