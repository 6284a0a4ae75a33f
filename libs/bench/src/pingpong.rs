//! The floor of every hop: a raw ping-pong of the same size with an echo process, over the
//! same kind of socket the hop uses (a Unix stream for consumers and the SMC conduit, a
//! seqpacket endpoint between servers, loopback TCP for the swtpm TCP channel).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tee_rt::endpoint::Endpoint;
use tee_rt::spawn::{spawn_with_endpoint, LIFECYCLE_FD_ENV};
use tee_test_support::hosted::KillOnDrop;

/// How long an echo process may take to connect.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// The socket a ping-pong runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Tcp,
    Seqpacket,
}

enum Conn {
    Stream(UnixStream),
    Tcp(TcpStream),
    Packet(Endpoint),
}

/// A connected echo process.
pub struct Echo {
    conn: Conn,
    size: usize,
    buf: Vec<u8>,
    _child: KillOnDrop,
}

fn echo_command(args: &[String]) -> io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("echo").args(args);
    Ok(command)
}

/// Accepts one connection within [`CONNECT_WITHIN`] (the listener is non-blocking).
fn accept_within<T>(mut accept: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let start = Instant::now();
    loop {
        match accept() {
            Ok(conn) => return Ok(conn),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < CONNECT_WITHIN => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Echo {
    /// Starts an echo process for messages of `size` bytes over `kind`; `scratch` holds the
    /// Unix socket's path.
    pub fn start(kind: Kind, size: usize, scratch: &Path) -> io::Result<Echo> {
        let size_arg = size.to_string();
        let (conn, child) = match kind {
            Kind::Stream => {
                let path = scratch.join("echo.sock");
                let _ = std::fs::remove_file(&path);
                let listener = UnixListener::bind(&path)?;
                listener.set_nonblocking(true)?;
                let child = echo_command(&["stream".into(), path.display().to_string(), size_arg])?
                    .spawn()?;
                let child = KillOnDrop(child);
                let (stream, _) = accept_within(|| listener.accept())?;
                stream.set_nonblocking(false)?;
                (Conn::Stream(stream), child)
            }
            Kind::Tcp => {
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                listener.set_nonblocking(true)?;
                let port = listener.local_addr()?.port();
                let child =
                    KillOnDrop(echo_command(&["tcp".into(), port.to_string(), size_arg])?.spawn()?);
                let (stream, _) = accept_within(|| listener.accept())?;
                stream.set_nonblocking(false)?;
                stream.set_nodelay(true)?;
                (Conn::Tcp(stream), child)
            }
            Kind::Seqpacket => {
                let (ours, theirs) = Endpoint::pair()?;
                let command = echo_command(&["seqpacket".into(), size_arg])?;
                let child = KillOnDrop(spawn_with_endpoint(command, LIFECYCLE_FD_ENV, theirs)?);
                (Conn::Packet(ours), child)
            }
        };
        Ok(Echo {
            conn,
            size,
            buf: vec![0u8; size.max(1)],
            _child: child,
        })
    }

    /// One message out and the same bytes back.
    pub fn round_trip(&mut self, message: &[u8]) -> io::Result<()> {
        debug_assert_eq!(message.len(), self.size);
        match &mut self.conn {
            Conn::Stream(stream) => {
                stream.write_all(message)?;
                stream.read_exact(&mut self.buf)
            }
            Conn::Tcp(stream) => {
                stream.write_all(message)?;
                stream.read_exact(&mut self.buf)
            }
            Conn::Packet(endpoint) => {
                endpoint.send(message, &[]).map_err(io::Error::other)?;
                match endpoint.recv(&mut self.buf).map_err(io::Error::other)? {
                    Some(_) => Ok(()),
                    None => Err(io::ErrorKind::UnexpectedEof.into()),
                }
            }
        }
    }
}

/// The echo process's side: `echo stream PATH SIZE`, `echo tcp PORT SIZE`, `echo seqpacket
/// SIZE` (the endpoint inherited as a lifecycle endpoint). Returns at the peer's close.
pub fn serve(args: &[String]) -> io::Result<()> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("echo {args:?}"));
    let size = |arg: Option<&String>| -> io::Result<usize> {
        arg.and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    match args.first().map(String::as_str) {
        Some("stream") => {
            let path = args.get(1).ok_or_else(bad)?;
            echo_stream(UnixStream::connect(path)?, size(args.get(2))?)
        }
        Some("tcp") => {
            let port: u16 = args.get(1).and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            stream.set_nodelay(true)?;
            echo_stream(stream, size(args.get(2))?)
        }
        Some("seqpacket") => {
            let endpoint = tee_rt::spawn::lifecycle_from_env().map_err(io::Error::other)?;
            let mut buf = vec![0u8; size(args.get(1))?.max(1)];
            while let Some((len, _)) = endpoint.recv(&mut buf).map_err(io::Error::other)? {
                endpoint.send(&buf[..len], &[]).map_err(io::Error::other)?;
            }
            Ok(())
        }
        _ => Err(bad()),
    }
}

fn echo_stream(mut stream: impl Read + Write, size: usize) -> io::Result<()> {
    let mut buf = vec![0u8; size.max(1)];
    loop {
        match stream.read_exact(&mut buf) {
            Ok(()) => stream.write_all(&buf)?,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
