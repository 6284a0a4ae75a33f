//! Real TPM clients against the real hosted stack through tpmd's swtpm front-end: `teectl up
//! --swtpm` (secure world with the libtpms fTPM, init, teed, tpmd), then tpm2-tools over the
//! Unix sockets init hands tpmd, tss-esapi over loopback TCP, and eight consumers in parallel.
//!
//! The stack's binaries are built first (a no-op when up to date). tpm2-tools is installed with
//! apt-get when missing; tss-esapi needs libtss2-dev and pkg-config at build time.
#![allow(clippy::unwrap_used)]

mod swtpm_support;

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use swtpm_support::tools::{
    create_primary_and_flush, esapi_context, esapi_extend_pcr16_with_ones, esapi_read_pcr16,
    esapi_startup_clear, extend_pcr16_with_ones, nv_round_trip, parallel_get_random, read_response,
    stdout, tcp_tcti, unix_tcti, Tpm2Target, PCR16_EXTENDED_WITH_ONES_HEX,
};
use tee_test_support::libtpms::command;

/// What tpmd's shell reads to also serve loopback TCP.
const SWTPM_TCP_PORT_ENV: &str = "TPMD_SWTPM_TCP_PORT";
const TPM_RC_INITIALIZE: u32 = 0x100;

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
        tee_test_support::hosted::ensure_stack_binaries();
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

    /// Runs `teectl <args>` against this stack and insists on success.
    fn teectl(&self, args: &[&str]) {
        let output = Command::new(&self.teectl)
            .arg("--state-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "teectl {args:?}: {output:?}");
    }
}

impl Tpm2Target for SwtpmStack {
    fn tcti(&self) -> String {
        unix_tcti(&self.data_path())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SwtpmStack {
    fn drop(&mut self) {
        swtpm_support::stack_down(&self.teectl, &self.dir);
    }
}

#[test]
fn tpm2_tools_through_the_stack() {
    let stack = SwtpmStack::up("tools");
    stack.tool("tpm2_startup", &["-c"]);

    let random = stdout(&stack.tool("tpm2_getrandom", &["--hex", "16"]));
    assert_eq!(random.trim().len(), 32, "{random}");

    extend_pcr16_with_ones(&stack);
    create_primary_and_flush(&stack);
    nv_round_trip(&stack, "0x1500017", b"hello through teesys");
}

/// The fTPM TA is keep-alive (ms-tpm-20-ref fTPM.c: SINGLE_INSTANCE | INSTANCE_KEEP_ALIVE,
/// TPM started once by TA_CreateEntryPoint): through tpm2-tools, a PCR extended before a real
/// orderly kexec of the hosted stack is still extended after it, tpm2_startup still succeeds
/// (it accepts TPM_RC_INITIALIZE), and a machine reset clears the PCR.
#[test]
fn tpm2_tools_see_a_pcr_survive_a_kexec_and_not_a_machine_reset() {
    let stack = SwtpmStack::up("keepalive");
    stack.tool("tpm2_startup", &["-c"]);
    extend_pcr16_with_ones(&stack);

    stack.teectl(&["kexec"]);
    stack.tool("tpm2_startup", &["-c"]);
    let after_kexec = stdout(&stack.tool("tpm2_pcrread", &["sha256:16"]));
    assert!(
        after_kexec.contains(PCR16_EXTENDED_WITH_ONES_HEX),
        "kept across kexec: {after_kexec}"
    );

    stack.teectl(&["reboot"]);
    stack.tool("tpm2_startup", &["-c"]);
    let after_reset = stdout(&stack.tool("tpm2_pcrread", &["sha256:16"]));
    assert!(
        !after_reset.contains(PCR16_EXTENDED_WITH_ONES_HEX) && after_reset.contains("0x0000000000"),
        "cleared by the machine reset: {after_reset}"
    );
}

#[test]
fn tss_esapi_over_loopback_tcp_through_the_stack() {
    let stack = SwtpmStack::up("esapi");
    let mut context = esapi_context(&tcp_tcti(stack.tcp_port));
    // The fTPM TA started the TPM itself: commands run before any Startup of ours.
    assert_eq!(context.get_random(16).unwrap().len(), 16);
    esapi_startup_clear(&mut context);

    esapi_extend_pcr16_with_ones(&mut context);
    let expected = [
        0x5c, 0x85, 0x95, 0x5f, 0x70, 0x92, 0x83, 0xec, 0xce, 0x2b, 0x74, 0xf1, 0xb1, 0x55, 0x29,
        0x18, 0x81, 0x9f, 0x39, 0x09, 0x11, 0x81, 0x6e, 0x7b, 0xb4, 0x66, 0x80, 0x5a, 0x38, 0xab,
        0x87, 0xf3,
    ];
    assert_eq!(esapi_read_pcr16(&mut context), expected);
}

#[test]
fn eight_consumers_times_a_thousand_get_random_through_the_stack() {
    const CONSUMERS: usize = 8;
    const COMMANDS: usize = 1000;
    let stack = SwtpmStack::up("parallel");
    {
        let mut stream = UnixStream::connect(stack.data_path()).unwrap();
        stream.write_all(&command::startup(0)).unwrap();
        let rc = command::response_code(&read_response(&mut stream)).unwrap();
        assert!(rc == 0 || rc == TPM_RC_INITIALIZE, "startup rc {rc:#x}");
    }
    let elapsed = parallel_get_random(
        &stack.data_path(),
        CONSUMERS,
        COMMANDS,
        Duration::from_secs(30),
        "the stack",
    );
    assert!(elapsed < Duration::from_secs(120), "took {elapsed:?}");
}
