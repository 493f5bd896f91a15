//! Tests of the cgroup v2 device program: the compiler (unit) and the kernel (pure v2 only).
//! The compiler against an interpreter of the instructions it emits, and (as root on pure v2,
//! e.g. through tests/vm/cgroup-v2.sh; `#[ignore = "needs root"]`) the kernel enforcing the program
//! on open(2) and mknod(2).
use super::*;
use crate::test_support::require_root;
use crate::runtime::cgroups::{Cgroup, CgroupMode};
use oci_spec::runtime::LinuxDeviceCgroupBuilder;

fn rule(allow: bool, typ: char, major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
    let typ = match typ {
        'a' => LinuxDeviceType::A,
        'b' => LinuxDeviceType::B,
        'c' => LinuxDeviceType::C,
        'u' => LinuxDeviceType::U,
        _ => LinuxDeviceType::P,
    };
    LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .major(major)
        .minor(minor)
        .access(access)
        .build()
        .unwrap()
}
fn allow(t: char, maj: i64, min: i64, a: &str) -> LinuxDeviceCgroup {
    rule(true, t, maj, min, a)
}
fn deny(t: char, maj: i64, min: i64, a: &str) -> LinuxDeviceCgroup {
    rule(false, t, maj, min, a)
}

/// Runs `p` on one `struct bpf_cgroup_dev_ctx`; supports exactly the opcodes `compile` emits.
fn run(p: &[Insn], typ: i32, access: u32, major: u32, minor: u32) -> u64 {
    let ctx = [typ as u32 | (access << 16), major, minor];
    let mut r = [0u64; 11];
    let mut r1_is_ctx = true;
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = p[pc];
        let (dst, src) = (usize::from(i.regs & 15), usize::from(i.regs >> 4));
        let imm64 = i64::from(i.imm) as u64;
        let jump = |cond: bool| if cond { i.off as isize } else { 0 };
        let mut off = 0isize;
        match i.code {
            LDX_MEM_W => {
                assert!(src == 1 && r1_is_ctx && i.off % 4 == 0, "bad load at {pc}");
                r[dst] = u64::from(ctx[i.off as usize / 4]);
            }
            ALU_AND_K => r[dst] = u64::from(r[dst] as u32 & i.imm as u32),
            ALU_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
            ALU_MOV_K => r[dst] = u64::from(i.imm as u32),
            JMP_JA => off = i.off as isize,
            JMP_JEQ_K => off = jump(r[dst] == imm64),
            JMP_JNE_K => off = jump(r[dst] != imm64),
            JMP_JSET_K => off = jump(r[dst] & imm64 != 0),
            JMP_JNE_X => off = jump(r[dst] != r[src]),
            JMP_EXIT => return r[0],
            c => panic!("unexpected opcode {c:#x} at {pc}"),
        }
        if dst == 1 && i.code & 7 != 5 {
            r1_is_ctx = false;
        }
        assert!(off >= 0, "backward jump at {pc}");
        pc = pc + 1 + off as usize;
    }
    panic!("no exit");
}

/// What the verifier checks structurally: jumps forward and in bounds, no unreachable instruction,
/// no fall-through off the end.
fn check_structure(p: &[Insn]) {
    let mut seen = vec![false; p.len()];
    let mut todo = vec![0usize];
    while let Some(pc) = todo.pop() {
        if std::mem::replace(&mut seen[pc], true) {
            continue;
        }
        let i = p[pc];
        let target = pc as isize + 1 + i.off as isize;
        match i.code {
            JMP_EXIT => {}
            JMP_JA => todo.push(target as usize),
            JMP_JEQ_K | JMP_JNE_K | JMP_JSET_K | JMP_JNE_X => {
                assert!(i.off >= 0 && (target as usize) < p.len(), "jump at {pc}");
                todo.extend([pc + 1, target as usize]);
            }
            _ => {
                assert!(pc + 1 < p.len(), "falls off the end");
                todo.push(pc + 1);
            }
        }
    }
    let dead: Vec<usize> = (0..p.len()).filter(|i| !seen[*i]).collect();
    assert!(dead.is_empty(), "unreachable instructions {dead:?}");
}

const C: i32 = DEV_CHAR;
const B: i32 = DEV_BLOCK;
const R: u32 = ACC_READ;
const W: u32 = ACC_WRITE;
const M: u32 = ACC_MKNOD;

#[test]
fn program_for_a_small_rule_set() {
    let p = compile(&[
        deny('a', -1, -1, "rwm"),
        allow('c', 1, 3, "rwm"),
        allow('c', 1, 5, "r"),
    ])
    .unwrap();
    let want = [
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
        // allow c 1:5 r (the last rule first)
        insn(JMP_JNE_K, 2, 0, 4, C),
        insn(JMP_JNE_K, 4, 0, 3, 1),
        insn(JMP_JNE_K, 5, 0, 2, 5),
        insn(ALU_AND_K, 3, 0, 0, !(R as i32)),
        insn(JMP_JEQ_K, 3, 0, 6, 0),
        // allow c 1:3 rwm
        insn(JMP_JNE_K, 2, 0, 3, C),
        insn(JMP_JNE_K, 4, 0, 2, 1),
        insn(JMP_JNE_K, 5, 0, 1, 3),
        insn(JMP_JA, 0, 0, 2, 0),
        // default deny, then allow
        insn(ALU_MOV_K, 0, 0, 0, 0),
        insn(JMP_EXIT, 0, 0, 0, 0),
        insn(ALU_MOV_K, 0, 0, 0, 1),
        insn(JMP_EXIT, 0, 0, 0, 0),
    ];
    assert_eq!(p, want);
    assert_eq!(std::mem::size_of::<Insn>(), 8);
    check_structure(&p);
    assert_eq!(run(&p, C, R | W, 1, 3), 1);
    assert_eq!(run(&p, C, R, 1, 5), 1);
    assert_eq!(run(&p, C, W, 1, 5), 0);
    assert_eq!(run(&p, C, R, 1, 7), 0);

    // Only deny rules under a deny default: no allow block (the verifier rejects dead code).
    let p = compile(&[deny('c', 1, 3, "rwm")]).unwrap();
    check_structure(&p);
    assert_eq!(p.len(), 6 + 4 + 2, "{p:?}");
    assert!(!p.contains(&insn(ALU_MOV_K, 0, 0, 0, 1)));
    // Allow-all: the default alone.
    let p = compile(&[allow('a', -1, -1, "")]).unwrap();
    assert_eq!(
        &p[6..],
        [insn(ALU_MOV_K, 0, 0, 0, 1), insn(JMP_EXIT, 0, 0, 0, 0)]
    );
    assert_eq!(run(&p, B, R, 8, 0), 1);
}

/// (device type, requested access, major, minor, expected verdict)
type Req = (i32, u32, u32, u32, u64);

#[test]
fn v1_semantics() {
    let rwm = "rwm";
    #[rustfmt::skip]
    let cases: Vec<(Vec<LinuxDeviceCgroup>, Vec<Req>)> = vec![
        // Allow list; a request needs all its bits granted.
        (vec![deny('a', -1, -1, rwm), allow('c', 1, 3, rwm), allow('c', 1, 5, "r")],
         vec![(C, R | W, 1, 3, 1), (C, M, 1, 3, 1), (C, R, 1, 5, 1), (C, R | W, 1, 5, 0),
              (C, M, 1, 5, 0), (C, R, 1, 7, 0), (B, R, 1, 3, 0)]),
        // Deny list: a request with any denied bit is denied (v1's partial match).
        (vec![allow('a', -1, -1, rwm), deny('c', 1, 3, "w")],
         vec![(C, R, 1, 3, 1), (C, R | W, 1, 3, 0), (C, W, 1, 3, 0), (C, R | W, 1, 4, 1), (B, W, 1, 3, 1)]),
        // A later deny takes bits away; a later allow gives them back.
        (vec![deny('a', -1, -1, rwm), allow('c', 1, 3, rwm), deny('c', 1, 3, "w")],
         vec![(C, R, 1, 3, 1), (C, M, 1, 3, 1), (C, R | W, 1, 3, 0), (C, W, 1, 3, 0)]),
        (vec![deny('a', -1, -1, rwm), allow('c', 1, 3, "rw"), deny('c', 1, 3, "r"), allow('c', 1, 3, "r")],
         vec![(C, R | W, 1, 3, 1), (C, M, 1, 3, 0)]),
        // Bits granted by separate rules add up (v1 merges them into one exception).
        (vec![deny('a', -1, -1, rwm), allow('c', 1, 3, "r"), allow('c', 1, 3, "w")],
         vec![(C, R | W, 1, 3, 1)]),
        (vec![allow('a', -1, -1, rwm), deny('c', 1, 3, rwm), allow('c', 1, 3, "r")],
         vec![(C, R, 1, 3, 1), (C, R | W, 1, 3, 0)]),
        // `a` resets whatever came before; no `a` at all means deny by default.
        (vec![allow('c', 1, 3, rwm), deny('a', 5, 5, "r")], vec![(C, R, 1, 3, 0), (C, M, 9, 9, 0)]),
        (vec![deny('c', 1, 3, rwm), allow('a', -1, -1, "r")], vec![(C, R | W, 1, 3, 1)]),
        (vec![allow('c', 1, 3, rwm)], vec![(C, R, 1, 3, 1), (C, R, 1, 4, 0)]),
        // Wildcards, `u` as `c`, FIFO ignored, and majors beyond i32.
        (vec![deny('a', -1, -1, rwm), allow('c', -1, -1, "m"), allow('b', 8, -1, "rw"),
              allow('u', 4, 1, ""), allow('p', -1, -1, rwm)],
         vec![(C, M, 99, 1, 1), (B, M, 8, 0, 0), (B, R | W, 8, 16, 1), (B, R, 9, 0, 0),
              (C, R | W, 4, 1, 1), (C, R, 4, 2, 0)]),
        (vec![deny('a', -1, -1, rwm), allow('c', 0x8000_0000, 0xffff_ffff, "r")],
         vec![(C, R, 0x8000_0000, 0xffff_ffff, 1), (C, R, 0, 0xffff_ffff, 0), (C, R, 0x8000_0000, 0, 0)]),
    ];
    for (rules, reqs) in cases {
        let p = compile(&rules).unwrap();
        check_structure(&p);
        let shown: Vec<String> = rules
            .iter()
            .map(|r| format!("{}{r}", if r.allow() { "+" } else { "-" }))
            .collect();
        for (typ, acc, maj, min, want) in reqs {
            assert_eq!(
                run(&p, typ, acc, maj, min),
                want,
                "rules {shown:?}, request type {typ} access {acc} {maj}:{min}"
            );
        }
    }
}

/// Random rule lists against a direct statement of the semantics (per bit, last match wins).
#[test]
fn matches_reference_model() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let accesses = ["r", "w", "m", "rw", "rm", "wm", "rwm"];
    for _ in 0..300 {
        let rules: Vec<LinuxDeviceCgroup> = (0..next(7))
            .map(|_| {
                let typ = ['a', 'b', 'c', 'c', 'c'][next(5) as usize];
                let num = |n: u64| n as i64 - 1; // -1 is a wildcard
                rule(
                    next(2) == 0,
                    typ,
                    num(next(3)),
                    num(next(3)),
                    accesses[next(7) as usize],
                )
            })
            .collect();
        let p = compile(&rules).unwrap();
        check_structure(&p);
        let (default, parsed) = parse(&rules).unwrap();
        for typ in [B, C] {
            for (maj, min) in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2)] {
                for acc in [R, W, M, R | W] {
                    let bit_ok = |bit: u32| {
                        parsed
                            .iter()
                            .rev()
                            .find(|r| {
                                r.typ == typ
                                    && r.major.is_none_or(|m| m == maj)
                                    && r.minor.is_none_or(|m| m == min)
                                    && r.access & bit != 0
                            })
                            .map_or(default, |r| r.allow)
                    };
                    let want = [R, W, M].iter().all(|b| acc & b == 0 || bit_ok(*b));
                    assert_eq!(
                        run(&p, typ, acc, maj, min),
                        u64::from(want),
                        "{rules:?} {typ} {acc} {maj}:{min}"
                    );
                }
            }
        }
    }
}

#[test]
fn bad_rules_are_clear_errors() {
    let e = compile(&[allow('c', 1, 3, "rx")]).unwrap_err().to_string();
    assert!(e.contains("r, w and m") && e.contains("1:3"), "{e}");
    let e = compile(&[allow('c', 1 << 32, 3, "r")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("major") && e.contains("out of range"), "{e}");
}

// ---------- the real kernel (root, pure cgroup v2) ----------

/// A `/beam/test-devices-*` cgroup and the children forked into it; both go away on drop.
struct Guard {
    cg: Cgroup,
    children: Vec<nix::unistd::Pid>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for pid in self.children.drain(..) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup of {} failed: {e}", self.cg.path);
        }
    }
}

enum Op {
    Open(std::ffi::CString, libc::c_int),
    Mknod(std::ffi::CString, libc::dev_t),
}

/// Forks a child that joins the cgroup, tries each op and exits with a bit set for each op whose
/// result (0 or an errno) is not the expected one; returns that exit status.
fn try_in(g: &mut Guard, ops: &[(Op, i32)]) -> i32 {
    assert!(ops.len() <= 8);
    let (r, w) = nix::unistd::pipe().unwrap();
    let rfd = r.as_raw_fd();
    // SAFETY: the child only calls read, open, close, mknod and _exit (async-signal-safe) and reads
    // errno; `ops` was built before the fork and is not modified.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let mut b = 0u8;
            let mut bad = 0;
            // SAFETY: reads one byte into a live stack variable; the paths are NUL-terminated
            // CStrings alive in this (copied) address space.
            unsafe {
                libc::read(rfd, (&raw mut b).cast(), 1);
                for (i, (op, want)) in ops.iter().enumerate() {
                    let ok = match op {
                        Op::Open(p, flags) => {
                            let fd = libc::open(p.as_ptr(), flags | libc::O_CLOEXEC);
                            if fd >= 0 {
                                libc::close(fd);
                            }
                            fd >= 0
                        }
                        Op::Mknod(p, dev) => {
                            libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o600, *dev) == 0
                        }
                    };
                    let got = if ok { 0 } else { nix::errno::Errno::last_raw() };
                    if got != *want {
                        bad |= 1 << i;
                    }
                }
                libc::_exit(bad)
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            g.children.push(child);
            drop(r);
            g.cg.add_pid(child.as_raw()).expect("add_pid");
            nix::unistd::write(&w, b"g").unwrap();
            g.children.retain(|p| *p != child);
            match nix::sys::wait::waitpid(child, None).unwrap() {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                other => panic!("child: {other:?}"),
            }
        }
    }
}

fn ids(g: &Guard) -> Vec<u32> {
    let dir = g.cg.hierarchy_dirs().unwrap().remove(0).1;
    let f = std::fs::File::open(&dir).unwrap();
    attached(f.as_fd()).unwrap()
}

#[test]
#[ignore = "needs root"]
fn kernel_enforces_rules_and_update_replaces_the_program() {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    require_root();
    if super::super::mode().ok() != Some(CgroupMode::V2) {
        eprintln!(
            "skipped: the device filter test needs a pure cgroup v2 host (tests/vm/cgroup-v2.sh)"
        );
        return;
    }
    for (dev, rdev) in [("null", (1, 3)), ("zero", (1, 5)), ("full", (1, 7))] {
        let m = std::fs::metadata(format!("/dev/{dev}")).unwrap();
        let got = (libc::major(m.rdev()), libc::minor(m.rdev()));
        if !m.file_type().is_char_device() || got != rdev {
            eprintln!("skipped: /dev/{dev} is not the character device {rdev:?}");
            return;
        }
    }
    // A program the verifier rejects (r0 never set): the error carries the verifier's log.
    let e = load(&[insn(JMP_EXIT, 0, 0, 0, 0)]).unwrap_err();
    assert!(
        e.contains("verifier: ") && e.contains("R0") && !e.contains('\n'),
        "{e}"
    );

    let path = format!("/beam/test-devices-{}", std::process::id());
    let mut g = Guard {
        cg: Cgroup::new(Some(&path), "unused").unwrap(),
        children: vec![],
    };
    g.cg.create().expect("create");
    let dir = g.cg.hierarchy_dirs().unwrap().remove(0).1;
    let tmp = tempfile::tempdir().unwrap();
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let node = |n: &str| c(tmp.path().join(n).to_str().unwrap());
    let eperm = libc::EPERM;

    apply(
        &dir,
        &[
            deny('a', -1, -1, "rwm"),
            allow('c', 1, 3, "rwm"),
            allow('c', 1, 5, "r"),
        ],
    )
    .unwrap();
    let first = ids(&g);
    assert_eq!(first.len(), 1, "{first:?}");
    let bad = try_in(
        &mut g,
        &[
            (Op::Open(c("/dev/null"), libc::O_RDWR), 0),
            (Op::Open(c("/dev/zero"), libc::O_RDONLY), 0),
            (Op::Open(c("/dev/zero"), libc::O_WRONLY), eperm),
            (Op::Open(c("/dev/zero"), libc::O_RDWR), eperm),
            (Op::Open(c("/dev/full"), libc::O_RDONLY), eperm),
            (Op::Mknod(node("null"), libc::makedev(1, 3)), 0),
            (Op::Mknod(node("zero"), libc::makedev(1, 5)), eperm),
        ],
    );
    assert_eq!(
        bad, 0,
        "unexpected results (bit i = check i; see the list above)"
    );

    // update: the new program replaces the old one (not added beside it).
    apply(&dir, &[deny('a', -1, -1, "rwm"), allow('c', 1, 7, "rw")]).unwrap();
    let second = ids(&g);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);
    let bad = try_in(
        &mut g,
        &[
            (Op::Open(c("/dev/full"), libc::O_RDWR), 0),
            (Op::Open(c("/dev/null"), libc::O_RDONLY), eperm),
            (Op::Open(c("/dev/zero"), libc::O_RDONLY), eperm),
        ],
    );
    assert_eq!(bad, 0, "after update: unexpected results (bit i = check i)");
}
