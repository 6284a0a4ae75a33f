//! teed's command line on Redox: the physical carve-out it serves from (there is no teesys init
//! to hand it windows), and optionally its generation.
//!
//! `--ram BASE:LEN` (frames for page lists and RPC buffers), `--journal BASE:LEN` (the lifecycle
//! journal: it outlives a teed restart, so the successor reclaims what its predecessor left
//! registered), `--tpmd-window BASE:LEN` and `--bnxtd-window BASE:LEN` (each client's buffers),
//! `--generation N`. The windows are disjoint and page-aligned; the kernel must not hand their
//! frames to anyone else (sysroot/redox/README.md).

use tee_proto::lifecycle::{ClientWindows, RamWindow};
use tee_proto::Generation;
use tee_redox::boot::{self, ArgError};

/// Where teed's memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub ram: RamWindow,
    pub journal: RamWindow,
    pub windows: ClientWindows,
}

impl Layout {
    /// Every non-empty window, for the main to map.
    pub fn regions(&self) -> Vec<RamWindow> {
        [
            self.ram,
            self.journal,
            self.windows.tpmd,
            self.windows.bnxtd,
        ]
        .into_iter()
        .filter(|w| w.len > 0)
        .collect()
    }
}

/// teed's parsed command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeedArgs {
    pub generation: Option<Generation>,
    pub layout: Layout,
}

impl TeedArgs {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<TeedArgs, ArgError> {
        let (mut generation, mut ram, mut journal) = (None, None, None);
        let mut windows = ClientWindows::NONE;
        for (flag, value) in boot::flag_pairs(args)? {
            match flag.as_str() {
                "--generation" => generation = Some(boot::parse_generation(&flag, &value)?),
                "--ram" => ram = Some(boot::parse_window(&flag, &value)?),
                "--journal" => journal = Some(boot::parse_window(&flag, &value)?),
                "--tpmd-window" => windows.tpmd = boot::parse_window(&flag, &value)?,
                "--bnxtd-window" => windows.bnxtd = boot::parse_window(&flag, &value)?,
                _ => return Err(ArgError::Unknown(flag)),
            }
        }
        let layout = Layout {
            ram: ram.ok_or(ArgError::Required("--ram"))?,
            journal: journal.ok_or(ArgError::Required("--journal"))?,
            windows,
        };
        if layout.journal.len < teed::journal::JOURNAL_BYTES {
            return Err(ArgError::Invalid {
                flag: "--journal".into(),
                value: format!("{:#x}", layout.journal.len),
                what: "long enough for the journal",
            });
        }
        let regions = layout.regions();
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                if a.base < b.base + b.len && b.base < a.base + a.len {
                    return Err(ArgError::Invalid {
                        flag: "--ram/--journal/--*-window".into(),
                        value: format!("{:#x}+{:#x} and {:#x}+{:#x}", a.base, a.len, b.base, b.len),
                        what: "disjoint windows",
                    });
                }
            }
        }
        Ok(TeedArgs { generation, layout })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TeedArgs, ArgError> {
        TeedArgs::parse(text.split_whitespace().map(String::from))
    }

    /// The layout sysroot/redox's unit passes: [ frames | tpmd | bnxtd | journal ].
    const UNIT_ARGS: &str = "--ram 0xBE000000:0xE00000 --tpmd-window 0xBEE00000:0x10000 \
        --bnxtd-window 0xBEF00000:0x1000000 --journal 0xBFF00000:0x100000";

    /// base init `unit.rs`: the `.service` `args` reach teed as written.
    #[test]
    fn the_units_layout_parses() {
        let args = parse(UNIT_ARGS).unwrap();
        assert_eq!(args.generation, None);
        assert_eq!(args.layout.regions().len(), 4);
        assert_eq!(args.layout.windows.bnxtd.len, 16 << 20);
        let unit = include_str!("../../../../sysroot/redox/init.d/50_teed.service");
        for word in UNIT_ARGS.split_whitespace() {
            assert!(
                unit.contains(&format!("\"{word}\"")),
                "the unit lacks {word}"
            );
        }
    }

    /// teed's journal layout (servers/teed/src/journal.rs) needs JOURNAL_BYTES; windows are
    /// disjoint as init lays them out hosted (servers/init/root/src/lib.rs).
    #[test]
    fn refuses_missing_overlapping_and_short_windows() {
        assert_eq!(
            parse("--ram 0x1000:0x1000"),
            Err(ArgError::Required("--journal"))
        );
        assert!(parse("--ram 0x100000:0x100000 --journal 0x180000:0x100000").is_err());
        assert!(parse("--ram 0x100000:0x100000 --journal 0x200000:0x1000").is_err());
        assert!(parse(
            "--ram 0x100000:0x100000 --journal 0x200000:0x100000 --tpmd-window 0x100000:0x1000"
        )
        .is_err());
        assert!(parse("--ram 0x100000:0x100000 --journal 0x200000:0x100000 --swap 1").is_err());
        let ok =
            parse("--ram 0x100000:0x100000 --journal 0x200000:0x100000 --generation 4").unwrap();
        assert_eq!(ok.generation, Some(4));
        assert_eq!(ok.layout.windows, ClientWindows::NONE);
    }
}
