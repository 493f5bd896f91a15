//! Exec stream framing: `[stream: u8][0][0][0][length: u32 big-endian]` then `length` bytes — the
//! shape of Docker's attach stream, with beam's stream numbers.
//!
//! server → client: 1 stdout, 2 stderr, 3 exit (JSON [`super::ExecExit`], always the last frame).
//! client → server (upgraded connections only): 0 stdin (an empty frame closes stdin), 4 resize (JSON
//! [`super::Resize`]), 5 signal (JSON [`super::SignalRequest`]).

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 4;
pub const SIGNAL: u8 = 5;

pub const HEADER_LEN: usize = 8;
/// Largest frame either side sends or accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// Header for a frame of `len` bytes on `stream`.
pub fn header(stream: u8, len: usize) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// A whole frame.
pub fn encode(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&header(stream, payload.len()));
    v.extend_from_slice(payload);
    v
}

/// Incremental decoder: feed bytes, take whole frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("exec stream: frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("exec stream: bad frame header (reserved bytes are not zero)")]
    BadHeader,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        if self.buf[1..4] != [0, 0, 0] {
            return Err(FrameError::BadHeader);
        }
        let len = u32::from_be_bytes(self.buf[4..8].try_into().unwrap()) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let stream = self.buf[0];
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some((stream, payload)))
    }

    /// Bytes buffered that do not yet make a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let mut all = encode(STDOUT, b"hello");
        all.extend(encode(STDERR, b""));
        all.extend(encode(EXIT, br#"{"exit_code":0}"#));
        let mut d = Decoder::new();
        let mut got = vec![];
        for b in all.chunks(3) {
            d.push(b);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![(STDOUT, b"hello".to_vec()), (STDERR, vec![]), (EXIT, br#"{"exit_code":0}"#.to_vec())]
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn rejects_bad_frames() {
        let mut d = Decoder::new();
        d.push(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge(u32::MAX as usize)));
        let mut d = Decoder::new();
        d.push(&[1, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::BadHeader));
    }
}
