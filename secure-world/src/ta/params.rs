//! The four params a TA entry point sees (`TEE_Param[4]`), and the context giving access to
//! their memory.

use optee_abi::mem::{MemError, PhysMem};
use optee_abi::msg::Direction;
use optee_abi::uuid::Uuid;
use thiserror::Error;

use super::RpcShm;
use crate::buffer::NwBuffer;

/// Number of params a TA entry point takes (`TEE_NUM_PARAMS`).
pub const TA_NUM_PARAMS: usize = 4;

/// A param's type as the TA sees it (`TEE_PARAM_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    None,
    ValueInput,
    ValueOutput,
    ValueInout,
    MemrefInput,
    MemrefOutput,
    MemrefInout,
}

/// A TA's misuse of its params; TAs answer it with `TEE_ERROR_BAD_PARAMETERS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParamError {
    /// index beyond the four params
    #[error("no param {0}")]
    NoSuchParam(usize),
    /// the param is not of the type the access needs
    #[error("param {index} is {actual:?}")]
    WrongType { index: usize, actual: ParamType },
    /// writing to an input-only param
    #[error("param {0} is input-only")]
    NotOutput(usize),
    /// memory access outside the buffer or outside RAM
    #[error(transparent)]
    Mem(#[from] MemError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    None,
    Value {
        dir: Direction,
        a: u64,
        b: u64,
        c: u64,
    },
    /// `size` starts as the buffer size; a TA may change it (an output size, or the size it
    /// needs when answering SHORT_BUFFER).
    Memref {
        dir: Direction,
        buffer: NwBuffer,
        size: u64,
    },
}

/// The four params of one TA entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaParams {
    pub(crate) slots: [Slot; TA_NUM_PARAMS],
    /// How many params the normal world actually sent (the rest read as NONE).
    pub(crate) passed: usize,
}

impl Default for TaParams {
    fn default() -> Self {
        TaParams {
            slots: [Slot::None, Slot::None, Slot::None, Slot::None],
            passed: 0,
        }
    }
}

impl TaParams {
    fn slot(&self, index: usize) -> Result<&Slot, ParamError> {
        self.slots.get(index).ok_or(ParamError::NoSuchParam(index))
    }

    fn slot_mut(&mut self, index: usize) -> Result<&mut Slot, ParamError> {
        self.slots
            .get_mut(index)
            .ok_or(ParamError::NoSuchParam(index))
    }

    /// The type of param `index` (NONE beyond the four).
    pub fn param_type(&self, index: usize) -> ParamType {
        match self.slots.get(index) {
            None | Some(Slot::None) => ParamType::None,
            Some(Slot::Value { dir, .. }) => match dir {
                Direction::In => ParamType::ValueInput,
                Direction::Out => ParamType::ValueOutput,
                Direction::InOut => ParamType::ValueInout,
            },
            Some(Slot::Memref { dir, .. }) => match dir {
                Direction::In => ParamType::MemrefInput,
                Direction::Out => ParamType::MemrefOutput,
                Direction::InOut => ParamType::MemrefInout,
            },
        }
    }
}

/// What a TA entry point may touch: its params, their memory, and a few core services.
pub struct TaContext<'a> {
    pub(crate) mem: &'a mut dyn PhysMem,
    pub(crate) params: &'a mut TaParams,
    pub(crate) cancelled: bool,
    pub(crate) devices: &'a [Uuid],
}

impl TaContext<'_> {
    /// Types of the four params, for the usual exact-match check.
    pub fn param_types(&self) -> [ParamType; TA_NUM_PARAMS] {
        [0, 1, 2, 3].map(|i| self.params.param_type(i))
    }

    /// Params the normal world sent in the message (0..=4).
    pub fn params_passed(&self) -> usize {
        self.params.passed
    }

    /// Values (a, b, c) of a value param.
    pub fn value(&self, index: usize) -> Result<(u64, u64, u64), ParamError> {
        match self.params.slot(index)? {
            Slot::Value { a, b, c, .. } => Ok((*a, *b, *c)),
            _ => Err(self.wrong_type(index)),
        }
    }

    /// Sets an output or in/out value param.
    pub fn set_value(&mut self, index: usize, a: u64, b: u64, c: u64) -> Result<(), ParamError> {
        let actual = self.params.param_type(index);
        match self.params.slot_mut(index)? {
            Slot::Value {
                dir,
                a: va,
                b: vb,
                c: vc,
            } => {
                if !dir.is_output() {
                    return Err(ParamError::NotOutput(index));
                }
                (*va, *vb, *vc) = (a, b, c);
                Ok(())
            }
            _ => Err(ParamError::WrongType { index, actual }),
        }
    }

    /// Current size of a memref param.
    pub fn memref_size(&self, index: usize) -> Result<u64, ParamError> {
        match self.params.slot(index)? {
            Slot::Memref { size, .. } => Ok(*size),
            _ => Err(self.wrong_type(index)),
        }
    }

    /// True when the memref is a null memref (a size without memory).
    pub fn memref_is_null(&self, index: usize) -> Result<bool, ParamError> {
        Ok(self.buffer(index)?.is_null())
    }

    /// Sets the size reported back for an output or in/out memref.
    pub fn set_memref_size(&mut self, index: usize, new_size: u64) -> Result<(), ParamError> {
        let actual = self.params.param_type(index);
        match self.params.slot_mut(index)? {
            Slot::Memref { dir, size, .. } => {
                if !dir.is_output() {
                    return Err(ParamError::NotOutput(index));
                }
                *size = new_size;
                Ok(())
            }
            _ => Err(ParamError::WrongType { index, actual }),
        }
    }

    /// Reads from a memref param's buffer.
    pub fn read_memref(&self, index: usize, offset: u64, buf: &mut [u8]) -> Result<(), ParamError> {
        let buffer = self.buffer(index)?;
        Ok(buffer.read(&*self.mem, offset, buf)?)
    }

    /// Writes to an output or in/out memref param's buffer.
    pub fn write_memref(
        &mut self,
        index: usize,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ParamError> {
        let buffer = match self.params.slot(index)? {
            Slot::Memref { dir, buffer, .. } if dir.is_output() => buffer,
            Slot::Memref { .. } => return Err(ParamError::NotOutput(index)),
            _ => return Err(self.wrong_type(index)),
        };
        Ok(buffer.write(&mut *self.mem, offset, data)?)
    }

    /// Reads from RPC shm the TA holds.
    pub fn read_shm(&self, shm: &RpcShm, offset: u64, buf: &mut [u8]) -> Result<(), ParamError> {
        Ok(shm.buffer().read(&*self.mem, offset, buf)?)
    }

    /// Writes to RPC shm the TA holds.
    pub fn write_shm(&mut self, shm: &RpcShm, offset: u64, data: &[u8]) -> Result<(), ParamError> {
        Ok(shm.buffer().write(&mut *self.mem, offset, data)?)
    }

    /// True once the normal world asked to cancel this invocation (CANCEL with its id).
    pub fn cancelled(&self) -> bool {
        self.cancelled
    }

    /// UUIDs of the TAs flagged for device enumeration, in registration order.
    pub fn device_tas(&self) -> &[Uuid] {
        self.devices
    }

    fn buffer(&self, index: usize) -> Result<&NwBuffer, ParamError> {
        match self.params.slot(index)? {
            Slot::Memref { buffer, .. } => Ok(buffer),
            _ => Err(self.wrong_type(index)),
        }
    }

    fn wrong_type(&self, index: usize) -> ParamError {
        ParamError::WrongType {
            index,
            actual: self.params.param_type(index),
        }
    }
}
