//! Real swtpm clients against the codec: `swtpm_ioctl` on the control channel and tpm2-tools
//! (through tpm2-tss's `swtpm` TCTI) on both channels. The server is a test-only socket loop
//! around [`DataConnection`] and [`ControlDecoder`] with a tiny scripted TPM behind it, so the
//! protocol is checked here without tpmd's shell or a secure world.
//!
//! The tools come from Debian (`swtpm-tools`, `tpm2-tools`); the test installs them with
//! apt-get when they are missing.
#![allow(clippy::unwrap_used)]

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tee_proto::tpm::TpmError;
use tpmd::swtpm::hosted::SwtpmFrontEnd;

mod swtpm_support;
use swtpm_support::tools::{ensure_tool, stdout, tcp_tcti, tpm2_tool, unix_tcti};
use swtpm_support::{
    serve, Backend, FailingTpmd, Gone, Scratch, ScriptedTpm, Served, CC_GET_RANDOM, CC_STARTUP,
};

/// The hosted front-end on `<dir>/swtpm.sock` and `<dir>/swtpm.sock.ctrl`, served by a test
/// event loop.
struct TestServer {
    data_path: PathBuf,
    control_path: PathBuf,
    tcp_port: u16,
    codes: Arc<Mutex<Vec<u32>>>,
    gone: Arc<Gone>,
    _served: Served,
    _dir: Scratch,
}

impl TestServer {
    fn start_scripted() -> TestServer {
        let tpm = ScriptedTpm::default();
        let (codes, gone) = (Arc::clone(&tpm.codes), Arc::clone(&tpm.gone));
        TestServer::start(tpm, codes, gone)
    }

    fn start(backend: impl Backend, codes: Arc<Mutex<Vec<u32>>>, gone: Arc<Gone>) -> TestServer {
        let dir = Scratch::new("swtpm-clients");
        let data_path = dir.0.join("swtpm.sock");
        let control_path = dir.0.join("swtpm.sock.ctrl");
        // Bound here and handed over as descriptors, as init does.
        let data = OwnedFd::from(UnixListener::bind(&data_path).unwrap());
        let control = OwnedFd::from(UnixListener::bind(&control_path).unwrap());
        let mut front_end = SwtpmFrontEnd::from_unix_fds(data, control).unwrap();
        let tcp_port = front_end.bind_tcp_loopback(0).unwrap();
        TestServer {
            data_path,
            control_path,
            tcp_port,
            codes,
            gone,
            _served: serve(front_end, backend),
            _dir: dir,
        }
    }

    fn tcti(&self) -> String {
        unix_tcti(&self.data_path)
    }

    fn tcp_tcti(&self) -> String {
        tcp_tcti(self.tcp_port)
    }

    fn codes(&self) -> Vec<u32> {
        self.codes.lock().unwrap().clone()
    }
}

fn swtpm_ioctl(control_path: &Path, args: &[&str]) -> Output {
    ensure_tool("swtpm_ioctl", &["swtpm-tools"]);
    Command::new("swtpm_ioctl")
        .arg("--unix")
        .arg(control_path)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn swtpm_ioctl_reads_the_capabilities_and_controls_the_tpm() {
    let server = TestServer::start_scripted();

    let caps = swtpm_ioctl(&server.control_path, &["-c"]);
    assert!(caps.status.success(), "{caps:?}");
    assert!(stdout(&caps).contains("0x2c0f"), "{}", stdout(&caps));

    let init = swtpm_ioctl(&server.control_path, &["-i"]);
    assert!(init.status.success(), "{init:?}");

    let established = swtpm_ioctl(&server.control_path, &["-e"]);
    assert!(established.status.success(), "{established:?}");
    assert!(stdout(&established).contains("tpmEstablished is 0"));

    assert!(swtpm_ioctl(&server.control_path, &["-l", "0"])
        .status
        .success());
    let locality_3 = swtpm_ioctl(&server.control_path, &["-l", "3"]);
    assert!(!locality_3.status.success(), "{locality_3:?}");

    let buffer = swtpm_ioctl(&server.control_path, &["-b", "0"]);
    assert!(buffer.status.success(), "{buffer:?}");
    assert_eq!(
        stdout(&buffer).matches("4096").count(),
        3,
        "{}",
        stdout(&buffer)
    );

    let config = swtpm_ioctl(&server.control_path, &["-g"]);
    assert!(config.status.success(), "{config:?}");

    let cancel = swtpm_ioctl(&server.control_path, &["-C"]);
    assert!(!cancel.status.success(), "cancel must fail: {cancel:?}");

    assert!(swtpm_ioctl(&server.control_path, &["--stop"])
        .status
        .success());
    assert!(swtpm_ioctl(&server.control_path, &["-s"]).status.success());
    // SHUTDOWN did not stop tpmd: the control channel still answers.
    assert!(swtpm_ioctl(&server.control_path, &["-c"]).status.success());

    // No data-channel traffic came from the control tool.
    assert!(server.codes().is_empty());
}

#[test]
fn tpm2_tools_run_commands_through_the_swtpm_tcti() {
    let server = TestServer::start_scripted();

    let startup = tpm2_tool(&server.tcti(), "tpm2_startup", &["-c"]);
    assert!(startup.status.success(), "{startup:?}");

    let random = tpm2_tool(&server.tcti(), "tpm2_getrandom", &["-f", "--hex", "8"]);
    assert!(random.status.success(), "{random:?}");
    assert_eq!(stdout(&random).trim(), "0102030405060708");

    assert_eq!(server.codes(), vec![CC_STARTUP, CC_GET_RANDOM]);
    // tcti-swtpm opens a data connection per command, after one sanity connect per tool;
    // each is forgotten once closed.
    server.gone.wait_for(4, Duration::from_secs(5));
    assert_eq!(server.gone.count(), 4);
}

#[test]
fn tpm2_tools_work_over_loopback_tcp_too() {
    let server = TestServer::start_scripted();
    let random = tpm2_tool(&server.tcp_tcti(), "tpm2_getrandom", &["-f", "--hex", "4"]);
    assert!(random.status.success(), "{random:?}");
    assert_eq!(stdout(&random).trim(), "01020304");
    assert_eq!(server.codes(), vec![CC_GET_RANDOM]);
}

#[test]
fn without_a_tee_tpm2_tools_get_a_tpm_failure_instead_of_hanging() {
    let codes = Arc::new(Mutex::new(Vec::new()));
    let gone = Arc::new(Gone::default());
    let server = TestServer::start(FailingTpmd::new(TpmError::TeeUnavailable), codes, gone);
    let startup = tpm2_tool(&server.tcti(), "tpm2_startup", &["-c"]);
    assert!(!startup.status.success(), "{startup:?}");
    let stderr = String::from_utf8_lossy(&startup.stderr);
    assert!(
        stderr.contains("0x101"),
        "TPM_RC_FAILURE expected: {stderr}"
    );
}
