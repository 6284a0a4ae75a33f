//! TPM2_GetRandom(8) through the swtpm socket protocol with a raw client (no TSS in the loop),
//! against tpmd's front-end or Debian's `swtpm socket`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tee_test_support::hosted::KillOnDrop;

/// TPM2_GetRandom(bytesRequested = 8): TPM_ST_NO_SESSIONS, 12 bytes, TPM_CC_GetRandom.
pub const GET_RANDOM_8: [u8; 12] = [
    0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x7b, 0x00, 0x08,
];

/// A raw swtpm data-channel client: the command out, the response read by its header's size.
pub struct RawTpm<S> {
    stream: S,
    buf: Vec<u8>,
}

impl RawTpm<UnixStream> {
    pub fn unix(path: &Path) -> io::Result<RawTpm<UnixStream>> {
        Ok(RawTpm::new(UnixStream::connect(path)?))
    }
}

impl RawTpm<TcpStream> {
    pub fn tcp(port: u16) -> io::Result<RawTpm<TcpStream>> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        // As every swtpm TCTI does; without it each command waits for a delayed ACK.
        stream.set_nodelay(true)?;
        Ok(RawTpm::new(stream))
    }
}

impl<S: Read + Write> RawTpm<S> {
    fn new(stream: S) -> RawTpm<S> {
        RawTpm {
            stream,
            buf: vec![0u8; 4096],
        }
    }

    /// Sends `command`; the response must carry TPM_RC_SUCCESS.
    pub fn call(&mut self, command: &[u8]) -> io::Result<usize> {
        self.stream.write_all(command)?;
        self.stream.read_exact(&mut self.buf[..10])?;
        let size = u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if !(10..=self.buf.len()).contains(&size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response size {size}"),
            ));
        }
        self.stream.read_exact(&mut self.buf[10..size])?;
        let rc = u32::from_be_bytes([self.buf[6], self.buf[7], self.buf[8], self.buf[9]]);
        if rc != 0 {
            return Err(io::Error::other(format!("TPM rc {rc:#x}")));
        }
        Ok(size)
    }
}

/// Debian's swtpm serving a Unix socket and loopback TCP, started TPM (startup-clear).
pub struct Swtpm {
    pub socket: PathBuf,
    pub tcp_port: u16,
    _unix: KillOnDrop,
    _tcp: KillOnDrop,
}

/// Whether `swtpm` is installed.
pub fn swtpm_installed() -> bool {
    Command::new("swtpm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn spawn_swtpm(state: &Path, server: &str, ctrl: &str) -> io::Result<KillOnDrop> {
    std::fs::create_dir_all(state)?;
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .args(["--server", server, "--ctrl", ctrl])
        .args(["--flags", "not-need-init,startup-clear"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(KillOnDrop(child))
}

/// Retries `connect` until it works or 10 s pass.
fn ready<T>(mut connect: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let start = Instant::now();
    loop {
        match connect() {
            Ok(value) => return Ok(value),
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Swtpm {
    /// Two swtpm processes (one per transport, each with its own state), both answering.
    pub fn start(scratch: &Path, tcp_port: u16) -> io::Result<Swtpm> {
        let socket = scratch.join("swtpm.sock");
        let unix = spawn_swtpm(
            &scratch.join("swtpm-unix"),
            &format!("type=unixio,path={}", socket.display()),
            &format!("type=unixio,path={}.ctrl", socket.display()),
        )?;
        let tcp = spawn_swtpm(
            &scratch.join("swtpm-tcp"),
            &format!("type=tcp,port={tcp_port},bindaddr=127.0.0.1"),
            &format!("type=tcp,port={},bindaddr=127.0.0.1", tcp_port + 1),
        )?;
        ready(|| RawTpm::unix(&socket)?.call(&GET_RANDOM_8))?;
        ready(|| RawTpm::tcp(tcp_port)?.call(&GET_RANDOM_8))?;
        Ok(Swtpm {
            socket,
            tcp_port,
            _unix: unix,
            _tcp: tcp,
        })
    }
}

/// A loopback port whose successor is free too (for a data + control pair).
pub fn free_port_pair() -> io::Result<u16> {
    for _ in 0..50 {
        let data = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = data.local_addr()?.port();
        if port < u16::MAX && std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free loopback port pair",
    ))
}
