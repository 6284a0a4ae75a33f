//! The device tree a normal kexec passes on: the running one, minus what makes a kernel a
//! crash kernel.
//!
//! kexec-tools' arm64 loader (kexec/arch/arm64/kexec-arm64.c, setup_2nd_dtb) reuses the running
//! kernel's /sys/firmware/fdt for `kexec -l` and only adds to /chosen. Out of the crash kernel
//! that tree still carries `linux,elfcorehdr` and `linux,usable-memory-range`, so the kernel it
//! kexecs into would believe it is a crash kernel too (a /proc/vmcore, a few hundred MiB of
//! RAM). Those two properties are turned into FDT_NOP tokens, as libfdt's fdt_nop_property
//! does: the blob keeps its size and every offset, and a reader skips the NOPs.

/// The /chosen properties only a crash kernel may see (Documentation/devicetree/bindings/
/// chosen.txt).
pub const CRASH_ONLY: [&str; 2] = ["linux,elfcorehdr", "linux,usable-memory-range"];

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// A blob that is not a flattened device tree this code can walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FdtError {
    #[error("not a flattened device tree (bad magic or header)")]
    BadHeader,
    #[error("structure block truncated or malformed at offset {0}")]
    Malformed(usize),
}

fn be32(blob: &[u8], at: usize) -> Result<u32, FdtError> {
    let bytes = blob.get(at..at + 4).ok_or(FdtError::Malformed(at))?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// `blob` with every property of `/chosen` named in `names` replaced by NOPs; also returns
/// how many were removed.
pub fn without_chosen_props(blob: &[u8], names: &[&str]) -> Result<(Vec<u8>, usize), FdtError> {
    if be32(blob, 0)? != MAGIC {
        return Err(FdtError::BadHeader);
    }
    let total = be32(blob, 4)? as usize;
    let off_struct = be32(blob, 8)? as usize;
    let off_strings = be32(blob, 12)? as usize;
    let size_struct = be32(blob, 36)? as usize;
    if total > blob.len() || off_struct + size_struct > total || off_strings > total {
        return Err(FdtError::BadHeader);
    }
    let mut out = blob.to_vec();
    let mut removed = 0;
    let mut at = off_struct;
    let end = off_struct + size_struct;
    // The path of the node being walked, as names.
    let mut path: Vec<String> = Vec::new();
    while at < end {
        let token = be32(blob, at)?;
        match token {
            BEGIN_NODE => {
                let name_start = at + 4;
                let len = blob[name_start..end]
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or(FdtError::Malformed(at))?;
                path.push(String::from_utf8_lossy(&blob[name_start..name_start + len]).into());
                at = name_start + align4(len + 1);
            }
            END_NODE => {
                path.pop().ok_or(FdtError::Malformed(at))?;
                at += 4;
            }
            PROP => {
                let len = be32(blob, at + 4)? as usize;
                let name_off = be32(blob, at + 8)? as usize;
                let next = at + 12 + align4(len);
                if next > end {
                    return Err(FdtError::Malformed(at));
                }
                let name_at = off_strings + name_off;
                let name_len = blob
                    .get(name_at..total)
                    .and_then(|rest| rest.iter().position(|b| *b == 0))
                    .ok_or(FdtError::Malformed(at))?;
                let name = &blob[name_at..name_at + name_len];
                let in_chosen = path.len() == 2 && path[0].is_empty() && path[1] == "chosen";
                if in_chosen && names.iter().any(|n| n.as_bytes() == name) {
                    for word in (at..next).step_by(4) {
                        out[word..word + 4].copy_from_slice(&NOP.to_be_bytes());
                    }
                    removed += 1;
                }
                at = next;
            }
            NOP => at += 4,
            END => break,
            _ => return Err(FdtError::Malformed(at)),
        }
    }
    Ok((out, removed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A tiny tree: / { chosen { bootargs; linux,elfcorehdr; linux,usable-memory-range; };
    /// memory { linux,elfcorehdr; }; } (the last one outside /chosen must stay).
    fn tree() -> Vec<u8> {
        let strings = b"bootargs\0linux,elfcorehdr\0linux,usable-memory-range\0";
        let (bootargs, elfcorehdr, usable) = (0u32, 9u32, 26u32);
        let mut st = Vec::new();
        let word = |st: &mut Vec<u8>, w: u32| st.extend_from_slice(&w.to_be_bytes());
        let node = |st: &mut Vec<u8>, name: &str| {
            st.extend_from_slice(&BEGIN_NODE.to_be_bytes());
            st.extend_from_slice(name.as_bytes());
            st.push(0);
            while st.len() % 4 != 0 {
                st.push(0);
            }
        };
        let prop = |st: &mut Vec<u8>, name: u32, value: &[u8]| {
            st.extend_from_slice(&PROP.to_be_bytes());
            st.extend_from_slice(&(value.len() as u32).to_be_bytes());
            st.extend_from_slice(&name.to_be_bytes());
            st.extend_from_slice(value);
            while st.len() % 4 != 0 {
                st.push(0);
            }
        };
        node(&mut st, "");
        node(&mut st, "chosen");
        prop(&mut st, bootargs, b"console=ttyAMA0\0");
        prop(&mut st, elfcorehdr, &[0; 16]);
        prop(&mut st, usable, &[1; 16]);
        word(&mut st, END_NODE);
        node(&mut st, "memory@40000000");
        prop(&mut st, elfcorehdr, &[2; 8]);
        word(&mut st, END_NODE);
        word(&mut st, END_NODE);
        word(&mut st, END);
        let header_len = 40;
        let rsvmap = [0u8; 16];
        let off_rsv = header_len;
        let off_struct = off_rsv + rsvmap.len();
        let off_strings = off_struct + st.len();
        let total = off_strings + strings.len();
        let mut blob = Vec::new();
        for w in [
            MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsv as u32,
            17,
            16,
            0,
            strings.len() as u32,
            st.len() as u32,
        ] {
            blob.extend_from_slice(&w.to_be_bytes());
        }
        blob.extend_from_slice(&rsvmap);
        blob.extend_from_slice(&st);
        blob.extend_from_slice(strings);
        blob
    }

    fn count(blob: &[u8], needle: &[u8]) -> usize {
        blob.windows(needle.len()).filter(|w| *w == needle).count()
    }

    /// kexec-tools kexec/arch/arm64/kexec-arm64.c (setup_2nd_dtb) would pass these on; they
    /// become NOPs as libfdt's fdt_nop_property makes them.
    #[test]
    fn crash_only_properties_of_chosen_become_nops_and_nothing_else_moves() {
        let blob = tree();
        let (out, removed) = without_chosen_props(&blob, &CRASH_ONLY).unwrap();
        assert_eq!(removed, 2);
        assert_eq!(out.len(), blob.len());
        // bootargs' value and the memory node's property are untouched.
        assert_eq!(count(&out, b"console=ttyAMA0"), 1);
        assert_eq!(count(&out, &[2; 8]), 1);
        assert_eq!(count(&out, &[1; 16]), 0);
        // Walking the result finds nothing more to remove.
        assert_eq!(without_chosen_props(&out, &CRASH_ONLY).unwrap().1, 0);
    }

    /// A blob that is not a flattened device tree (libfdt fdt_check_header's magic) is refused.
    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            without_chosen_props(&[0; 64], &CRASH_ONLY),
            Err(FdtError::BadHeader)
        );
        let mut blob = tree();
        let cut = blob.len() - 60;
        blob.truncate(cut);
        assert!(without_chosen_props(&blob, &CRASH_ONLY).is_err());
    }
}
