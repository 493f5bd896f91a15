//! An exec stream from a client (stdin, resize, signal frames) in arbitrary pieces: the decoder never
//! panics, never yields a frame over the limit, and splits the same bytes the same way however they arrive.
#![no_main]
use beam::api::frames::{Decoder, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fn all(chunks: &[&[u8]]) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut d = Decoder::new();
    let mut out = vec![];
    for c in chunks {
        d.push(c);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.1.len() <= MAX_FRAME);
                    out.push(f);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let whole = all(&[data]);
    let split = data.len() / 3;
    let pieces = all(&[&data[..split], &data[split..]]);
    assert_eq!(whole, pieces);
});
