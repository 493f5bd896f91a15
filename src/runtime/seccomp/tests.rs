//! Tests: the compiled program run through a BPF interpreter (both architectures, exhaustive
//! comparison checks), and real filters loaded by the kernel in forked children (root only,
//! `#[ignore = "needs root"]`: they load without no_new_privs, as OCI does when noNewPrivileges is
//! false, and the kernel takes such a filter only from CAP_SYS_ADMIN).

use std::ffi::CString;
use std::sync::{Arc, Mutex};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use serde_json::json;

use super::*;
use crate::test_support::require_root;

mod golden;

fn profile(value: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(value).expect("test profile parses")
}

/// `struct seccomp_data` bytes (little-endian).
fn data(arch: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

fn x86(name: &str) -> u32 {
    Target::X86_64.syscall(name).unwrap()
}

fn run_x86(p: &SeccompProgram, name: &str, args: [u64; 6]) -> u32 {
    bpf::run(&p.filter, &data(AUDIT_ARCH_X86_64, x86(name), args))
}

const ERRNO_EPERM: u32 = RET_ERRNO | 1;

#[test]
fn default_profile_compiles_small_and_behaves_on_x86_64() {
    let p = compile_for(&default_profile(), Target::X86_64).unwrap();
    assert!(p.instructions() < 1000, "{} instructions", p.instructions());
    let z = [0; 6];
    assert_eq!(run_x86(&p, "read", z), RET_ALLOW);
    assert_eq!(run_x86(&p, "execve", z), RET_ALLOW);
    assert_eq!(run_x86(&p, "arch_prctl", z), RET_ALLOW);
    // Everyday calls of language runtimes (umask was once missing: pip failed with "[Errno 0] Error").
    for name in ["umask", "openat2", "statx", "rseq", "close_range", "faccessat2", "epoll_pwait2", "pidfd_open"] {
        assert_eq!(run_x86(&p, name, z), RET_ALLOW, "{name}");
    }
    assert_eq!(run_x86(&p, "mount", z), ERRNO_EPERM);
    assert_eq!(run_x86(&p, "unshare", z), ERRNO_EPERM);
    assert_eq!(run_x86(&p, "io_uring_setup", z), ERRNO_EPERM);
    assert_eq!(run_x86(&p, "clone3", z), RET_ERRNO | 38);
    // clone: thread/fork flags allowed, any namespace flag refused.
    let thread_flags =
        (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_THREAD) as u64;
    assert_eq!(
        run_x86(&p, "clone", [thread_flags, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        run_x86(&p, "clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    for ns in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWPID,
    ] {
        assert_eq!(
            run_x86(&p, "clone", [(ns | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0]),
            ERRNO_EPERM
        );
    }
    // personality: only the listed values.
    for ok in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(
            run_x86(&p, "personality", [ok, 0, 0, 0, 0, 0]),
            RET_ALLOW,
            "personality({ok:#x})"
        );
    }
    for bad in [libc::ADDR_NO_RANDOMIZE as u64, 0x1_0000_0000, 1] {
        assert_eq!(
            run_x86(&p, "personality", [bad, 0, 0, 0, 0, 0]),
            ERRNO_EPERM,
            "personality({bad:#x})"
        );
    }
    // socket: everything but AF_VSOCK.
    assert_eq!(
        run_x86(&p, "socket", [libc::AF_INET as u64, 1, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        run_x86(&p, "socket", [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]),
        ERRNO_EPERM
    );
    // Other ABIs: i386 and x32 are listed, so they get the (denying) default; aarch64 can't be
    // listed usefully on x86_64 and gets the bad-arch kill.
    assert_eq!(
        bpf::run(&p.filter, &data(AUDIT_ARCH_I386, 3, z)),
        ERRNO_EPERM
    );
    assert_eq!(
        bpf::run(&p.filter, &data(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, z)),
        ERRNO_EPERM
    );
    assert_eq!(bpf::run(&p.filter, &data(0x1234, 0, z)), RET_KILL_PROCESS);
}

#[test]
fn default_profile_behaves_on_aarch64() {
    let p = compile_for(&default_profile(), Target::Aarch64).unwrap();
    assert!(p.instructions() < 1000);
    let run = |nr: u32, args: [u64; 6]| bpf::run(&p.filter, &data(AUDIT_ARCH_AARCH64, nr, args));
    let nr = |name| Target::Aarch64.syscall(name).unwrap();
    assert_eq!(run(nr("newfstatat"), [0; 6]), RET_ALLOW);
    assert_eq!(run(nr("openat"), [0; 6]), RET_ALLOW);
    assert_eq!(run(nr("mount"), [0; 6]), ERRNO_EPERM);
    assert_eq!(run(nr("clone3"), [0; 6]), RET_ERRNO | 38);
    assert_eq!(
        run(nr("clone"), [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]),
        ERRNO_EPERM
    );
    assert_eq!(
        run(nr("clone"), [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        bpf::run(&p.filter, &data(AUDIT_ARCH_ARM, 3, [0; 6])),
        ERRNO_EPERM
    );
    assert_eq!(
        bpf::run(&p.filter, &data(AUDIT_ARCH_X86_64, 0, [0; 6])),
        RET_KILL_PROCESS
    );
}

#[test]
fn every_default_profile_name_is_known() {
    for rule in default_profile().syscalls().iter().flatten() {
        for name in rule.names() {
            assert!(
                Target::X86_64.syscall(name).is_some() || Target::Aarch64.syscall(name).is_some(),
                "{name} is neither an x86_64 nor an aarch64 syscall"
            );
        }
    }
}

/// A writer collecting what a tracing subscriber prints.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn unknown_names_are_warned_and_other_abi_names_skipped_quietly() {
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["no_such_syscall", "getpid", "arch_prctl", "bdflush"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5 }]
    }));
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let prog =
        tracing::subscriber::with_default(subscriber, || compile_for(&p, Target::Aarch64)).unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // A typo is warned about; a real syscall of another ABI (x86_64-only arch_prctl on aarch64,
    // 32-bit-only bdflush, as podman's profile lists) only at debug level.
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warns.len() == 1 && warns[0].contains("no_such_syscall"), "{log}");
    assert!(!warns[0].contains("arch_prctl") && !warns[0].contains("bdflush"), "{log}");
    let getpid = Target::Aarch64.syscall("getpid").unwrap();
    assert_eq!(
        bpf::run(&prog.filter, &data(AUDIT_ARCH_AARCH64, getpid, [0; 6])),
        RET_ERRNO | 5
    );
}

/// Every operator against boundary values, checked against plain u64 arithmetic.
#[test]
fn argument_comparisons_are_exact_on_64_bits() {
    let values: [u64; 10] = [
        0,
        1,
        0xffff_fffe,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x2_0000_0000,
        0x7fff_ffff_ffff_ffff,
        u64::MAX - 1,
        u64::MAX,
    ];
    type Holds = fn(u64, u64) -> bool;
    let ops: [(&str, Holds); 6] = [
        ("SCMP_CMP_EQ", |a, v| a == v),
        ("SCMP_CMP_NE", |a, v| a != v),
        ("SCMP_CMP_LT", |a, v| a < v),
        ("SCMP_CMP_LE", |a, v| a <= v),
        ("SCMP_CMP_GT", |a, v| a > v),
        ("SCMP_CMP_GE", |a, v| a >= v),
    ];
    for (op, holds) in ops {
        for v in values {
            let p = profile(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
                               "args": [{ "index": 3, "value": v, "op": op }] }]
            }));
            let prog = compile_for(&p, Target::X86_64).unwrap();
            for a in values {
                let want = if holds(a, v) {
                    RET_ERRNO | 42
                } else {
                    RET_ALLOW
                };
                assert_eq!(
                    run_x86(&prog, "getpid", [0, 0, 0, a, 0, 0]),
                    want,
                    "{a:#x} {op} {v:#x}"
                );
            }
        }
    }
    let masks: [(u64, u64); 4] = [
        (0x7e02_0000, 0),
        (0xff00, 0x1200),
        (0xffff_0000_0000_ff00, 0x0001_0000_0000_1200),
        (u64::MAX, 0x1_0000_0000),
    ];
    for (mask, datum) in masks {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
                           "args": [{ "index": 5, "value": mask, "valueTwo": datum, "op": "SCMP_CMP_MASKED_EQ" }] }]
        }));
        let prog = compile_for(&p, Target::X86_64).unwrap();
        for a in values
            .into_iter()
            .chain([0x1234, 0x1_0000_1234, 0x1000_0000, datum])
        {
            let want = if a & mask == datum {
                RET_ERRNO | 42
            } else {
                RET_ALLOW
            };
            assert_eq!(
                run_x86(&prog, "getpid", [0, 0, 0, 0, 0, a]),
                want,
                "{a:#x} & {mask:#x} == {datum:#x}"
            );
        }
    }
}

#[test]
fn rules_for_one_syscall_and_args_and() {
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 9,
        "syscalls": [
            { "names": ["getpid"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["getpid"], "action": "SCMP_ACT_LOG" },
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ" }, { "index": 1, "value": 2, "op": "SCMP_CMP_EQ" }] },
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
              "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ" }] },
            { "names": ["gettid"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 77 },
            { "names": ["getuid"], "action": "SCMP_ACT_KILL" },
            { "names": ["getgid"], "action": "SCMP_ACT_TRAP" },
        ]
    }));
    let prog = compile_for(&p, Target::X86_64).unwrap();
    // Conditional rules first, in order, even though the unconditional ALLOW came first.
    assert_eq!(run_x86(&prog, "getpid", [1, 2, 0, 0, 0, 0]), RET_ERRNO | 1);
    assert_eq!(run_x86(&prog, "getpid", [1, 3, 0, 0, 0, 0]), RET_ERRNO | 2);
    // Then the first unconditional rule.
    assert_eq!(run_x86(&prog, "getpid", [0, 2, 0, 0, 0, 0]), RET_ALLOW);
    // errnoRet falls back to defaultErrnoRet.
    assert_eq!(run_x86(&prog, "gettid", [0; 6]), RET_ERRNO | 9);
    assert_eq!(run_x86(&prog, "getppid", [0; 6]), RET_TRACE | 77);
    assert_eq!(run_x86(&prog, "getuid", [0; 6]), RET_KILL_THREAD);
    assert_eq!(run_x86(&prog, "getgid", [0; 6]), RET_TRAP);
    assert_eq!(run_x86(&prog, "read", [0; 6]), RET_ERRNO | 9);
}

#[test]
fn far_jumps_and_size_limit() {
    // Hundreds of syscalls with conditions push blocks far from the tree: long jumps needed.
    let names: Vec<String> = syscalls::x86_64::Sysno::iter()
        .take(300)
        .map(|s| s.name().to_string())
        .collect();
    let rule = |value: u64, errno: u32| {
        json!({ "names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno,
                "args": [{ "index": 2, "value": value, "op": "SCMP_CMP_EQ" }] })
    };
    let p = profile(
        json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(7, 70), rule(8, 80)] }),
    );
    let prog = compile_for(&p, Target::X86_64).unwrap();
    assert!(
        prog.filter.iter().any(|i| i.code == bpf::JMP_JA),
        "a long jump was needed"
    );
    for name in &names {
        assert_eq!(
            run_x86(&prog, name, [0, 0, 7, 0, 0, 0]),
            RET_ERRNO | 70,
            "{name}"
        );
        assert_eq!(
            run_x86(&prog, name, [0, 0, 8, 0, 0, 0]),
            RET_ERRNO | 80,
            "{name}"
        );
        assert_eq!(
            run_x86(&prog, name, [0, 0, 9, 0, 0, 0]),
            RET_ALLOW,
            "{name}"
        );
    }
    let many: Vec<_> = (0..12).map(|i| rule(i, 1 + i as u32)).collect();
    let p = profile(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": many }));
    let err = compile_for(&p, Target::X86_64).unwrap_err();
    assert!(matches!(err, SeccompError::TooLong { .. }), "{err}");
    assert!(err.to_string().contains("4096"), "{err}");
}

#[test]
fn bad_profiles_are_errors_naming_the_problem() {
    let notify = profile(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_NOTIFY" }] }));
    let err = compile(&notify).unwrap_err().to_string();
    assert!(
        err.contains("SCMP_ACT_NOTIFY")
            && err.contains("not supported yet")
            && err.contains("mount"),
        "{err}"
    );

    let index = profile(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{ "index": 6, "value": 0, "op": "SCMP_CMP_EQ" }] }] }));
    let err = compile(&index).unwrap_err().to_string();
    assert!(err.contains("index 6") && err.contains("read"), "{err}");

    let errno = profile(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000 }));
    assert!(compile(&errno).unwrap_err().to_string().contains("70000"));

    let action = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_FOO"}]}"#;
    let err = parse(action).unwrap_err().to_string();
    assert!(
        err.contains("SCMP_ACT_FOO") && err.contains("SCMP_ACT_ALLOW"),
        "{err}"
    );
    let op = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW",
        "args":[{"index":0,"value":0,"op":"SCMP_CMP_FOO"}]}]}"#;
    let err = parse(op).unwrap_err().to_string();
    assert!(
        err.contains("SCMP_CMP_FOO") && err.contains("SCMP_CMP_EQ"),
        "{err}"
    );
}

#[test]
fn flags_and_permissive_defaults() {
    let p = profile(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_ERRNO" }] }));
    let prog = compile_for(&p, Target::X86_64).unwrap();
    assert_eq!(prog.flags(), 7);
    // A denylist can't be bypassed through int 0x80; x32 is not listed: killed.
    assert_eq!(
        bpf::run(&prog.filter, &data(AUDIT_ARCH_I386, 21, [0; 6])),
        RET_ERRNO | libc::ENOSYS as u32
    );
    assert_eq!(
        bpf::run(
            &prog.filter,
            &data(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 165, [0; 6])
        ),
        RET_KILL_PROCESS
    );
    assert_eq!(run_x86(&prog, "mount", [0; 6]), ERRNO_EPERM);
    assert_eq!(run_x86(&prog, "read", [0; 6]), RET_ALLOW);
}

// ---- Real filters in forked children. -------------------------------------------------------

/// Fork; the child runs `body` (async-signal-safe calls only: the test binary is multi-threaded)
/// and exits with its result.
fn in_child(body: impl FnOnce() -> i32) -> WaitStatus {
    // SAFETY: the child only runs `body`, which makes raw syscalls on memory prepared before the
    // fork, and leaves with `_exit`, so it never touches locks held by other threads.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: setrlimit and _exit are async-signal-safe; no core files from SIGSYS tests.
            unsafe {
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::_exit(body())
            }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

/// Raw syscall result: `Ok(ret)` or `Err(errno)`.
fn sys(nr: libc::c_long, args: [u64; 4]) -> Result<libc::c_long, i32> {
    // SAFETY: every call site passes arguments that make the kernel read no user memory, or
    // valid pointers it provides; errno is thread-local.
    let rc = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3]) };
    if rc < 0 {
        Err(nix::errno::Errno::last_raw())
    } else {
        Ok(rc)
    }
}

/// Whether /proc/self/status says `Seccomp:\t2` (filter mode), without allocating.
fn seccomp_mode_is_filter() -> bool {
    let mut buf = [0u8; 8192];
    // SAFETY: a NUL-terminated path literal and a stack buffer of the length passed.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    n > 0 && buf[..n as usize].windows(11).any(|w| w == b"Seccomp:\t2\n")
}

#[test]
#[ignore = "needs root"]
fn kernel_applies_actions_and_argument_conditions() {
    require_root();
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 7,
        "syscalls": [
            { "names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 },
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
              "args": [{ "index": 0, "value": libc::AF_INET, "op": "SCMP_CMP_EQ" }] },
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 0xffff_ffffu32, "op": "SCMP_CMP_EQ" }] },
            { "names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22 },
            { "names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33,
              "args": [{ "index": 0, "value": 0xff00, "valueTwo": 0x1200, "op": "SCMP_CMP_MASKED_EQ" }] },
            { "names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 44,
              "args": [{ "index": 1, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GT" }] },
        ]
    }));
    let prog = compile(&p).unwrap();
    let status = in_child(|| {
        if seccomp_mode_is_filter() {
            return 9; // the test process must start unfiltered for this test to mean anything
        }
        // Loaded without no_new_privs, as OCI does when noNewPrivileges is false (we are root).
        if prog.load().is_err() {
            return 10;
        }
        if !seccomp_mode_is_filter() {
            return 11;
        }
        if sys(libc::SYS_uname, [0; 4]) != Err(42) {
            return 12;
        }
        if sys(libc::SYS_mkdir, [0; 4]) != Err(7) {
            return 13; // errnoRet falls back to defaultErrnoRet
        }
        if sys(
            libc::SYS_socket,
            [libc::AF_INET as u64, libc::SOCK_STREAM as u64, 0, 0],
        ) != Err(13)
        {
            return 14;
        }
        match sys(
            libc::SYS_socket,
            [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0, 0],
        ) {
            // SAFETY: closing the descriptor just created.
            Ok(fd) => unsafe { libc::close(fd as i32) },
            Err(_) => return 15,
        };
        if sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0]).is_err() {
            return 16;
        }
        if sys(libc::SYS_personality, [8, 0, 0, 0]) != Err(22) {
            return 17;
        }
        if sys(libc::SYS_getpgid, [0x1234, 0, 0, 0]) != Err(33) {
            return 18;
        }
        if sys(libc::SYS_getpgid, [0, 0, 0, 0]).is_err() {
            return 19; // masked value 0 != 0x1200: allowed, our own pgid
        }
        if sys(
            libc::SYS_getpriority,
            [libc::PRIO_PROCESS as u64, 0x1_0000_0001, 0, 0],
        ) != Err(44)
        {
            return 20;
        }
        if sys(libc::SYS_getpriority, [libc::PRIO_PROCESS as u64, 0, 0, 0]).is_err() {
            return 21;
        }
        if sys(libc::SYS_getpid, [0; 4]).is_err() {
            return 22;
        }
        0
    });
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "child check failed: {status:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn kernel_kills_with_sigsys() {
    require_root();
    for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_TRAP"] {
        let p = profile(json!({ "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getppid"], "action": action }] }));
        let prog = compile(&p).unwrap();
        let status = in_child(|| {
            if prog.load().is_err() {
                return 10;
            }
            let _ = sys(libc::SYS_getppid, [0; 4]);
            0
        });
        assert!(
            matches!(
                status,
                WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)
            ),
            "{action}: {status:?}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn default_profile_runs_busybox_and_blocks_namespaces() {
    require_root();
    let prog = compile(&default_profile()).unwrap();
    let busybox = c"/bin/busybox";
    let script =
        CString::new("ls / >/dev/null && grep -q 'Seccomp:.2' /proc/self/status && busybox true")
            .unwrap();
    let argv = [
        c"busybox".as_ptr(),
        c"sh".as_ptr(),
        c"-c".as_ptr(),
        script.as_ptr(),
        std::ptr::null(),
    ];
    let envp = [c"PATH=/bin:/usr/bin".as_ptr(), std::ptr::null()];
    let status = in_child(|| {
        if prog.load().is_err() {
            return 10;
        }
        // SAFETY: NUL-terminated argv/envp arrays of C strings that live until exec.
        unsafe { libc::execve(busybox.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        11
    });
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "busybox under the default profile: {status:?}"
    );

    let status = in_child(|| {
        if prog.load().is_err() {
            return 10;
        }
        if sys(libc::SYS_unshare, [libc::CLONE_NEWUSER as u64, 0, 0, 0]) != Err(libc::EPERM) {
            return 11;
        }
        if sys(libc::SYS_mount, [0; 4]) != Err(libc::EPERM) {
            return 12;
        }
        if sys(libc::SYS_clone3, [0; 4]) != Err(libc::ENOSYS) {
            return 13;
        }
        if sys(
            libc::SYS_socket,
            [libc::AF_VSOCK as u64, libc::SOCK_STREAM as u64, 0, 0],
        ) != Err(libc::EPERM)
        {
            return 14;
        }
        if sys(
            libc::SYS_personality,
            [libc::ADDR_NO_RANDOMIZE as u64, 0, 0, 0],
        ) != Err(libc::EPERM)
        {
            return 15;
        }
        // clone with a namespace flag is refused; plain fork-style clone works.
        match sys(
            libc::SYS_clone,
            [(libc::CLONE_NEWNS | libc::SIGCHLD) as u64, 0, 0, 0],
        ) {
            Err(libc::EPERM) => {}
            // SAFETY: in the unexpected grandchild: leave at once.
            Ok(0) => unsafe { libc::_exit(0) },
            _ => return 16,
        }
        match sys(libc::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0]) {
            // SAFETY: in the grandchild: leave at once.
            Ok(0) => unsafe { libc::_exit(0) },
            Ok(pid) => {
                let mut st = 0;
                // SAFETY: waiting for the grandchild just created, into a local.
                if unsafe { libc::waitpid(pid as i32, &mut st, 0) } != pid as i32 {
                    return 17;
                }
            }
            Err(_) => return 18,
        }
        0
    });
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "child check failed: {status:?}"
    );
}
