//! The guest's carve-out: the physical range past `mem=` that the guest kernel does not manage,
//! named on the command line (`teesys.carveout=BASE,LEN`, hex) by the launcher that sized the
//! guest's RAM. It holds everything teed shares with the secure world, tiled as the hosted RAM
//! is: `[ shm frames | tpmd's window | bnxtd's window | journal reserve ]`. It survives kexec,
//! kdump and reset, so the next boot hands out the same frames again and finds the journal.

use tee_proto::lifecycle::{ClientWindows, RamWindow};
use teesys_init::config::{
    ConfigError, InitConfig, BNXTD_WINDOW_LEN, JOURNAL_LEN, JOURNAL_RESERVE, TPMD_WINDOW_LEN,
};

use crate::boot::param;

/// Why the carve-out cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("no teesys.carveout= (or teesys.image=) BASE,LEN on the command line")]
    Missing,
    #[error("{0:?} is not BASE,LEN in hex")]
    Malformed(String),
    #[error("the carve-out {base:#x}+{len:#x} is not page-aligned or leaves no shm frames")]
    TooSmall { base: u64, len: u64 },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

const PAGE: u64 = 4096;

fn hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// The carve-out named on `cmdline`.
pub fn carveout(cmdline: &str) -> Result<RamWindow, LayoutError> {
    window_param(cmdline, "teesys.carveout")
}

/// Where the launcher staged the kernel Image for kexec (`teesys.image=BASE,LEN`, past
/// `mem=` like the carve-out; QEMU's loader device writes it there on every reset).
pub fn staged_image(cmdline: &str) -> Result<RamWindow, LayoutError> {
    window_param(cmdline, "teesys.image")
}

fn window_param(cmdline: &str, key: &str) -> Result<RamWindow, LayoutError> {
    let value = param(cmdline, key).ok_or(LayoutError::Missing)?;
    let malformed = || LayoutError::Malformed(value.to_owned());
    let (base, len) = value.split_once(',').ok_or_else(malformed)?;
    let (base, len) = (
        hex(base).ok_or_else(malformed)?,
        hex(len).ok_or_else(malformed)?,
    );
    base.checked_add(len).ok_or_else(malformed)?;
    Ok(RamWindow { base, len })
}

/// The supervisor's configuration over the carve-out.
pub fn init_config(carve: RamWindow) -> Result<InitConfig, LayoutError> {
    let too_small = LayoutError::TooSmall {
        base: carve.base,
        len: carve.len,
    };
    if carve.base % PAGE != 0 || carve.len % PAGE != 0 {
        return Err(too_small);
    }
    let shm_len = carve
        .len
        .checked_sub(JOURNAL_RESERVE + TPMD_WINDOW_LEN + BNXTD_WINDOW_LEN)
        .filter(|len| *len >= BNXTD_WINDOW_LEN)
        .ok_or(too_small)?;
    let tpmd = carve.base + shm_len;
    let bnxtd = tpmd + TPMD_WINDOW_LEN;
    let journal = bnxtd + BNXTD_WINDOW_LEN;
    let config = InitConfig {
        ram: RamWindow {
            base: carve.base,
            len: shm_len,
        },
        windows: ClientWindows {
            tpmd: RamWindow {
                base: tpmd,
                len: TPMD_WINDOW_LEN,
            },
            bnxtd: RamWindow {
                base: bnxtd,
                len: BNXTD_WINDOW_LEN,
            },
        },
        journal: RamWindow {
            base: journal,
            len: JOURNAL_LEN,
        },
        ..InitConfig::default()
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_carveout_is_read_from_the_command_line() {
        let carve = carveout("mem=1920M teesys.carveout=0xb8000000,0x8000000 quiet").unwrap();
        assert_eq!(
            carve,
            RamWindow {
                base: 0xB800_0000,
                len: 128 << 20
            }
        );
        assert_eq!(carveout("mem=1920M"), Err(LayoutError::Missing));
        assert_eq!(
            staged_image("teesys.image=0xb4000000,0x2a3b000").unwrap(),
            RamWindow {
                base: 0xB400_0000,
                len: 0x2A3_B000
            }
        );
        assert!(matches!(
            carveout("teesys.carveout=zz,1"),
            Err(LayoutError::Malformed(_))
        ));
        assert!(matches!(
            carveout("teesys.carveout=0xffffffffffffffff,0x2"),
            Err(LayoutError::Malformed(_))
        ));
    }

    #[test]
    fn frames_windows_and_journal_tile_the_carveout_in_order() {
        let carve = RamWindow {
            base: 0xB800_0000,
            len: 128 << 20,
        };
        let config = init_config(carve).unwrap();
        assert_eq!(config.ram.base, carve.base);
        assert_eq!(config.ram.base + config.ram.len, config.windows.tpmd.base);
        assert_eq!(
            config.windows.tpmd.base + config.windows.tpmd.len,
            config.windows.bnxtd.base
        );
        assert_eq!(
            config.windows.bnxtd.base + config.windows.bnxtd.len,
            config.journal.base
        );
        assert_eq!(
            config.journal.base + JOURNAL_RESERVE,
            carve.base + carve.len
        );
        // Too small for bnxtd's window beside the frames, or misaligned: refused.
        let small = RamWindow {
            base: carve.base,
            len: 16 << 20,
        };
        assert!(matches!(
            init_config(small),
            Err(LayoutError::TooSmall { .. })
        ));
        let odd = RamWindow {
            base: carve.base + 1,
            len: carve.len,
        };
        assert!(matches!(
            init_config(odd),
            Err(LayoutError::TooSmall { .. })
        ));
    }
}
