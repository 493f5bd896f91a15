//! Whatever a client sends the sandbox init (or the init sends beamd), decoding never panics, and what
//! decodes re-encodes to the same bytes.
#![no_main]
use beam::sandbox::initproto::{Reply, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(Request::decode(&r.encode()).as_ref(), Ok(&r));
    }
    if let Ok(r) = Reply::decode(data) {
        assert_eq!(Reply::decode(&r.encode()).as_ref(), Ok(&r));
    }
});
