use super::*;
use std::io::Cursor;
use std::os::unix::net::UnixListener;
use std::thread;

const SAMPLE: [u64; 8] = [
    0x3200_0004,
    0x1,
    0x4000_1000,
    u64::MAX,
    0x0102_0304_0506_0708,
    0,
    42,
    0xdead_beef,
];

#[test]
fn frame_is_eight_little_endian_words() {
    let frame = encode_regs(&SAMPLE);
    assert_eq!(frame.len(), 64);
    assert_eq!(&frame[0..8], &[0x04, 0x00, 0x00, 0x32, 0, 0, 0, 0]);
    assert_eq!(&frame[32..40], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(&frame[24..32], &[0xff; 8]);
    assert_eq!(decode_regs(&frame), SAMPLE);
}

#[test]
fn read_regs_reports_clean_end_and_short_frames() {
    assert!(read_regs(&mut Cursor::new(Vec::<u8>::new()))
        .unwrap()
        .is_none());

    let short = encode_regs(&SAMPLE)[..20].to_vec();
    match read_regs(&mut Cursor::new(short)) {
        Err(ConduitError::ShortFrame { received }) => assert_eq!(received, 20),
        other => panic!("expected a short frame, got {other:?}"),
    }
}

#[test]
fn call_round_trips_through_serve_conduit() {
    let (client_end, server_end) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || {
        serve_conduit(server_end, |mut regs| {
            // Echo with a recognisable change so a lost or reordered frame shows up.
            regs[0] = 0;
            regs[1] = regs[1].wrapping_add(1);
            regs
        })
    });

    let mut conduit = UnixConduit::from_fd(OwnedFd::from(client_end));
    for i in 0..100u64 {
        let mut regs = SAMPLE;
        regs[1] = i;
        let answer = conduit.call(regs).unwrap();
        assert_eq!(answer[0], 0);
        assert_eq!(answer[1], i + 1);
        assert_eq!(answer[2..], SAMPLE[2..]);
    }
    drop(conduit);
    server.join().unwrap().unwrap();
}

#[test]
fn serve_conduit_rejects_a_frame_cut_short() {
    let (mut client_end, server_end) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || serve_conduit(server_end, |regs| regs));
    client_end.write_all(&encode_regs(&SAMPLE)[..10]).unwrap();
    drop(client_end);
    match server.join().unwrap() {
        Err(ConduitError::ShortFrame { received }) => assert_eq!(received, 10),
        other => panic!("expected a short frame, got {other:?}"),
    }
}

#[test]
fn call_reports_a_closed_peer() {
    let (client_end, server_end) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || {
        let mut server_end = server_end;
        // Take the request, then hang up without answering.
        let request = read_regs(&mut server_end).unwrap();
        drop(server_end);
        request
    });
    let mut conduit = UnixConduit::from_stream(client_end);
    let result = conduit.call(SAMPLE);
    assert_eq!(server.join().unwrap(), Some(SAMPLE));
    assert!(matches!(result, Err(ConduitError::Closed)), "{result:?}");
}

#[test]
fn connect_reaches_a_listening_secure_world() {
    let dir = std::env::temp_dir().join(format!("tee-rt-conduit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("smc.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        serve_conduit(stream, |regs| [regs[0] ^ 1, 0, 0, 0, 0, 0, 0, 7])
    });

    let mut conduit = UnixConduit::connect(&path).unwrap();
    assert_eq!(
        conduit.call(SAMPLE).unwrap(),
        [0x3200_0005, 0, 0, 0, 0, 0, 0, 7]
    );
    drop(conduit);
    server.join().unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn boxed_and_borrowed_conduits_forward_calls() {
    struct Doubler;
    impl SmcConduit for Doubler {
        fn call(&mut self, regs: [u64; 8]) -> Result<[u64; 8], ConduitError> {
            Ok(regs.map(|r| r.wrapping_mul(2)))
        }
    }
    let mut boxed: Box<dyn SmcConduit> = Box::new(Doubler);
    assert_eq!(boxed.call([1; 8]).unwrap(), [2; 8]);
    let mut inner = Doubler;
    let mut borrowed = &mut inner;
    assert_eq!(SmcConduit::call(&mut borrowed, [3; 8]).unwrap(), [6; 8]);
}
