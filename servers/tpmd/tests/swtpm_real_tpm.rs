//! Real TPM clients through the hosted swtpm front-end to a real TPM 2.0 (libtpms in this
//! process, where tpmd's core and the secure world's fTPM TA would be): tpm2-tools over the
//! swtpm TCTI, tss-esapi, and eight raw consumers in parallel.
//!
//! tpm2-tools is installed with apt-get when missing; tss-esapi needs libtss2-dev and
//! pkg-config at build time.
#![allow(clippy::unwrap_used)]

mod swtpm_support;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use tee_proto::tpm::{TpmError, TpmRequest, TpmResponse};
use tee_proto::Frame;
use tee_test_support::libtpms::command;
use tpmd::swtpm::hosted::SwtpmFrontEnd;
use tpmd::ConsumerId;

use swtpm_support::tools::{
    create_primary_and_flush, esapi_context, esapi_extend_pcr16_with_ones, esapi_read_pcr16,
    extend_pcr16_with_ones, nv_round_trip, parallel_get_random, stdout, tcp_tcti, unix_tcti,
    Tpm2Target,
};
use swtpm_support::{serve, Backend, Scratch, Served};

/// libtpms answering every command at once, as the fTPM TA would through tpmd.
struct RealTpm {
    tpm: tee_test_support::libtpms::Tpm,
    ready: Vec<(ConsumerId, Frame<TpmResponse>)>,
}

impl RealTpm {
    fn started() -> RealTpm {
        let mut tpm = tee_test_support::libtpms::Tpm::manufacture().unwrap();
        let response = tpm.process(&command::startup(0)).unwrap();
        assert_eq!(command::response_code(&response), Some(0));
        RealTpm {
            tpm,
            ready: Vec::new(),
        }
    }

    fn fresh() -> RealTpm {
        RealTpm {
            tpm: tee_test_support::libtpms::Tpm::manufacture().unwrap(),
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

    fn tcp_tcti(&self) -> String {
        tcp_tcti(self.tcp_port)
    }
}

impl Tpm2Target for Stack {
    fn tcti(&self) -> String {
        unix_tcti(&self.data_path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }
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
    extend_pcr16_with_ones(&stack);
    create_primary_and_flush(&stack);
    nv_round_trip(&stack, "0x1500016", b"hello from tpmd");
}

#[test]
fn tss_esapi_gets_random_and_extends_and_reads_a_pcr() {
    use tss_esapi::interface_types::algorithm::HashingAlgorithm;
    use tss_esapi::interface_types::resource_handles::Hierarchy;
    use tss_esapi::structures::MaxBuffer;

    let stack = Stack::start(RealTpm::started());
    let mut context = esapi_context(&stack.tcp_tcti());

    let random = context.get_random(16).unwrap();
    assert_eq!(random.len(), 16);

    assert_eq!(esapi_read_pcr16(&mut context), [0u8; 32]);
    esapi_extend_pcr16_with_ones(&mut context);
    let after = esapi_read_pcr16(&mut context);
    let mut extend_input = vec![0u8; 32];
    extend_input.extend_from_slice(&[1u8; 32]);
    let expected = context
        .hash(
            MaxBuffer::try_from(extend_input).unwrap(),
            HashingAlgorithm::Sha256,
            Hierarchy::Null,
        )
        .unwrap()
        .0;
    assert_eq!(after, expected.value());
}

#[test]
fn eight_consumers_times_a_thousand_get_random_all_answered() {
    const CONSUMERS: usize = 8;
    const COMMANDS: usize = 1000;
    let stack = Stack::start(RealTpm::started());
    let elapsed = parallel_get_random(
        &stack.data_path,
        CONSUMERS,
        COMMANDS,
        Duration::from_secs(10),
        "libtpms",
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
