//! The fTPM's NV on disk, so that a restart of the secure-world *process* keeps it (the real
//! fTPM keeps it in OP-TEE secure storage).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Reads the NV blob; `None` when the file does not exist yet.
pub(super) fn load(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Replaces the file with `blob` atomically: a process that dies at any point leaves the old
/// or the new blob, never a torn one. What the file must survive is a restart of the
/// secure-world process (the machine's power stays on: the RAM file and teed's journal are not
/// synced either), and the rename alone gives that; an fsync per NV commit held the secure
/// world, which answers one SMC at a time, for milliseconds (measured: tpmd's TPM2_Shutdown at
/// every kexec, and bnxtd's calls queued behind it).
pub(super) fn store(path: &Path, blob: &[u8]) -> io::Result<()> {
    let temp = temp_path(path);
    let mut file = fs::File::create(&temp)?;
    file.write_all(blob)?;
    drop(file);
    fs::rename(&temp, path)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn store_replaces_and_load_reads_back() {
        let dir = std::env::temp_dir().join(format!("ftpm-state-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nv.bin");
        assert_eq!(load(&path).unwrap(), None);
        store(&path, b"first").unwrap();
        store(&path, b"second, longer").unwrap();
        assert_eq!(load(&path).unwrap().unwrap(), b"second, longer");
        assert!(!temp_path(&path).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
