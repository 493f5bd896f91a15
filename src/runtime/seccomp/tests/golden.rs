//! Golden tests: small profiles compiled to the exact classic-BPF program (instruction by
//! instruction, both architectures), then run through the interpreter on sample syscalls; and
//! the exact messages of profiles that cannot be compiled.

use super::super::bpf::{self, SockFilter};
use super::super::*;
use super::{data, profile};
use serde_json::json;

const LD: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGE: u16 = 0x35;
const RET: u16 = 0x06;

fn ld(k: u32) -> SockFilter {
    SockFilter {
        code: LD,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter {
        code: JEQ,
        jt,
        jf,
        k,
    }
}

fn jge(k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter {
        code: JGE,
        jt,
        jf,
        k,
    }
}

fn ret(k: u32) -> SockFilter {
    SockFilter {
        code: RET,
        jt: 0,
        jf: 0,
        k,
    }
}

const KILL: u32 = 0x8000_0000;
const ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 0x0005_0001;
const ENOSYS: u32 = 0x0005_0026;

#[track_caller]
fn assert_program(got: &[SockFilter], want: &[SockFilter]) {
    let show = |p: &[SockFilter]| {
        p.iter()
            .enumerate()
            .map(|(i, f)| {
                format!(
                    "{i:3}: {:#06x} jt={} jf={} k={:#x}",
                    f.code, f.jt, f.jf, f.k
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        got,
        want,
        "\n--- got:\n{}\n--- want:\n{}\n",
        show(got),
        show(want)
    );
}

/// ALLOW for two syscalls (sharing one `ret`), ERRNO(ENOSYS) for one, an argument condition for
/// one, a rule equal to the default (dropped) and an unknown name (skipped).
fn small_profile() -> LinuxSeccomp {
    profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            { "names": ["read", "write", "no_such_syscall"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 },
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 8, "op": "SCMP_CMP_EQ" }] },
            { "names": ["mount"], "action": "SCMP_ACT_ERRNO" },
        ]
    }))
}

#[test]
fn golden_small_profile_x86_64() {
    let p = compile_for(&small_profile(), Target::X86_64).unwrap();
    assert_program(
        &p.filter,
        &[
            // Arch check: x86_64 goes on, anything else is killed.
            ld(4),
            jeq(0xc000_003e, 1, 0),
            ret(KILL),
            // Syscall number; x32 (bit 30) is not listed: killed.
            ld(0),
            jge(0x4000_0000, 0, 1),
            ret(KILL),
            // read(0), write(1) → ALLOW; getpid(39) → ENOSYS; personality(135) → its block.
            jeq(0, 4, 0),
            jeq(1, 3, 0),
            jeq(39, 3, 0),
            jeq(135, 3, 0),
            ret(EPERM),
            ret(ALLOW),
            ret(ENOSYS),
            // personality: arg0 == 8 on both 32-bit halves, else the default.
            ld(20),
            jeq(0, 0, 3),
            ld(16),
            jeq(8, 0, 1),
            ret(ALLOW),
            ret(EPERM),
        ],
    );
    assert_eq!(p.instructions(), 19);
    assert_eq!(p.flags(), 0);
    let run = |nr: u32, arg0: u64| {
        bpf::run(
            &p.filter,
            &data(AUDIT_ARCH_X86_64, nr, [arg0, 0, 0, 0, 0, 0]),
        )
    };
    assert_eq!(run(0, 0), ALLOW);
    assert_eq!(run(1, 0), ALLOW);
    assert_eq!(run(39, 0), ENOSYS);
    assert_eq!(run(135, 8), ALLOW);
    assert_eq!(run(135, 9), EPERM);
    assert_eq!(run(135, 8 | 1 << 32), EPERM);
    assert_eq!(run(165, 0), EPERM, "mount: the default");
    assert_eq!(run(X32_SYSCALL_BIT, 0), KILL);
    assert_eq!(bpf::run(&p.filter, &data(AUDIT_ARCH_I386, 3, [0; 6])), KILL);
}

#[test]
fn golden_small_profile_aarch64() {
    let p = compile_for(&small_profile(), Target::Aarch64).unwrap();
    assert_program(
        &p.filter,
        &[
            ld(4),
            jeq(0xc000_00b7, 1, 0),
            ret(KILL),
            // No x32-style ABI on aarch64: straight to the dispatch.
            ld(0),
            // read(63), write(64) → ALLOW; personality(92) → block; getpid(172) → ENOSYS.
            jeq(63, 4, 0),
            jeq(64, 3, 0),
            jeq(92, 4, 0),
            jeq(172, 2, 0),
            ret(EPERM),
            ret(ALLOW),
            ret(ENOSYS),
            ld(20),
            jeq(0, 0, 3),
            ld(16),
            jeq(8, 0, 1),
            ret(ALLOW),
            ret(EPERM),
        ],
    );
    let run = |nr: u32, arg0: u64| {
        bpf::run(
            &p.filter,
            &data(AUDIT_ARCH_AARCH64, nr, [arg0, 0, 0, 0, 0, 0]),
        )
    };
    assert_eq!(run(63, 0), ALLOW);
    assert_eq!(run(172, 0), ENOSYS);
    assert_eq!(run(92, 8), ALLOW);
    assert_eq!(run(92, 0), EPERM);
    assert_eq!(bpf::run(&p.filter, &data(AUDIT_ARCH_ARM, 3, [0; 6])), KILL);
}

/// A permissive default with a denying rule: listed 32-bit ABIs get ENOSYS instead of the
/// default, so the denylist cannot be bypassed through them.
#[test]
fn golden_foreign_arches() {
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_ERRNO" }]
    }));
    let p = compile_for(&p, Target::X86_64).unwrap();
    assert_program(
        &p.filter,
        &[
            ld(4),
            jeq(0xc000_003e, 3, 0),
            jeq(0x4000_0003, 1, 0),
            ret(KILL),
            ret(ENOSYS),
            ld(0),
            jge(0x4000_0000, 0, 1),
            ret(ENOSYS),
            jeq(165, 1, 0),
            ret(ALLOW),
            ret(EPERM),
        ],
    );
    assert_eq!(p.flags(), libc::SECCOMP_FILTER_FLAG_TSYNC);
}

/// More than `LEAF` syscalls: a `jge` splits them into two leaves.
#[test]
fn golden_binary_search() {
    let names = [
        "read", "write", "open", "close", "stat", "fstat", "lstat", "poll", "lseek",
    ];
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": names, "action": "SCMP_ACT_ALLOW" }]
    }));
    let p = compile_for(&p, Target::X86_64).unwrap();
    assert_program(
        &p.filter,
        &[
            ld(4),
            jeq(0xc000_003e, 1, 0),
            ret(KILL),
            ld(0),
            jge(0x4000_0000, 0, 1),
            ret(KILL),
            // nr >= 4 (stat): the right leaf.
            jge(4, 6, 0),
            jeq(0, 4, 0),
            jeq(1, 3, 0),
            jeq(2, 2, 0),
            jeq(3, 1, 0),
            ret(EPERM),
            ret(ALLOW),
            jeq(4, 5, 0),
            jeq(5, 4, 0),
            jeq(6, 3, 0),
            jeq(7, 2, 0),
            jeq(8, 1, 0),
            ret(EPERM),
            ret(ALLOW),
        ],
    );
    for nr in 0..9 {
        assert_eq!(
            bpf::run(&p.filter, &data(AUDIT_ARCH_X86_64, nr, [0; 6])),
            ALLOW,
            "nr {nr}"
        );
    }
    assert_eq!(
        bpf::run(&p.filter, &data(AUDIT_ARCH_X86_64, 9, [0; 6])),
        EPERM
    );
}

/// Nothing to test per syscall (unknown names only): the arch checks and the default.
#[test]
fn golden_only_unknown_names() {
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [{ "names": ["no_such_syscall"], "action": "SCMP_ACT_ALLOW" }]
    }));
    let p = compile_for(&p, Target::X86_64).unwrap();
    assert_program(
        &p.filter,
        &[
            ld(4),
            jeq(0xc000_003e, 1, 0),
            ret(KILL),
            ld(0),
            jge(0x4000_0000, 0, 1),
            ret(KILL),
            ret(KILL),
        ],
    );
}

#[test]
fn golden_compile_errors() {
    let cases = [
        (
            json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000 }),
            "seccomp: errnoRet 70000 for syscalls [\"<defaultAction>\"] is too large; use an errno from 0 to 4095",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{ "names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536 }] }),
            "seccomp: SCMP_ACT_TRACE data 65536 for syscalls [\"ptrace\"] is too large; use 0 to 65535",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{ "names": ["read", "pread64"], "action": "SCMP_ACT_ERRNO",
                                   "args": [{ "index": 6, "value": 0, "op": "SCMP_CMP_EQ" }] }] }),
            "seccomp: argument index 6 for syscalls [\"read\", \"pread64\"] is out of range; use 0 to 5",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_NOTIFY" }] }),
            "seccomp: SCMP_ACT_NOTIFY (for syscalls [\"mount\"]) is not supported yet; use SCMP_ACT_ERRNO, \
             SCMP_ACT_TRACE, SCMP_ACT_TRAP, SCMP_ACT_LOG, SCMP_ACT_KILL_PROCESS or SCMP_ACT_ALLOW",
        ),
    ];
    for (json, want) in cases {
        let err = compile_for(&profile(json), Target::X86_64).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    // The largest errno still fits.
    let p = profile(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4095 }));
    let p = compile_for(&p, Target::X86_64).unwrap();
    assert_eq!(p.filter.last(), Some(&ret(0x0005_0fff)));
}
