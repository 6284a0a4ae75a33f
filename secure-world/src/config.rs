//! Build-time configuration of the modelled OP-TEE OS, with the upstream source of every default.

use core::fmt;
use core::str::FromStr;

use thiserror::Error;

use crate::heap::CORE_HEAP_BYTES;

/// Which OP-TEE OS release the model answers as.
///
/// * [`Profile::Optee3_14`] (the default): the release current with the Linux 5.14 series. No
///   RPC_ARG, no asynchronous notifications; every RPC command travels in an RPC ALLOC'd (or
///   cached) argument buffer.
/// * [`Profile::Optee4x`]: current OP-TEE. EXCHANGE_CAPABILITIES adds SEC_CAP_RPC_ARG (a3 = the
///   RPC param count) and SEC_CAP_ASYNC_NOTIF (a2 = the largest notification value), as
///   core/arch/arm/tee/entry_fast.c does; CALL_WITH_RPC_ARG and CALL_WITH_REGD_ARG exist
///   (core/arch/arm/kernel/thread_optee_smc.c), ENABLE_ASYNC_NOTIF and GET_ASYNC_NOTIF_VALUE
///   answer, and the DO_BOTTOM_HALF and STOP_ASYNC_NOTIF commands run (core/tee/entry_std.c,
///   core/kernel/notif.c, core/kernel/notif_default.c). Secure threads wait on
///   NOTIF_SYNC_VALUE_BASE + thread id (core/kernel/wait_queue.c), above the asynchronous values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    #[default]
    Optee3_14,
    Optee4x,
}

/// A profile name other than `3.14` or `4.x`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown OP-TEE profile {0:?}: expected 3.14 or 4.x")]
pub struct UnknownProfile(pub String);

impl Profile {
    /// Both profiles, the default first.
    pub const ALL: [Profile; 2] = [Profile::Optee3_14, Profile::Optee4x];

    /// The revision GET_OS_REVISION reports under this profile. 4.x reports 4.10, the release of
    /// the optee_os sources this profile was read from.
    pub const fn os_revision(self) -> OsRevision {
        match self {
            Profile::Optee3_14 => OsRevision {
                major: 3,
                minor: 14,
                build_id: 0,
            },
            Profile::Optee4x => OsRevision {
                major: 4,
                minor: 10,
                build_id: 0,
            },
        }
    }

    /// CALL_WITH_RPC_ARG / CALL_WITH_REGD_ARG exist (SEC_CAP_RPC_ARG, OP-TEE >= 3.17).
    pub const fn has_rpc_arg(self) -> bool {
        matches!(self, Profile::Optee4x)
    }

    /// Asynchronous notifications exist (CFG_CORE_ASYNC_NOTIF, on by default for QEMU since 3.17).
    pub const fn has_async_notif(self) -> bool {
        matches!(self, Profile::Optee4x)
    }

    /// The name `--optee` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::Optee3_14 => "3.14",
            Profile::Optee4x => "4.x",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Profile, UnknownProfile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// OP-TEE OS revision reported by GET_OS_REVISION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsRevision {
    pub major: u32,
    pub minor: u32,
    /// Build id (a2); upstream reports a git hash fragment, 0 when unknown.
    pub build_id: u32,
}

/// The reserved (static) shm area of a build with CFG_CORE_RESERVED_SHM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedShm {
    /// First physical address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// How the model is built. Every field has a default taken from OP-TEE OS or the seed machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Secure threads: CFG_NUM_THREADS ?= 2 in mk/config.mk; neither the QEMU vexpress flavours
    /// nor plat-bcm (the seed's NS3) override it.
    pub threads: usize,
    /// Core heap: CFG_CORE_HEAP_SIZE ?= 65536 in mk/config.mk, not overridden by QEMU or NS3.
    pub core_heap_bytes: usize,
    /// Core heap already in use by OP-TEE itself once booted; calibrated against the seed's
    /// failure, see [`crate::heap::HEAP_BASELINE_BYTES`].
    pub heap_baseline_bytes: usize,
    /// First physical address of normal-world RAM (QEMU virt: 0x4000_0000).
    pub ram_base: u64,
    /// Size of normal-world RAM: the seed machine has 8 GiB.
    pub ram_size: u64,
    /// Reserved shm: CFG_CORE_RESERVED_SHM ?= y in 3.14's mk/config.mk. With it the model
    /// reports HAVE_RESERVED_SHM and answers GET_SHM_CONFIG; `None` is a build without it, where
    /// GET_SHM_CONFIG is an unknown function (core/arch/arm/tee/entry_fast.c). 2 MiB as on QEMU
    /// (plat-vexpress conf.mk, SHMEM size 0x00200000), placed just below `ram_base` so that it
    /// never overlaps the RAM dynamic registrations use. Reported but not backed: clients use
    /// dynamic shm.
    pub reserved_shm: Option<ReservedShm>,
    /// Which OP-TEE release the model answers as; 3.14 by default.
    pub profile: Profile,
    /// Reported OS revision: the profile's ([`Profile::os_revision`]); 3.14, the release current
    /// when the Linux 5.14 series landed, by default.
    pub os_revision: OsRevision,
    /// Every n-th yielding call is interrupted once by a foreign interrupt (RPC FOREIGN_INTR)
    /// before it runs; `None` (the default) never interrupts.
    pub foreign_intr_every: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: 2,
            core_heap_bytes: CORE_HEAP_BYTES,
            heap_baseline_bytes: crate::heap::HEAP_BASELINE_BYTES,
            ram_base: 0x4000_0000,
            ram_size: 8 << 30,
            reserved_shm: Some(ReservedShm {
                base: 0x4000_0000 - (2 << 20),
                size: 2 << 20,
            }),
            profile: Profile::Optee3_14,
            os_revision: Profile::Optee3_14.os_revision(),
            foreign_intr_every: None,
        }
    }
}

impl Config {
    /// The defaults, answering as `profile` (its capabilities and its revision).
    pub fn for_profile(profile: Profile) -> Config {
        Config {
            profile,
            os_revision: profile.os_revision(),
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_by_name_and_refuse_anything_else() {
        assert_eq!("3.14".parse(), Ok(Profile::Optee3_14));
        assert_eq!("4.x".parse(), Ok(Profile::Optee4x));
        for bad in ["4", "3.17", "", "4.X"] {
            let err = bad.parse::<Profile>().expect_err("not a profile");
            assert_eq!(err, UnknownProfile(bad.to_owned()));
            assert!(err.to_string().contains("expected 3.14 or 4.x"));
        }
        assert_eq!(Config::default().profile, Profile::Optee3_14);
        let modern = Config::for_profile(Profile::Optee4x);
        assert_eq!(
            (modern.os_revision.major, modern.os_revision.minor),
            (4, 10)
        );
    }
}
