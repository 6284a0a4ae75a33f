use super::*;

use std::fs::File;
use std::io::{Read, Write};

use tee_proto::lifecycle::{InitRequest, ServerEvent};
use tee_proto::{Header, WireError};

#[test]
fn packets_keep_their_boundaries_and_carry_descriptors() {
    let (init, server) = Endpoint::pair().unwrap();
    let (pipe_read, pipe_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();

    init.send(b"first", &[pipe_write.as_fd()]).unwrap();
    init.send(b"second packet", &[]).unwrap();
    // The sender's copy goes away: the received one must be a descriptor of its own.
    drop(pipe_write);

    let mut buf = [0u8; 64];
    let (len, fds) = server.recv(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..len], b"first");
    assert_eq!(fds.len(), 1);
    let mut writer = File::from(fds.into_iter().next().unwrap());
    writer.write_all(b"through the passed pipe").unwrap();
    drop(writer);
    let mut read_back = String::new();
    File::from(pipe_read)
        .read_to_string(&mut read_back)
        .unwrap();
    assert_eq!(read_back, "through the passed pipe");

    let (len, fds) = server.recv(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..len], b"second packet");
    assert!(fds.is_empty());
}

#[test]
fn received_descriptors_are_close_on_exec() {
    let (a, b) = Endpoint::pair().unwrap();
    let (_r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    a.send(b"x", &[w.as_fd()]).unwrap();
    let mut buf = [0u8; 8];
    let (_, fds) = b.recv(&mut buf).unwrap().unwrap();
    let flags = fcntl(fds[0].as_fd(), FcntlArg::F_GETFD).unwrap();
    assert_ne!(flags & libc_fd_cloexec(), 0);
    let own = fcntl(a.as_fd(), FcntlArg::F_GETFD).unwrap();
    assert_ne!(own & libc_fd_cloexec(), 0);
}

fn libc_fd_cloexec() -> i32 {
    nix::fcntl::FdFlag::FD_CLOEXEC.bits()
}

#[test]
fn peer_close_reads_as_none() {
    let (a, b) = Endpoint::pair().unwrap();
    a.send(b"last words", &[]).unwrap();
    drop(a);
    let mut buf = [0u8; 32];
    assert!(b.recv(&mut buf).unwrap().is_some());
    assert!(b.recv(&mut buf).unwrap().is_none());
    // Sending to a closed peer is an error, not a SIGPIPE.
    assert!(matches!(b.send(b"anyone?", &[]), Err(EndpointError::Io(_))));
}

#[test]
fn oversize_packets_are_refused_both_ways() {
    let (a, b) = Endpoint::pair().unwrap();
    let big = vec![7u8; FRAME_MAX + 1];
    match a.send(&big, &[]) {
        Err(EndpointError::TooLarge { len, max }) => {
            assert_eq!((len, max), (FRAME_MAX + 1, FRAME_MAX))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // A packet larger than the receiver's buffer is reported, not silently cut.
    a.send(&[1u8; 100], &[]).unwrap();
    let mut small = [0u8; 10];
    assert!(matches!(
        b.recv(&mut small),
        Err(EndpointError::Truncated { capacity: 10 })
    ));
    // The stream stays in step: the next packet arrives whole.
    a.send(b"next", &[]).unwrap();
    let (len, _) = b.recv(&mut small).unwrap().unwrap();
    assert_eq!(&small[..len], b"next");
}

#[test]
fn too_many_descriptors_are_refused_on_send() {
    let (a, _b) = Endpoint::pair().unwrap();
    let pipes: Vec<_> = (0..=MAX_FDS_PER_PACKET)
        .map(|_| nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap())
        .collect();
    let fds: Vec<BorrowedFd<'_>> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
    assert!(matches!(
        a.send(b"x", &fds),
        Err(EndpointError::TooManyFds { count, max }) if count == MAX_FDS_PER_PACKET + 1 && max == MAX_FDS_PER_PACKET
    ));
}

#[test]
fn frames_round_trip_and_garbage_is_a_typed_error() {
    let (init, server) = Endpoint::pair().unwrap();
    let status = Frame {
        header: Header::new(0, 3, 41),
        body: InitRequest::Status,
    };
    init.send_frame(&status, &[]).unwrap();
    let (frame, fds) = server.recv_frame::<InitRequest>().unwrap().unwrap();
    assert_eq!(frame, status);
    assert!(fds.is_empty());

    let reply = Frame {
        header: frame.header.reply_to(3),
        body: ServerEvent::Error(WireError::BadRequest),
    };
    server.send_frame(&reply, &[]).unwrap();
    assert_eq!(init.recv_frame::<ServerEvent>().unwrap().unwrap().0, reply);

    init.send(&[0xFF, 0xFF, 0xFF], &[]).unwrap();
    assert!(matches!(
        server.recv_frame::<InitRequest>(),
        Err(EndpointError::Proto(_))
    ));
    drop(init);
    assert!(server.recv_frame::<InitRequest>().unwrap().is_none());
}

#[test]
fn nonblocking_endpoint_reports_would_block() {
    let (a, b) = Endpoint::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    let error = b.recv(&mut buf).unwrap_err();
    assert!(error.is_would_block(), "{error:?}");
    a.send(b"now", &[]).unwrap();
    assert_eq!(b.recv(&mut buf).unwrap().unwrap().0, 3);
    b.set_nonblocking(false).unwrap();
    let flags = fcntl(b.as_fd(), FcntlArg::F_GETFL).unwrap();
    assert!(!OFlag::from_bits_retain(flags).contains(OFlag::O_NONBLOCK));
}

#[test]
fn into_fd_and_from_fd_keep_the_connection() {
    let (a, b) = Endpoint::pair().unwrap();
    let b = Endpoint::from_fd(b.into_fd());
    a.send(b"still here", &[]).unwrap();
    let mut buf = [0u8; 16];
    let (len, _) = b.recv(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..len], b"still here");
}
