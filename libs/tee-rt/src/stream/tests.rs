use super::*;

use crate::framing::{read_frame, write_frame};

fn pair(max_frame: usize) -> (FramedStream, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    (FramedStream::new(ours, max_frame).unwrap(), theirs)
}

#[test]
fn frames_arriving_in_pieces_come_out_whole_and_in_order() {
    let (mut conn, mut peer) = pair(64);
    let mut wire = Vec::new();
    write_frame(&mut wire, b"load").unwrap();
    write_frame(&mut wire, b"").unwrap();
    write_frame(&mut wire, b"copy coredump").unwrap();

    // A header cut in half yields nothing yet.
    peer.write_all(&wire[..2]).unwrap();
    assert_eq!(conn.fill().unwrap(), 2);
    assert_eq!(conn.next_frame().unwrap(), None);
    peer.write_all(&wire[2..9]).unwrap();
    conn.fill().unwrap();
    assert_eq!(conn.next_frame().unwrap().unwrap(), b"load");
    assert_eq!(conn.next_frame().unwrap(), None);
    peer.write_all(&wire[9..]).unwrap();
    conn.fill().unwrap();
    assert_eq!(conn.next_frame().unwrap().unwrap(), b"");
    assert_eq!(conn.next_frame().unwrap().unwrap(), b"copy coredump");
    assert_eq!(conn.next_frame().unwrap(), None);
    assert_eq!(conn.partial_bytes(), 0);

    // Nothing more to read does not block.
    assert_eq!(conn.fill().unwrap(), 0);
    assert!(!conn.is_peer_closed());
    drop(peer);
    conn.fill().unwrap();
    assert!(conn.is_peer_closed());
}

#[test]
fn an_overlong_header_is_refused_before_its_payload() {
    let (mut conn, mut peer) = pair(16);
    peer.write_all(&17u32.to_le_bytes()).unwrap();
    conn.fill().unwrap();
    assert!(matches!(
        conn.next_frame(),
        Err(StreamError::TooLong { len: 17, max: 16 })
    ));
}

#[test]
fn answers_reach_the_peer_as_frames() {
    let (mut conn, mut peer) = pair(64);
    conn.queue(b"loaded").unwrap();
    conn.queue(b"coredump len").unwrap();
    assert!(conn.wants_write());
    conn.flush().unwrap();
    assert!(!conn.wants_write());
    let mut buf = Vec::new();
    read_frame(&mut peer, &mut buf, 64).unwrap();
    assert_eq!(buf, b"loaded");
    read_frame(&mut peer, &mut buf, 64).unwrap();
    assert_eq!(buf, b"coredump len");
    assert!(matches!(
        conn.queue(&[0u8; 65]),
        Err(StreamError::TooLong { len: 65, max: 64 })
    ));
}

#[test]
fn a_consumer_that_never_reads_hits_the_backlog_limit_without_blocking() {
    let (conn, mut peer) = pair(4096);
    let mut conn = conn.with_backlog_limit(2 << 20);
    let payload = [0xA5u8; 4096];
    let mut queued = 0usize;
    let error = loop {
        match conn.queue(&payload) {
            Ok(()) => queued += 1,
            Err(error) => break error,
        }
        // Flushing into a full socket returns instead of waiting.
        conn.flush().unwrap();
    };
    assert!(matches!(error, StreamError::Backlog { limit, .. } if limit == 2 << 20));
    assert!(conn.wants_write());

    // Once the consumer reads, everything queued arrives intact.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut frames = 0usize;
        while read_frame(&mut peer, &mut buf, 4096).is_ok() {
            assert_eq!(buf, [0xA5u8; 4096]);
            frames += 1;
        }
        frames
    });
    while conn.wants_write() {
        conn.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(conn);
    assert_eq!(reader.join().unwrap(), queued);
}
