//! Normal-world RAM shared by every core of the simulation, in one thread.

use std::cell::RefCell;
use std::rc::Rc;

use optee_abi::mem::{MemError, PhysMem};
use secure_world::ram::SparseRam;

/// A handle on the one sparse RAM of the simulated machine; clones share it.
#[derive(Debug, Clone)]
pub struct SharedRam(Rc<RefCell<SparseRam>>);

impl SharedRam {
    /// A zeroed RAM window.
    pub fn new(base: u64, size: u64) -> SharedRam {
        SharedRam(Rc::new(RefCell::new(SparseRam::new(base, size))))
    }

    /// Forgets every page, as a power cycle does.
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }

    /// Pages holding host memory.
    pub fn resident_pages(&self) -> usize {
        self.0.borrow().resident_pages()
    }
}

impl PhysMem for SharedRam {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.borrow().read(pa, buf)
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.0.borrow_mut().write(pa, data)
    }
    fn contains(&self, pa: u64, len: u64) -> bool {
        self.0.borrow().contains(pa, len)
    }
    fn zero(&mut self, pa: u64, len: u64) -> Result<(), MemError> {
        self.0.borrow_mut().zero(pa, len)
    }
}
