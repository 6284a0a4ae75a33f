//! Drivers for real TPM clients: tpm2-tools (through tpm2-tss's `swtpm` TCTI), tss-esapi and
//! raw consumers hammering a data socket in parallel. The tests that use them differ only in
//! what stands behind the socket.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use tss_esapi::handles::PcrHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Digest, DigestValues, PcrSelectionListBuilder, PcrSlot};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::Context;

/// PCR16 after one SHA-256 extend with 32 bytes of 0x01: SHA-256(32 zero bytes || 32 × 0x01),
/// as tpm2_pcrread prints it.
pub const PCR16_EXTENDED_WITH_ONES_HEX: &str =
    "0x5C85955F709283ECCE2B74F1B1552918819F390911816E7BB466805A38AB87F3";

/// Installs the Debian packages that provide `tool` when it is missing.
pub fn ensure_tool(tool: &str, packages: &[&str]) {
    static APT_UPDATE: Once = Once::new();
    let present = |tool: &str| {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
            .unwrap_or(false)
    };
    if present(tool) {
        return;
    }
    APT_UPDATE.call_once(|| {
        let _ = Command::new("apt-get").arg("update").status();
    });
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .unwrap();
    assert!(
        status.success() && present(tool),
        "could not install {tool}"
    );
}

/// The swtpm TCTI over the Unix data socket at `path`.
pub fn unix_tcti(path: &Path) -> String {
    format!("swtpm:path={}", path.display())
}

/// The swtpm TCTI over loopback TCP (tss-esapi 7's swtpm configuration knows only host and
/// port).
pub fn tcp_tcti(port: u16) -> String {
    format!("swtpm:host=127.0.0.1,port={port}")
}

/// Runs tpm2-tools' `tool` against `tcti`, whatever its outcome.
pub fn tpm2_tool(tcti: &str, tool: &str, args: &[&str]) -> Output {
    ensure_tool(tool, &["tpm2-tools"]);
    Command::new(tool)
        .args(args)
        .env("TPM2TOOLS_TCTI", tcti)
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Something tpm2-tools can run against, with a directory for the files they write.
pub trait Tpm2Target {
    fn tcti(&self) -> String;
    fn file(&self, name: &str) -> PathBuf;

    /// Runs `tool` and requires success.
    fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let output = tpm2_tool(&self.tcti(), tool, args);
        assert!(output.status.success(), "{tool} {args:?}: {output:?}");
        output
    }
}

/// Extends PCR16 with 32 bytes of 0x01 and checks tpm2_pcrread shows the known digest.
pub fn extend_pcr16_with_ones(target: &impl Tpm2Target) {
    let digest = "01".repeat(32);
    target.tool("tpm2_pcrextend", &[&format!("16:sha256={digest}")]);
    let pcr = stdout(&target.tool("tpm2_pcrread", &["sha256:16"]));
    assert!(pcr.contains(PCR16_EXTENDED_WITH_ONES_HEX), "{pcr}");
}

/// Creates an ECC P-256 primary key in the owner hierarchy, then flushes transient objects.
pub fn create_primary_and_flush(target: &impl Tpm2Target) {
    let primary = target.file("primary.ctx");
    target.tool(
        "tpm2_createprimary",
        &[
            "-C",
            "o",
            "-g",
            "sha256",
            "-G",
            "ecc256",
            "-c",
            path_arg(&primary),
        ],
    );
    target.tool("tpm2_flushcontext", &["-t"]);
}

/// Defines a 32-byte owner NV index, writes `payload`, reads it back, and undefines the index.
pub fn nv_round_trip(target: &impl Tpm2Target, index: &str, payload: &[u8]) {
    let data = target.file("nv.bin");
    std::fs::write(&data, payload).unwrap();
    target.tool(
        "tpm2_nvdefine",
        &[
            index,
            "-C",
            "o",
            "-s",
            "32",
            "-a",
            "ownerread|ownerwrite|authread|authwrite",
        ],
    );
    target.tool("tpm2_nvwrite", &[index, "-C", "o", "-i", path_arg(&data)]);
    let size = payload.len().to_string();
    let read = target.tool("tpm2_nvread", &[index, "-C", "o", "-s", &size]);
    assert_eq!(read.stdout, payload);
    target.tool("tpm2_nvundefine", &[index, "-C", "o"]);
}

/// An ESAPI context on `tcti`.
pub fn esapi_context(tcti: &str) -> Context {
    Context::new(TctiNameConf::from_str(tcti).unwrap()).unwrap()
}

/// TPM2_Startup(CLEAR) as a TSS client sends it. The fTPM TA starts the TPM itself when it
/// is created (fTPM.c TA_CreateEntryPoint), so the TPM answers TPM_RC_INITIALIZE, "already
/// started", which tpm2-tools and Linux's tpm2_auto_startup accept too (tpm2-tss's Esys_Startup
/// may already turn it into success). Returns whether the answer was TPM_RC_INITIALIZE.
pub fn esapi_startup_clear(context: &mut Context) -> bool {
    use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
    use tss_esapi::constants::StartupType;
    match context.startup(StartupType::Clear) {
        Ok(()) => false,
        Err(tss_esapi::Error::Tss2Error(rc))
            if rc.kind() == Some(Tss2ResponseCodeKind::Initialize) =>
        {
            true
        }
        Err(other) => panic!("TPM2_Startup: {other}"),
    }
}

/// PCR16 of the SHA-256 bank.
pub fn esapi_read_pcr16(context: &mut Context) -> Vec<u8> {
    let selection = PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &[PcrSlot::Slot16])
        .build()
        .unwrap();
    let (_, _, digests) = context.pcr_read(selection).unwrap();
    digests.value()[0].value().to_vec()
}

/// Extends PCR16 of the SHA-256 bank with 32 bytes of 0x01 under a password session.
pub fn esapi_extend_pcr16_with_ones(context: &mut Context) {
    let mut values = DigestValues::new();
    values.set(
        HashingAlgorithm::Sha256,
        Digest::try_from(vec![1u8; 32]).unwrap(),
    );
    context
        .execute_with_session(Some(AuthSession::Password), |context| {
            context.pcr_extend(PcrHandle::Pcr16, values)
        })
        .unwrap();
}

/// Reads one whole TPM response (header first, then the size it declares).
pub fn read_response(stream: &mut UnixStream) -> Vec<u8> {
    let mut response = vec![0u8; 10];
    stream.read_exact(&mut response).unwrap();
    let size = u32::from_be_bytes(response[2..6].try_into().unwrap()) as usize;
    response.resize(size, 0);
    stream.read_exact(&mut response[10..]).unwrap();
    response
}

/// `consumers` connections to the data socket at `path`, each sending `commands`
/// TPM2_GetRandom(16) in a row: every answer must be a successful 16-byte draw and a
/// connection's draws must not repeat. Prints the rate (`through` names what answered) and
/// returns how long they all took.
pub fn parallel_get_random(
    path: &Path,
    consumers: usize,
    commands: usize,
    read_timeout: Duration,
    through: &str,
) -> Duration {
    let started = Instant::now();
    let clients: Vec<_> = (0..consumers)
        .map(|_| {
            let path = path.to_path_buf();
            thread::spawn(move || {
                let mut stream = UnixStream::connect(path).unwrap();
                stream.set_read_timeout(Some(read_timeout)).unwrap();
                let get_random = tee_test_support::libtpms::command::get_random(16);
                let mut distinct = HashSet::new();
                for _ in 0..commands {
                    stream.write_all(&get_random).unwrap();
                    let response = read_response(&mut stream);
                    // TPM_ST_NO_SESSIONS, size 28, success, TPM2B of 16 bytes.
                    assert_eq!(&response[..12], &[0x80, 1, 0, 0, 0, 28, 0, 0, 0, 0, 0, 16]);
                    distinct.insert(response[12..].to_vec());
                }
                assert!(distinct.len() > commands - 2, "random bytes repeat");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let elapsed = started.elapsed();
    let total = consumers * commands;
    eprintln!(
        "{total} GetRandom from {consumers} swtpm consumers through {through} in {elapsed:?} \
         ({:?} each)",
        elapsed / total as u32
    );
    elapsed
}
