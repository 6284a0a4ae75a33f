//! teed's side of the kernel `smc` scheme (`libs/tee-redox/SMC.md`): one handle per SMC function
//! id, opened at `/scheme/smc/<id>`; one SMC is one 64-byte write of a0..a7 (little-endian)
//! followed by one 64-byte read of the registers the secure world returned.
//!
//! Redox has no such scheme; this is the client of the interface teesys asks for, not a stand-in
//! for it. Where the scheme is missing, teed holds no capability, every SMC is refused, and the
//! probe declines (`SecureWorldUnavailable`), so tpmd and bnxtd answer "TEE unavailable".

use optee_abi::smc::Regs;
use smc_caps::{decode, encode, SmcCap, FRAME_BYTES};

/// The path of the capability for function `id` (lower-case hex, eight digits).
pub fn cap_path(id: u32) -> String {
    format!("/scheme/smc/{id:08x}")
}

/// One open handle of the `smc` scheme as bytes in and out; errors are errno values.
pub trait SmcFile {
    fn write(&mut self, buf: &[u8]) -> Result<usize, i32>;
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, i32>;
}

/// Why one SMC through the scheme failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SmcFileError {
    /// The kernel refused the write or the read (errno).
    #[error("smc scheme {op} failed with errno {errno}")]
    Kernel { op: &'static str, errno: i32 },
    /// A write or read moved other than one whole frame.
    #[error("smc scheme {op} moved {got} of {FRAME_BYTES} bytes")]
    Short { op: &'static str, got: usize },
}

/// A capability backed by one `smc` scheme handle.
#[derive(Debug)]
pub struct SchemeCap<F> {
    file: F,
}

impl<F> SchemeCap<F> {
    pub fn new(file: F) -> SchemeCap<F> {
        SchemeCap { file }
    }
}

impl<F: SmcFile> SmcCap for SchemeCap<F> {
    type Error = SmcFileError;

    fn call(&mut self, regs: &Regs) -> Result<Regs, SmcFileError> {
        let out = encode(regs);
        match self.file.write(&out) {
            Ok(FRAME_BYTES) => {}
            Ok(got) => return Err(SmcFileError::Short { op: "write", got }),
            Err(errno) => return Err(SmcFileError::Kernel { op: "write", errno }),
        }
        let mut back = [0u8; FRAME_BYTES];
        match self.file.read(&mut back) {
            Ok(FRAME_BYTES) => Ok(decode(&back)),
            Ok(got) => Err(SmcFileError::Short { op: "read", got }),
            Err(errno) => Err(SmcFileError::Kernel { op: "read", errno }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use optee_abi::smc::func;

    /// A handle of the scheme as SMC.md specifies it, for one function id: the write must be one
    /// frame naming that id, and the read returns the answer once.
    struct Handle {
        id: u32,
        latched: Option<[u8; FRAME_BYTES]>,
        short_read: bool,
    }

    impl SmcFile for Handle {
        fn write(&mut self, buf: &[u8]) -> Result<usize, i32> {
            let frame: [u8; FRAME_BYTES] = buf.try_into().map_err(|_| 22)?;
            let regs = decode(&frame);
            if regs[0] != u64::from(self.id) {
                return Err(1); // EPERM: not this handle's function
            }
            self.latched = Some(encode(&[0, regs[1] + 1, 0, 0, 0, 0, 0, regs[7]]));
            Ok(FRAME_BYTES)
        }
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, i32> {
            let frame = self.latched.take().ok_or(22)?;
            let n = if self.short_read { 8 } else { FRAME_BYTES };
            buf[..n].copy_from_slice(&frame[..n]);
            Ok(n)
        }
    }

    fn handle(id: u32) -> SchemeCap<Handle> {
        SchemeCap::new(Handle {
            id,
            latched: None,
            short_read: false,
        })
    }

    /// libs/tee-redox/SMC.md §1, the frame of optee_smc.h's a0..a7.
    #[test]
    fn one_smc_is_one_frame_written_and_one_read() {
        let mut cap = handle(func::CALL_WITH_ARG);
        let answer = cap
            .call(&[u64::from(func::CALL_WITH_ARG), 41, 0, 0, 0, 0, 0, 0])
            .unwrap();
        assert_eq!(answer[..2], [0, 42]);
    }

    /// SMC.md §1 (as seL4 `smc.c` refuses an x0 other than the badge).
    #[test]
    fn a_frame_for_another_function_is_the_kernels_refusal() {
        let mut cap = handle(func::CALL_WITH_ARG);
        let error = cap.call(&[u64::from(func::CALLS_UID), 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            error,
            Err(SmcFileError::Kernel {
                op: "write",
                errno: 1
            })
        );
    }

    /// SMC.md §1: exactly 64 bytes each way.
    #[test]
    fn a_short_answer_is_an_error_not_registers() {
        let mut cap = SchemeCap::new(Handle {
            id: func::CALLS_UID,
            latched: None,
            short_read: true,
        });
        let error = cap.call(&[u64::from(func::CALLS_UID), 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(error, Err(SmcFileError::Short { op: "read", got: 8 }));
    }

    /// SMC.md §1: `/scheme/smc/<id>`, eight lower-case hex digits.
    #[test]
    fn paths_name_the_function_id() {
        assert_eq!(cap_path(func::CALL_WITH_ARG), "/scheme/smc/32000004");
        assert_eq!(cap_path(func::CALLS_UID), "/scheme/smc/bf00ff01");
    }
}
