//! Compiles `init/main.rs` (std only) into the static `beam-init` binary that beamd embeds
//! (`beam::sandbox::INIT_BINARY`) and copies into every sandbox as its PID 1.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=init/main.rs");
    println!("cargo:rerun-if-changed=src/sandbox/initproto.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let output = out_dir.join("beam-init");
    let target = env::var("TARGET").expect("cargo sets TARGET");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        panic!("beam-init is Linux-only; cannot build it for {target}");
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(&rustc);
    cmd.args(["--edition", "2021", "--crate-type", "bin", "--crate-name", "beam_init"]);
    // Static (static-pie with glibc's libc.a): the init runs inside images that may have no libc.
    // Fat LTO drops the unused parts of std (~15% smaller).
    for flag in [
        "opt-level=2",
        "panic=abort",
        "strip=symbols",
        "lto=fat",
        "codegen-units=1",
        "target-feature=+crt-static",
    ] {
        cmd.args(["-C", flag]);
    }
    cmd.args(["--target", &target, "init/main.rs", "-o"]).arg(&output);
    let result = cmd.output().unwrap_or_else(|e| panic!("cannot run {rustc:?} to build beam-init: {e}"));
    let stderr = String::from_utf8_lossy(&result.stderr);
    if !result.status.success() {
        panic!(
            "building beam-init (init/main.rs) failed: {:?} exited with {}\n{stderr}\n\
             (a static build needs the target's static libc, e.g. Debian's libc6-dev)",
            cmd, result.status
        );
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo:warning=beam-init: {line}");
    }
}
