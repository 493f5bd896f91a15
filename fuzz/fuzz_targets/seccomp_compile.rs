//! Any `linux.seccomp` JSON either fails with an error or compiles to a program that fits the kernel's limits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(profile) = serde_json::from_slice::<oci_spec::runtime::LinuxSeccomp>(data) {
        let _ = beam::runtime::seccomp::compile(&profile);
    }
});
