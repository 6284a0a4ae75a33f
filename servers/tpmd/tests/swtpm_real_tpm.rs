//! Real TPM clients through the hosted swtpm front-end to a real TPM 2.0 (libtpms in this
//! process, where tpmd's core and the secure world's fTPM TA would be): tpm2-tools over the
//! swtpm TCTI, tss-esapi, and eight raw consumers in parallel.
//!
//! tpm2-tools is installed with apt-get when missing; tss-esapi needs libtss2-dev and
//! pkg-config at build time.
#![allow(clippy::unwrap_used)]

mod swtpm_support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use libtpms::command;
use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse};
use tee_proto::Frame;
use tpmd::swtpm::hosted::SwtpmFrontEnd;
use tpmd::ConsumerId;

use swtpm_support::{serve, Backend, Scratch, Served};

/// libtpms answering every command at once, as the fTPM TA would through tpmd.
struct RealTpm {
    tpm: libtpms::Tpm,
    ready: Vec<(ConsumerId, Frame<TpmResponse>)>,
}

impl RealTpm {
    fn started() -> RealTpm {
        let mut tpm = libtpms::Tpm::manufacture().unwrap();
        let response = tpm.process(&command::startup(0)).unwrap();
        assert_eq!(command::response_code(&response), Some(0));
        RealTpm {
            tpm,
            ready: Vec::new(),
        }
    }

    fn fresh() -> RealTpm {
        RealTpm {
            tpm: libtpms::Tpm::manufacture().unwrap(),
            ready: Vec::new(),
        }
    }
}

impl Backend for RealTpm {
    fn submit(&mut self, consumer: ConsumerId, frame: Frame<TpmRequest>) {
        let TpmRequest::Command { bytes } = frame.body;
        let body = match self.tpm.process(&bytes) {
            Ok(response) => TpmResponse::Response {
                bytes: heapless::Vec::from_slice(&response).unwrap(),
            },
            Err(_) => TpmResponse::Error(TpmError::BadResponse { declared: 0 }),
        };
        let header = frame.header.reply_to(0);
        self.ready.push((consumer, Frame { header, body }));
    }

    fn answers(&mut self) -> Vec<(ConsumerId, Frame<TpmResponse>)> {
        std::mem::take(&mut self.ready)
    }

    fn consumer_gone(&mut self, _consumer: ConsumerId) {}
}

struct Stack {
    dir: Scratch,
    data_path: PathBuf,
    tcp_port: u16,
    _served: Served,
}

impl Stack {
    fn start(tpm: RealTpm) -> Stack {
        let dir = Scratch::new("swtpm-real");
        let data_path = dir.0.join("swtpm.sock");
        let data = OwnedFd::from(UnixListener::bind(&data_path).unwrap());
        let control = OwnedFd::from(UnixListener::bind(dir.0.join("swtpm.sock.ctrl")).unwrap());
        let mut front_end = SwtpmFrontEnd::from_unix_fds(data, control).unwrap();
        let tcp_port = front_end.bind_tcp_loopback(0).unwrap();
        Stack {
            tcp_port,
            _served: serve(front_end, tpm),
            data_path,
            dir,
        }
    }

    fn tcti(&self) -> String {
        format!("swtpm:path={}", self.data_path.display())
    }

    /// tss-esapi 7's swtpm configuration knows only host and port, so it goes over TCP.
    fn tcp_tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.tcp_port)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Runs a tpm2-tools command against this stack and requires success.
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

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn tpm2_tools_startup_random_pcrs_keys_and_nv() {
    let stack = Stack::start(RealTpm::fresh());
    stack.tool("tpm2_startup", &["-c"]);

    let random = stack.tool("tpm2_getrandom", &["--hex", "16"]);
    let hex = stdout(&random);
    assert_eq!(hex.trim().len(), 32, "{hex}");
    assert!(hex.trim().chars().all(|c| c.is_ascii_hexdigit()));

    let before = stdout(&stack.tool("tpm2_pcrread", &["sha256:16"]));
    assert!(before.contains("0x0000000000000000000000000000000000000000000000000000000000000000"));
    let digest = "01".repeat(32);
    stack.tool("tpm2_pcrextend", &[&format!("16:sha256={digest}")]);
    let after = stdout(&stack.tool("tpm2_pcrread", &["sha256:16"]));
    // PCR16 = SHA-256(32 zero bytes || 32 bytes of 0x01).
    assert!(
        after.contains("0x5C85955F709283ECCE2B74F1B1552918819F390911816E7BB466805A38AB87F3"),
        "{after}"
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
    std::fs::write(&data, b"hello from tpmd").unwrap();
    stack.tool(
        "tpm2_nvdefine",
        &[
            "0x1500016",
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
        &["0x1500016", "-C", "o", "-i", path_arg(&data)],
    );
    let read = stack.tool("tpm2_nvread", &["0x1500016", "-C", "o", "-s", "15"]);
    assert_eq!(read.stdout, b"hello from tpmd");
    stack.tool("tpm2_nvundefine", &["0x1500016", "-C", "o"]);
}

#[test]
fn tss_esapi_gets_random_and_extends_and_reads_a_pcr() {
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::interface_types::algorithm::HashingAlgorithm;
    use tss_esapi::interface_types::session_handles::AuthSession;
    use tss_esapi::structures::{Digest, DigestValues, PcrSelectionListBuilder, PcrSlot};
    use tss_esapi::tcti_ldr::TctiNameConf;
    use tss_esapi::Context;

    let stack = Stack::start(RealTpm::started());
    let mut context = Context::new(TctiNameConf::from_str(&stack.tcp_tcti()).unwrap()).unwrap();

    let random = context.get_random(16).unwrap();
    assert_eq!(random.len(), 16);

    let selection = PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &[PcrSlot::Slot16])
        .build()
        .unwrap();
    let (_, _, before) = context.pcr_read(selection.clone()).unwrap();
    assert_eq!(before.value()[0].value(), &[0u8; 32]);

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
    let (_, _, after) = context.pcr_read(selection).unwrap();
    let mut extend_input = vec![0u8; 32];
    extend_input.extend_from_slice(&[1u8; 32]);
    let expected = context
        .hash(
            tss_esapi::structures::MaxBuffer::try_from(extend_input).unwrap(),
            HashingAlgorithm::Sha256,
            tss_esapi::interface_types::resource_handles::Hierarchy::Null,
        )
        .unwrap()
        .0;
    assert_eq!(after.value()[0].value(), expected.value());
}

#[test]
fn eight_consumers_times_a_thousand_get_random_all_answered() {
    const CONSUMERS: usize = 8;
    const COMMANDS: usize = 1000;
    let stack = Stack::start(RealTpm::started());
    let started = Instant::now();
    let clients: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let path = stack.data_path.clone();
            thread::spawn(move || {
                let mut stream = UnixStream::connect(path).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let get_random = command::get_random(16);
                let mut seen = std::collections::HashSet::new();
                for _ in 0..COMMANDS {
                    stream.write_all(&get_random).unwrap();
                    let mut response = [0u8; 28];
                    stream.read_exact(&mut response).unwrap();
                    // TPM_ST_NO_SESSIONS, size 28, success, TPM2B of 16 bytes.
                    assert_eq!(&response[..12], &[0x80, 1, 0, 0, 0, 28, 0, 0, 0, 0, 0, 16]);
                    seen.insert(response[12..].to_vec());
                }
                assert!(seen.len() > COMMANDS - 2, "random bytes repeat");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} GetRandom from {CONSUMERS} swtpm consumers through libtpms in {elapsed:?} ({:?} each)",
        CONSUMERS * COMMANDS,
        elapsed / (CONSUMERS * COMMANDS) as u32
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
