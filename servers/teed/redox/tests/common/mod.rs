//! The fixture of the Redox host tests: teed's `tee` scheme over the OP-TEE model, with the
//! model reached through one capability per function id, as the kernel `smc` scheme
//! (libs/tee-redox/SMC.md) would hand them out, and normal-world memory as the carve-out teed
//! maps. A client's view of its window is a second mapping of the same bytes, as teed's
//! `window` path gives it on Redox.
#![allow(dead_code, clippy::unwrap_used)]

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use optee_abi::smc::Regs;
use smc_caps::{CapConduit, SmcCap, TEED_FUNCTIONS};
use tee_proto::lifecycle::{ClientWindows, RamWindow};
use tee_proto::{Frame, Header, FRAME_MAX};
use tee_redox::policy::{BNXTD, TPMD, TPM_GROUP};
use tee_redox::{Caller, RegionRam, SchemeAdapter};
use tee_test_support::secure_world::{Config, SecureWorld};
use teed::TeedConfig;
use teed_redox::{Layout, Placed, TeeScheme, WindowMap};

/// The layout of the test machine: [ frames | tpmd | bnxtd | journal ].
pub const LAYOUT: Layout = Layout {
    ram: RamWindow {
        base: 0x4000_0000,
        len: 2 << 20,
    },
    journal: RamWindow {
        base: 0x4200_0000,
        len: 128 << 10,
    },
    windows: ClientWindows {
        tpmd: RamWindow {
            base: 0x4020_0000,
            len: 64 << 10,
        },
        bnxtd: RamWindow {
            base: 0x4100_0000,
            len: 16 << 20,
        },
    },
};

pub const TEED_GENERATION: u32 = 7;

pub const ROOT: Caller = Caller {
    pid: 40,
    uid: 0,
    gid: 0,
};
pub const TPMD_CALLER: Caller = Caller {
    pid: 20,
    uid: TPMD.uid,
    gid: TPMD.gid,
};
pub const BNXTD_CALLER: Caller = Caller {
    pid: 21,
    uid: BNXTD.uid,
    gid: BNXTD.gid,
};
/// A user in the TPM group.
pub const TPM_USER: Caller = Caller {
    pid: 30,
    uid: 1000,
    gid: TPM_GROUP,
};
/// A user in no group of ours.
pub const STRANGER: Caller = Caller {
    pid: 31,
    uid: 1000,
    gid: 1000,
};

/// The OP-TEE model and its view of normal-world memory.
pub struct Model {
    pub world: SecureWorld,
    pub ram: RegionRam,
}

pub type Shared = Rc<RefCell<Model>>;

/// The capability for one function id: the kernel checks that a0 names it (SMC.md), as seL4
/// checks a badge, then runs the SMC.
pub struct ModelCap {
    id: u32,
    model: Shared,
}

impl SmcCap for ModelCap {
    type Error = &'static str;
    fn call(&mut self, regs: &Regs) -> Result<Regs, &'static str> {
        if regs[0] != u64::from(self.id) {
            return Err("EPERM: not this handle's function");
        }
        let mut model = self.model.borrow_mut();
        let Model { world, ram } = &mut *model;
        Ok(world.smc(ram, *regs))
    }
}

/// Heap memory standing in for the physical carve-out, for the life of the test process.
fn carve(len: u64) -> NonNull<u8> {
    let bytes: &'static mut [u8] = Box::leak(vec![0u8; len as usize].into_boxed_slice());
    NonNull::new(bytes.as_mut_ptr()).unwrap()
}

/// A test machine: the carve-out, mapped once for teed and once for the model.
pub struct Machine {
    pub model: Shared,
    regions: Vec<(RamWindow, NonNull<u8>)>,
}

impl Machine {
    pub fn new() -> Machine {
        let regions: Vec<(RamWindow, NonNull<u8>)> = [
            LAYOUT.ram,
            LAYOUT.journal,
            LAYOUT.windows.tpmd,
            LAYOUT.windows.bnxtd,
        ]
        .into_iter()
        .map(|window| (window, carve(window.len)))
        .collect();
        let mut sw_ram = RegionRam::new();
        for (window, ptr) in &regions {
            // SAFETY: leaked for the process's life; only raw-pointer views exist.
            unsafe { sw_ram.map(window.base, *ptr, window.len as usize) }.unwrap();
        }
        let world = SecureWorld::new(Config::default(), 0x5eed);
        Machine {
            model: Rc::new(RefCell::new(Model { world, ram: sw_ram })),
            regions,
        }
    }

    /// teed's view: every window.
    pub fn teed_ram(&self) -> (RegionRam, WindowMap) {
        let mut ram = RegionRam::new();
        for (window, ptr) in &self.regions {
            // SAFETY: as in `new`.
            unsafe { ram.map(window.base, *ptr, window.len as usize) }.unwrap();
        }
        let placed = |window: RamWindow| {
            ram.address_of(window.base, window.len)
                .map(|addr| Placed { window, addr })
        };
        let windows = WindowMap {
            tpmd: placed(LAYOUT.windows.tpmd),
            bnxtd: placed(LAYOUT.windows.bnxtd),
        };
        (ram, windows)
    }

    /// A client's view: its own window alone.
    pub fn client_ram(&self, window: RamWindow) -> RegionRam {
        let (_, ptr) = self.regions.iter().find(|(w, _)| *w == window).unwrap();
        let mut ram = RegionRam::new();
        // SAFETY: as in `new`.
        unsafe { ram.map(window.base, *ptr, window.len as usize) }.unwrap();
        ram
    }

    /// Capabilities for every function teed issues (or none: Redox today).
    pub fn conduit(&self, with_caps: bool) -> CapConduit<ModelCap> {
        let mut conduit = CapConduit::new();
        if with_caps {
            for id in TEED_FUNCTIONS {
                let cap = ModelCap {
                    id,
                    model: self.model.clone(),
                };
                conduit.grant(id, cap).unwrap();
            }
        }
        conduit
    }

    /// teed's scheme over this machine, started: its probe has run.
    pub fn teed(&self, with_caps: bool) -> TeeScheme<ModelCap, RegionRam> {
        let (ram, windows) = self.teed_ram();
        let mut tee = TeeScheme::new(TeedConfig::new(), ram, self.conduit(with_caps), windows);
        tee.start(0, TEED_GENERATION, &LAYOUT);
        tee
    }

    pub fn registrations(&self) -> usize {
        self.model.borrow().world.registrations().count()
    }

    pub fn sessions(&self) -> usize {
        self.model.borrow().world.sessions().count()
    }
}

/// Encodes a frame.
pub fn encode<T: serde::Serialize>(request_id: u32, to_generation: u32, body: T) -> Vec<u8> {
    let frame = Frame {
        header: Header::new(0, to_generation, request_id),
        body,
    };
    let mut buf = vec![0u8; FRAME_MAX];
    tee_proto::encode(&frame, &mut buf).unwrap().to_vec()
}

/// Reads one frame from handle `id` of `scheme`.
pub fn read_frame<A: SchemeAdapter + ?Sized, T: serde::de::DeserializeOwned>(
    scheme: &mut A,
    id: usize,
    caller: &Caller,
) -> Frame<T> {
    let mut buf = vec![0u8; FRAME_MAX];
    let len = scheme.read(id, &mut buf, caller).unwrap();
    tee_proto::decode(&buf[..len]).unwrap()
}
