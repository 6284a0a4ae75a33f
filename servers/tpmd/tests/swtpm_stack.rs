//! Real TPM clients against the real hosted stack through tpmd's swtpm front-end: `teectl up
//! --swtpm` (secure world with the libtpms fTPM, init, teed, tpmd), then tpm2-tools over the
//! Unix sockets init hands tpmd, tss-esapi over loopback TCP, and eight consumers in parallel.
//!
//! The stack's binaries are built first (a no-op when up to date). tpm2-tools is installed with
//! apt-get when missing; tss-esapi needs libtss2-dev and pkg-config at build time.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::{Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// What tpmd's shell reads to also serve loopback TCP.
const SWTPM_TCP_PORT_ENV: &str = "TPMD_SWTPM_TCP_PORT";
const TPM_RC_INITIALIZE: u32 = 0x100;

/// Builds the binaries `teectl up` runs, once per test binary.
fn ensure_binaries() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let release = exe
            .ancestors()
            .any(|dir| dir.file_name().is_some_and(|name| name == "release"));
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo.args(["build", "--quiet", "--bins"]);
        for package in ["teed", "tpmd", "bnxtd", "secure-world", "teesys-init"] {
            cargo.args(["-p", package]);
        }
        if release {
            cargo.arg("--release");
        }
        assert!(
            cargo.status().unwrap().success(),
            "building the stack failed"
        );
    });
}

fn ensure_tpm2_tools(tool: &str) {
    static INSTALL: Once = Once::new();
    let present = |tool: &str| {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
            .unwrap_or(false)
    };
    if present(tool) {
        return;
    }
    INSTALL.call_once(|| {
        let _ = Command::new("apt-get").arg("update").status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "tpm2-tools"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    });
    assert!(present(tool), "{tool} missing and could not be installed");
}

/// A loopback port whose successor is free too (data and control).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let data = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = data.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of loopback ports");
}

/// A stack in its own state directory, brought down and removed on drop.
struct SwtpmStack {
    dir: PathBuf,
    teectl: PathBuf,
    tcp_port: u16,
}

impl SwtpmStack {
    fn up(name: &str) -> SwtpmStack {
        ensure_binaries();
        let dir = std::env::temp_dir().join(format!("tpmd-swtpm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let teectl = tee_rt::spawn::sibling_binary("teectl").unwrap();
        let tcp_port = free_port_pair();
        let output = Command::new(&teectl)
            .arg("--state-dir")
            .arg(&dir)
            .args(["up", "--swtpm", "--timeout-s", "60"])
            .env(SWTPM_TCP_PORT_ENV, tcp_port.to_string())
            .output()
            .unwrap();
        let stack = SwtpmStack {
            dir,
            teectl,
            tcp_port,
        };
        assert!(output.status.success(), "teectl up: {output:?}");
        stack
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join("swtpm.sock")
    }

    fn tcti(&self) -> String {
        format!("swtpm:path={}", self.data_path().display())
    }

    fn tool(&self, tool: &str, args: &[&str]) -> Output {
        ensure_tpm2_tools(tool);
        let output = Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap();
        assert!(output.status.success(), "{tool} {args:?}: {output:?}");
        output
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SwtpmStack {
    fn drop(&mut self) {
        let _ = Command::new(&self.teectl)
            .arg("--state-dir")
            .arg(&self.dir)
            .arg("down")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn tpm_command(code: u32, parameters: &[u8]) -> Vec<u8> {
    let mut command = vec![0x80, 0x01];
    command.extend_from_slice(&(10 + parameters.len() as u32).to_be_bytes());
    command.extend_from_slice(&code.to_be_bytes());
    command.extend_from_slice(parameters);
    command
}

fn read_response(stream: &mut UnixStream) -> Vec<u8> {
    let mut response = vec![0u8; 10];
    stream.read_exact(&mut response).unwrap();
    let size = u32::from_be_bytes(response[2..6].try_into().unwrap()) as usize;
    response.resize(size, 0);
    stream.read_exact(&mut response[10..]).unwrap();
    response
}

fn response_code(response: &[u8]) -> u32 {
    u32::from_be_bytes(response[6..10].try_into().unwrap())
}

#[test]
fn tpm2_tools_through_the_stack() {
    let stack = SwtpmStack::up("tools");
    stack.tool("tpm2_startup", &["-c"]);

    let random = stdout(&stack.tool("tpm2_getrandom", &["--hex", "16"]));
    assert_eq!(random.trim().len(), 32, "{random}");

    let digest = "01".repeat(32);
    stack.tool("tpm2_pcrextend", &[&format!("16:sha256={digest}")]);
    let pcr = stdout(&stack.tool("tpm2_pcrread", &["sha256:16"]));
    // PCR16 = SHA-256(32 zero bytes || 32 bytes of 0x01).
    assert!(
        pcr.contains("0x5C85955F709283ECCE2B74F1B1552918819F390911816E7BB466805A38AB87F3"),
        "{pcr}"
    );

    let primary = stack.file("primary.ctx");
    stack.tool(
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
    stack.tool("tpm2_flushcontext", &["-t"]);

    let data = stack.file("nv.bin");
    std::fs::write(&data, b"hello through teesys").unwrap();
    stack.tool(
        "tpm2_nvdefine",
        &[
            "0x1500017",
            "-C",
            "o",
            "-s",
            "32",
            "-a",
            "ownerread|ownerwrite|authread|authwrite",
        ],
    );
    stack.tool(
        "tpm2_nvwrite",
        &["0x1500017", "-C", "o", "-i", path_arg(&data)],
    );
    let read = stack.tool("tpm2_nvread", &["0x1500017", "-C", "o", "-s", "20"]);
    assert_eq!(read.stdout, b"hello through teesys");
    stack.tool("tpm2_nvundefine", &["0x1500017", "-C", "o"]);
}

#[test]
fn tss_esapi_over_loopback_tcp_through_the_stack() {
    use tss_esapi::constants::StartupType;
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::interface_types::algorithm::HashingAlgorithm;
    use tss_esapi::interface_types::session_handles::AuthSession;
    use tss_esapi::structures::{Digest, DigestValues, PcrSelectionListBuilder, PcrSlot};
    use tss_esapi::tcti_ldr::TctiNameConf;
    use tss_esapi::Context;

    let stack = SwtpmStack::up("esapi");
    let tcti = format!("swtpm:host=127.0.0.1,port={}", stack.tcp_port);
    let mut context = Context::new(TctiNameConf::from_str(&tcti).unwrap()).unwrap();
    context.startup(StartupType::Clear).unwrap();

    assert_eq!(context.get_random(16).unwrap().len(), 16);

    let selection = PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &[PcrSlot::Slot16])
        .build()
        .unwrap();
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
    let (_, _, digests) = context.pcr_read(selection).unwrap();
    let expected = [
        0x5c, 0x85, 0x95, 0x5f, 0x70, 0x92, 0x83, 0xec, 0xce, 0x2b, 0x74, 0xf1, 0xb1, 0x55, 0x29,
        0x18, 0x81, 0x9f, 0x39, 0x09, 0x11, 0x81, 0x6e, 0x7b, 0xb4, 0x66, 0x80, 0x5a, 0x38, 0xab,
        0x87, 0xf3,
    ];
    assert_eq!(digests.value()[0].value(), &expected);
}

#[test]
fn eight_consumers_times_a_thousand_get_random_through_the_stack() {
    const CONSUMERS: usize = 8;
    const COMMANDS: usize = 1000;
    let stack = SwtpmStack::up("parallel");
    {
        let mut stream = UnixStream::connect(stack.data_path()).unwrap();
        stream.write_all(&tpm_command(0x144, &[0, 0])).unwrap();
        let rc = response_code(&read_response(&mut stream));
        assert!(rc == 0 || rc == TPM_RC_INITIALIZE, "startup rc {rc:#x}");
    }
    let started = Instant::now();
    let clients: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let path = stack.data_path();
            thread::spawn(move || {
                let mut stream = UnixStream::connect(path).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let get_random = tpm_command(0x17b, &[0, 16]);
                let mut distinct = std::collections::HashSet::new();
                for _ in 0..COMMANDS {
                    stream.write_all(&get_random).unwrap();
                    let response = read_response(&mut stream);
                    assert_eq!(&response[..12], &[0x80, 1, 0, 0, 0, 28, 0, 0, 0, 0, 0, 16]);
                    distinct.insert(response[12..].to_vec());
                }
                assert!(distinct.len() > COMMANDS - 2, "random bytes repeat");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} GetRandom from {CONSUMERS} swtpm consumers through the stack in {elapsed:?} ({:?} each)",
        CONSUMERS * COMMANDS,
        elapsed / (CONSUMERS * COMMANDS) as u32
    );
    assert!(elapsed < Duration::from_secs(120), "took {elapsed:?}");
}
