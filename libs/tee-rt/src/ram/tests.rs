use super::*;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU32, Ordering};

/// A temporary RAM file path that removes itself.
struct TempPath(PathBuf);

impl TempPath {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tee-rt-ram-{}-{n}.bin", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn two_mappings_of_one_file_see_each_others_writes() {
    let tmp = TempPath::new();
    let mut secure_view = RamFile::open(&tmp.0, 4 * MIB).unwrap();
    let mut normal_view = RamFile::open(&tmp.0, 4 * MIB).unwrap();

    normal_view
        .write(DEFAULT_RAM_BASE + 0x1234, b"registered page")
        .unwrap();
    let mut seen = [0u8; 15];
    secure_view
        .read(DEFAULT_RAM_BASE + 0x1234, &mut seen)
        .unwrap();
    assert_eq!(&seen, b"registered page");

    secure_view
        .write_u64(DEFAULT_RAM_BASE + 4 * MIB - 8, 0x1122_3344_5566_7788)
        .unwrap();
    assert_eq!(
        normal_view
            .read_u64(DEFAULT_RAM_BASE + 4 * MIB - 8)
            .unwrap(),
        0x1122_3344_5566_7788
    );
}

#[test]
fn default_size_file_is_sparse() {
    let tmp = TempPath::new();
    let mut ram = RamFile::open(&tmp.0, DEFAULT_RAM_BYTES).unwrap();
    let last = DEFAULT_RAM_BASE + DEFAULT_RAM_BYTES - 8;
    ram.write_u64(last, 7).unwrap();
    assert_eq!(ram.read_u64(last).unwrap(), 7);

    let meta = std::fs::metadata(&tmp.0).unwrap();
    assert_eq!(meta.len(), DEFAULT_RAM_BYTES);
    // 512-byte blocks actually allocated: a handful of pages, nowhere near 8 GiB.
    assert!(
        meta.blocks() * 512 < 64 * MIB,
        "allocated {} blocks",
        meta.blocks()
    );
}

#[test]
fn accesses_outside_the_window_are_refused() {
    let tmp = TempPath::new();
    let mut ram = RamFile::open_at(&tmp.0, 0x8000_0000, MIB).unwrap();
    let mut byte = [0u8; 1];

    assert_eq!(
        ram.read(0x7fff_ffff, &mut byte),
        Err(MemError {
            pa: 0x7fff_ffff,
            len: 1
        })
    );
    assert_eq!(
        ram.write(0x8000_0000 + MIB, &[1]),
        Err(MemError {
            pa: 0x8000_0000 + MIB,
            len: 1
        })
    );
    // Straddling the end fails as a whole and leaves the last byte untouched.
    assert!(ram.write(0x8000_0000 + MIB - 1, &[9, 9]).is_err());
    ram.read(0x8000_0000 + MIB - 1, &mut byte).unwrap();
    assert_eq!(byte, [0]);
    assert!(ram.read_u64(u64::MAX - 3).is_err());

    assert!(ram.contains(0x8000_0000, MIB));
    assert!(ram.contains(0x8000_0000 + MIB - 1, 1));
    assert!(!ram.contains(0x8000_0000, MIB + 1));
    assert!(!ram.contains(0x8000_0000 + MIB, 0));
    assert!(!ram.contains(u64::MAX, u64::MAX));
    assert_eq!((ram.base(), ram.size()), (0x8000_0000, MIB));
}

#[test]
fn reopening_keeps_contents_and_never_shrinks() {
    let tmp = TempPath::new();
    {
        let mut ram = RamFile::open(&tmp.0, 2 * MIB).unwrap();
        ram.write(DEFAULT_RAM_BASE + MIB, b"survives").unwrap();
    }
    // A smaller view leaves the file at its size; a larger one extends it.
    let small = RamFile::open(&tmp.0, MIB).unwrap();
    assert_eq!(std::fs::metadata(&tmp.0).unwrap().len(), 2 * MIB);
    assert!(!small.contains(DEFAULT_RAM_BASE + MIB, 1));

    let large = RamFile::open(&tmp.0, 3 * MIB).unwrap();
    assert_eq!(std::fs::metadata(&tmp.0).unwrap().len(), 3 * MIB);
    let mut seen = [0u8; 8];
    large.read(DEFAULT_RAM_BASE + MIB, &mut seen).unwrap();
    assert_eq!(&seen, b"survives");
}

#[test]
fn bad_geometry_is_a_typed_error() {
    let tmp = TempPath::new();
    assert!(matches!(RamFile::open(&tmp.0, 0), Err(RamError::ZeroSize)));
    assert!(matches!(
        RamFile::open_at(&tmp.0, u64::MAX - 10, MIB),
        Err(RamError::WindowOverflow { .. })
    ));
    let missing_dir = tmp.0.join("no-such-dir").join("ram.bin");
    assert!(matches!(
        RamFile::open(&missing_dir, MIB),
        Err(RamError::Io { action: "open", .. })
    ));
}

fn open_rw(path: &Path) -> OwnedFd {
    OwnedFd::from(
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap(),
    )
}

#[test]
fn a_handed_over_descriptor_maps_the_same_ram() {
    let tmp = TempPath::new();
    let mut owner = RamFile::open(&tmp.0, 2 * MIB).unwrap();
    let mut server = RamFile::from_fd(open_rw(&tmp.0), DEFAULT_RAM_BASE, 2 * MIB).unwrap();
    assert_eq!((server.base(), server.size()), (DEFAULT_RAM_BASE, 2 * MIB));
    server
        .write(DEFAULT_RAM_BASE + 0x2000, b"from teed")
        .unwrap();
    let mut seen = [0u8; 9];
    owner.read(DEFAULT_RAM_BASE + 0x2000, &mut seen).unwrap();
    assert_eq!(&seen, b"from teed");
    owner.write_u64(DEFAULT_RAM_BASE, 42).unwrap();
    assert_eq!(server.read_u64(DEFAULT_RAM_BASE).unwrap(), 42);

    let whole = RamFile::from_fd_whole(open_rw(&tmp.0), DEFAULT_RAM_BASE).unwrap();
    assert_eq!(whole.size(), 2 * MIB);
    assert!(!whole.contains(DEFAULT_RAM_BASE + 2 * MIB, 1));
}

#[test]
fn a_handed_over_descriptor_is_never_grown_or_overrun() {
    let tmp = TempPath::new();
    let _owner = RamFile::open(&tmp.0, MIB).unwrap();
    match RamFile::from_fd(open_rw(&tmp.0), DEFAULT_RAM_BASE, 2 * MIB) {
        Err(RamError::FileTooShort { len, size }) => assert_eq!((len, size), (MIB, 2 * MIB)),
        other => panic!("expected FileTooShort, got {other:?}"),
    }
    assert_eq!(std::fs::metadata(&tmp.0).unwrap().len(), MIB);
    assert!(matches!(
        RamFile::from_fd(open_rw(&tmp.0), DEFAULT_RAM_BASE, 0),
        Err(RamError::ZeroSize)
    ));
    let empty = TempPath::new();
    std::fs::write(&empty.0, b"").unwrap();
    assert!(matches!(
        RamFile::from_fd_whole(open_rw(&empty.0), DEFAULT_RAM_BASE),
        Err(RamError::ZeroSize)
    ));
}
