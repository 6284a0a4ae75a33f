//! Length-prefixed frames for tee-proto messages over any byte stream.
//!
//! A frame is a u32 little-endian payload length followed by the payload. The reader enforces a
//! caller-chosen maximum before allocating, so a hostile or confused peer cannot make it reserve
//! gigabytes from a four-byte header.

use std::io::{self, Read, Write};

/// Bytes of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Failures while moving one frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The underlying stream failed.
    #[error("frame i/o failed")]
    Io(#[from] io::Error),
    /// The peer closed the stream on a frame boundary.
    #[error("peer closed the stream")]
    Closed,
    /// The stream ended inside a frame's header or payload.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The frame is longer than the limit; the stream is no longer in step and should be dropped.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced (or offered) payload length.
        len: u64,
        /// The limit in force.
        max: u64,
    },
}

/// Frames up to this many payload bytes go out in one write.
const ONE_WRITE_MAX: usize = 8 * 1024;

/// Writes `payload` as one frame and flushes. A frame of up to [`ONE_WRITE_MAX`] bytes (every
/// tee-proto frame) is one write: a header written on its own wakes the reader for four bytes
/// and makes it wait again for the rest (measured: two wake-ups of bnxtd per coredump chunk).
pub fn write_frame(writer: &mut (impl Write + ?Sized), payload: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLong {
        len: payload.len() as u64,
        max: u64::from(u32::MAX),
    })?;
    if payload.len() <= ONE_WRITE_MAX {
        let mut frame = [0u8; FRAME_HEADER_BYTES + ONE_WRITE_MAX];
        frame[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_le_bytes());
        frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload.len()].copy_from_slice(payload);
        writer.write_all(&frame[..FRAME_HEADER_BYTES + payload.len()])?;
    } else {
        writer.write_all(&len.to_le_bytes())?;
        writer.write_all(payload)?;
    }
    writer.flush()?;
    Ok(())
}

/// Reads one frame into `buf` (replacing its contents), refusing payloads over `max_len` bytes.
pub fn read_frame(
    reader: &mut (impl Read + ?Sized),
    buf: &mut Vec<u8>,
    max_len: usize,
) -> Result<(), FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match fill(reader, &mut header)? {
        0 => return Err(FrameError::Closed),
        FRAME_HEADER_BYTES => {}
        _ => return Err(FrameError::Truncated),
    }
    let announced = u32::from_le_bytes(header);
    let too_long = || FrameError::TooLong {
        len: u64::from(announced),
        max: max_len as u64,
    };
    let len = usize::try_from(announced).map_err(|_| too_long())?;
    if len > max_len {
        return Err(too_long());
    }
    buf.clear();
    buf.resize(len, 0);
    if fill(reader, buf)? != len {
        buf.clear();
        return Err(FrameError::Truncated);
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn frames_round_trip_in_order() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"open session").unwrap();
        write_frame(&mut wire, b"").unwrap();
        write_frame(&mut wire, &[0xAB; 300]).unwrap();
        assert_eq!(&wire[..4], &[12, 0, 0, 0]);

        let mut reader = Cursor::new(wire);
        let mut buf = vec![0xFF; 3];
        read_frame(&mut reader, &mut buf, 1024).unwrap();
        assert_eq!(buf, b"open session");
        read_frame(&mut reader, &mut buf, 1024).unwrap();
        assert!(buf.is_empty());
        read_frame(&mut reader, &mut buf, 1024).unwrap();
        assert_eq!(buf, vec![0xAB; 300]);
        assert!(matches!(
            read_frame(&mut reader, &mut buf, 1024),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn a_frame_is_one_write_and_a_large_one_still_arrives_whole() {
        /// Counts the writes it is given.
        struct Writes(Vec<Vec<u8>>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Writes(Vec::new());
        write_frame(&mut out, &[7; 4096]).unwrap();
        assert_eq!(out.0.len(), 1, "header and payload in one write");
        assert_eq!(out.0[0].len(), 4100);
        let mut out = Writes(Vec::new());
        write_frame(&mut out, &[9; ONE_WRITE_MAX + 1]).unwrap();
        let wire: Vec<u8> = out.0.concat();
        let mut buf = Vec::new();
        read_frame(&mut Cursor::new(wire), &mut buf, 1 << 20).unwrap();
        assert_eq!(buf, vec![9; ONE_WRITE_MAX + 1]);
    }

    #[test]
    fn oversize_frame_is_refused_before_reading_its_payload() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &[1; 65]).unwrap();
        let mut reader = Cursor::new(wire);
        let mut buf = Vec::new();
        match read_frame(&mut reader, &mut buf, 64) {
            Err(FrameError::TooLong { len, max }) => assert_eq!((len, max), (65, 64)),
            other => panic!("expected TooLong, got {other:?}"),
        }
        assert_eq!(reader.position(), 4);

        // A header announcing 4 GiB is refused without allocating it.
        let mut reader = Cursor::new(u32::MAX.to_le_bytes().to_vec());
        assert!(matches!(
            read_frame(&mut reader, &mut buf, 1 << 20),
            Err(FrameError::TooLong { len, .. }) if len == u64::from(u32::MAX)
        ));
    }

    #[test]
    fn end_of_stream_inside_a_frame_is_truncation() {
        let mut buf = Vec::new();
        let mut half_header = Cursor::new(vec![5, 0]);
        assert!(matches!(
            read_frame(&mut half_header, &mut buf, 64),
            Err(FrameError::Truncated)
        ));

        let mut half_payload = Cursor::new(vec![5, 0, 0, 0, b'a', b'b']);
        assert!(matches!(
            read_frame(&mut half_payload, &mut buf, 64),
            Err(FrameError::Truncated)
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn io_errors_pass_through() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let mut buf = Vec::new();
        match read_frame(&mut Broken, &mut buf, 64) {
            Err(FrameError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
