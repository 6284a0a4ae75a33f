//! What a Redox daemon tells its core at start: the `Hello` a teesys init would send, built from
//! the command line, and the command-line parsing shared by the three daemons.
//!
//! Redox has no kexec and no crash kernel: a panic halts and the next boot is a machine reset,
//! which restarts the secure world too. So every boot is [`BootKind::Cold`], the crash flag is
//! never set, and one boot id serves for the whole secure-world lifetime. A daemon's generation
//! is its pid unless `--generation` names one: Redox counts pids up, so a restarted daemon
//! differs from its predecessor without a supervisor to number them (a supervisor passes
//! `--generation` to be explicit).

use tee_proto::grants::GrantKinds;
use tee_proto::lifecycle::{BootInfo, BootKind, ClientWindows, InitRequest, RamWindow};
use tee_proto::{Frame, Generation, Header};

use crate::lifecycle::HELLO_REQUEST_ID;

/// Every Redox boot, as the cores see it.
pub const REDOX_BOOT: BootInfo = BootInfo {
    boot_id: 1,
    kind: BootKind::Cold,
    crash_flag: false,
};

/// A command-line argument that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("unknown argument `{0}`")]
    Unknown(String),
    #[error("`{0}` needs a value")]
    MissingValue(String),
    #[error("`{flag}`: `{value}` is not {what}")]
    Invalid {
        flag: String,
        value: String,
        what: &'static str,
    },
    #[error("`{0}` is required")]
    Required(&'static str),
}

/// The generation of this incarnation: the one given, or the pid (never 0).
pub fn generation(explicit: Option<Generation>, pid: usize) -> Generation {
    explicit.unwrap_or_else(|| u32::try_from(pid).ok().filter(|pid| *pid != 0).unwrap_or(1))
}

/// The daemon's own `Hello`. `ram` is teed's frame window, or a client's buffer window;
/// `journal` and `windows` matter to teed alone.
pub fn hello(
    generation: Generation,
    teed_generation: Generation,
    ram: RamWindow,
    journal: RamWindow,
    windows: ClientWindows,
) -> Frame<InitRequest> {
    Frame {
        header: Header::new(0, generation, HELLO_REQUEST_ID),
        body: InitRequest::Hello {
            generation,
            teed_generation,
            boot: REDOX_BOOT,
            ram,
            journal,
            windows,
            grants: GrantKinds::NONE,
        },
    }
}

/// Parses a number, decimal or `0x` hexadecimal.
pub fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
        None => text.replace('_', "").parse().ok(),
    }
}

/// Parses `BASE:LEN` (each decimal or `0x` hexadecimal) as a window of physical memory:
/// page-aligned, not empty, not wrapping.
pub fn parse_window(flag: &str, value: &str) -> Result<RamWindow, ArgError> {
    let invalid = || ArgError::Invalid {
        flag: flag.to_string(),
        value: value.to_string(),
        what: "BASE:LEN, page-aligned and not empty",
    };
    let (base, len) = value.split_once(':').ok_or_else(invalid)?;
    let (base, len) = (
        parse_u64(base).ok_or_else(invalid)?,
        parse_u64(len).ok_or_else(invalid)?,
    );
    let page = optee_abi::mem::PAGE_SIZE_U64;
    if len == 0 || base % page != 0 || len % page != 0 || base.checked_add(len).is_none() {
        return Err(invalid());
    }
    Ok(RamWindow { base, len })
}

/// Splits `--flag VALUE` pairs; every flag takes one value.
pub fn flag_pairs(
    args: impl IntoIterator<Item = String>,
) -> Result<Vec<(String, String)>, ArgError> {
    let mut args = args.into_iter();
    let mut pairs = Vec::new();
    while let Some(flag) = args.next() {
        if !flag.starts_with("--") {
            return Err(ArgError::Unknown(flag));
        }
        let value = args
            .next()
            .ok_or_else(|| ArgError::MissingValue(flag.clone()))?;
        pairs.push((flag, value));
    }
    Ok(pairs)
}

/// Parses `--generation N`.
pub fn parse_generation(flag: &str, value: &str) -> Result<Generation, ArgError> {
    parse_u64(value)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n != 0)
        .ok_or_else(|| ArgError::Invalid {
            flag: flag.to_string(),
            value: value.to_string(),
            what: "a generation (1..2^32)",
        })
}

/// The command line of a client daemon (tpmd, bnxtd): only `--generation`. Its buffer window
/// comes from teed (the `window` handle), not from its arguments.
pub fn parse_client_args(
    args: impl IntoIterator<Item = String>,
) -> Result<Option<Generation>, ArgError> {
    let mut generation = None;
    for (flag, value) in flag_pairs(args)? {
        match flag.as_str() {
            "--generation" => generation = Some(parse_generation(&flag, &value)?),
            _ => return Err(ArgError::Unknown(flag)),
        }
    }
    Ok(generation)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    /// Redox kernel `src/scheme/memory.rs`: physical memory is mapped by whole pages.
    #[test]
    fn windows_are_page_aligned_and_not_empty() {
        assert_eq!(
            parse_window("--ram", "0xBE00_0000:0x20000").unwrap(),
            RamWindow {
                base: 0xBE00_0000,
                len: 0x20000
            }
        );
        assert_eq!(
            parse_window("--ram", "4096:8192").unwrap(),
            RamWindow {
                base: 4096,
                len: 8192
            }
        );
        for bad in [
            "0x1000",
            "0x1001:0x1000",
            "0x1000:0",
            "0x1000:0x10",
            "x:1",
            "0xffff_ffff_ffff_f000:0x2000",
        ] {
            assert!(parse_window("--ram", bad).is_err(), "{bad}");
        }
    }

    /// base init `unit.rs`: a `.service` passes `args` as given; a client's window comes from
    /// teed, so its only argument is a supervisor's generation.
    #[test]
    fn client_arguments_are_only_a_generation() {
        assert_eq!(parse_client_args(words("")).unwrap(), None);
        assert_eq!(parse_client_args(words("--generation 7")).unwrap(), Some(7));
        assert!(parse_client_args(words("--generation 0")).is_err());
        assert!(parse_client_args(words("--generation")).is_err());
        assert!(parse_client_args(words("--ram 0x1000:0x1000")).is_err());
        assert!(parse_client_args(words("stray")).is_err());
    }

    /// Redox kernel context ids count up, so a restarted daemon's pid differs from its
    /// predecessor's (tee-proto `frame.rs`: generations tell incarnations apart).
    #[test]
    fn the_generation_is_the_pid_unless_given() {
        assert_eq!(generation(Some(9), 40), 9);
        assert_eq!(generation(None, 40), 40);
        assert_eq!(generation(None, 0), 1);
    }

    /// Redox kernel `src/panic.rs` halts and there is no kexec: every boot is a reset.
    #[test]
    fn every_redox_hello_is_a_cold_boot_without_crash_flag() {
        let none = RamWindow { base: 0, len: 0 };
        let frame = hello(5, 0, none, none, ClientWindows::NONE);
        assert_eq!(frame.header.request_id, HELLO_REQUEST_ID);
        assert_eq!(frame.header.to_generation, 5);
        let InitRequest::Hello {
            generation, boot, ..
        } = frame.body
        else {
            panic!("not a Hello");
        };
        assert_eq!(generation, 5);
        assert_eq!(boot.kind, BootKind::Cold);
        assert!(!boot.crash_flag);
    }
}
