//! Whatever bytes arrive on the parent⇄child channel, decoding never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() || data.len() > 4096 {
        return;
    }
    let (a, b) = beam::runtime::channel::pair().unwrap();
    // SAFETY: dup gives us our own copy of a's fd to write raw bytes through.
    let mut raw = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(libc_dup(a.raw_fd())) });
    raw.write_all(data).unwrap();
    let mut buf = [0u8; 4096];
    let _ = b.recv(&mut buf);
});

fn libc_dup(fd: i32) -> i32 {
    unsafe extern "C" {
        fn dup(fd: i32) -> i32;
    }
    // SAFETY: dup on an fd we own.
    unsafe { dup(fd) }
}
