//! `linux.resources.devices` on cgroup v2: the rules compiled into an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE, attached to the container's cgroup with BPF_F_ALLOW_MULTI (as runc and
//! crun do). The kernel runs it on every open(2)/mknod(2) of a device node by a process of the cgroup;
//! the access is allowed only if every program attached to the cgroup and its ancestors returns 1.
//!
//! Semantics, those of the v1 devices controller as a user reads them:
//! - a rule of type `a` resets everything (as writing `a` to devices.allow/deny does): rules before the
//!   last such rule are dropped and its `allow` becomes the default; with no `a` rule the default is deny
//!   (runc's program ends in deny too);
//! - the other rules apply in order and the last matching one wins, per access bit: a request (`r`,
//!   `w`, `rw` for open, `m` for mknod) is allowed when each of its bits was last granted by an allow
//!   rule (or by an allow default). So `allow c 1:3 rwm` then `deny c 1:3 w` leaves `r` and `m`, and an
//!   `O_RDWR` open is denied, as on v1. Type `u` is `c`; `p` (FIFO) is ignored as on v1; a missing or
//!   negative major/minor is a wildcard; a missing or empty access is `rwm`.
//!
//! Where v1's exception list silently ignores a rule (a deny that would punch a hole in a wildcard
//! allow, or the reverse), and runc refuses the config, this program does what the rule says.
//!
//! Program layout (registers hold the `struct bpf_cgroup_dev_ctx` fields):
//! ```text
//!   r2 = ctx->access_type & 0xffff      device type: 1 block, 2 char
//!   r3 = ctx->access_type >> 16         requested bits not yet granted: 1 mknod, 2 read, 4 write
//!   r4 = ctx->major;  r5 = ctx->minor
//!   for each rule, last first:          a mismatching type/major/minor jumps to the next rule
//!       allow rwm:  goto ALLOW
//!       allow A:    r3 &= ~A; if r3 == 0 goto ALLOW
//!       deny  rwm:  goto DENY
//!       deny  A:    if r3 & A goto DENY
//!   DEFAULT: r0 = default; exit         then the other verdict's block, if any rule jumps to it
//! ```
//! `update` loads the new program, then replaces the one attached (BPF_F_REPLACE, Linux ≥ 5.6) or
//! attaches it and detaches every older program of this cgroup found with BPF_PROG_QUERY.

use super::CgroupError;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

// bpf(2) commands, program and attach types, flags (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_ATTACH: u32 = 8;
const BPF_PROG_DETACH: u32 = 9;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_PROG_QUERY: u32 = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_F_REPLACE: u32 = 4;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

// Opcodes: class | op | source.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K (32-bit)
const ALU_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const JMP_JA: u8 = 0x05;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JSET_K: u8 = 0x45;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

/// `struct bpf_insn`: opcode, dst_reg (low nibble) and src_reg (high nibble), offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// One rule after parsing; `None` major/minor is a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    allow: bool,
    typ: i32,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

/// The effective rules (after the last `a` rule) and the default verdict.
fn parse(rules: &[LinuxDeviceCgroup]) -> Result<(bool, Vec<Rule>), CgroupError> {
    let mut default = false;
    let mut out = vec![];
    for d in rules {
        let typ = match d.typ().unwrap_or_default() {
            LinuxDeviceType::A => {
                default = d.allow();
                out.clear();
                continue;
            }
            LinuxDeviceType::B => DEV_BLOCK,
            LinuxDeviceType::C | LinuxDeviceType::U => DEV_CHAR,
            LinuxDeviceType::P => {
                tracing::warn!("device rule {d} ignored: the devices cgroup has no FIFO type");
                continue;
            }
        };
        let num = |n: Option<i64>, what: &str| match n.filter(|n| *n >= 0) {
            None => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                CgroupError::Unsupported(format!(
                    "linux.resources.devices rule {d}: {what} {n} is out of range"
                ))
            }),
        };
        let mut access = 0;
        for c in d.access().as_deref().unwrap_or("").chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(CgroupError::Unsupported(format!(
                        "linux.resources.devices rule {d}: access may only contain r, w and m"
                    )));
                }
            };
        }
        out.push(Rule {
            allow: d.allow(),
            typ,
            major: num(d.major(), "major")?,
            minor: num(d.minor(), "minor")?,
            access: if access == 0 { ACC_ALL } else { access },
        });
    }
    Ok((default, out))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
}

/// Compiles OCI device rules into the program described in the module docs.
pub(crate) fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, CgroupError> {
    let (default, rules) = parse(rules)?;
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    // (index of a jump, where it goes), resolved once the verdict blocks are placed.
    let mut fixups: Vec<(usize, Verdict)> = vec![];
    for r in rules.iter().rev() {
        // Jumps to the next rule: their offsets are set when the block is complete.
        let mut to_next = vec![p.len()];
        p.push(insn(JMP_JNE_K, 2, 0, 0, r.typ));
        for (reg, val) in [(4u8, r.major), (5, r.minor)] {
            let Some(v) = val else { continue };
            match i32::try_from(v) {
                Ok(imm) => {
                    to_next.push(p.len());
                    p.push(insn(JMP_JNE_K, reg, 0, 0, imm));
                }
                // An immediate is sign-extended to 64 bits; compare with a zero-extended r1 instead.
                Err(_) => {
                    p.push(insn(ALU_MOV_K, 1, 0, 0, v as i32));
                    to_next.push(p.len());
                    p.push(insn(JMP_JNE_X, reg, 1, 0, 0));
                }
            }
        }
        let verdict = if r.allow {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        match (r.allow, r.access == ACC_ALL) {
            (_, true) => {
                fixups.push((p.len(), verdict));
                p.push(insn(JMP_JA, 0, 0, 0, 0));
            }
            (true, false) => {
                p.push(insn(ALU_AND_K, 3, 0, 0, !(r.access as i32)));
                fixups.push((p.len(), verdict));
                p.push(insn(JMP_JEQ_K, 3, 0, 0, 0));
            }
            (false, false) => {
                fixups.push((p.len(), verdict));
                p.push(insn(JMP_JSET_K, 3, 0, 0, r.access as i32));
            }
        }
        let next = p.len();
        for i in to_next {
            p[i].off = jump_off(i, next);
        }
    }
    let default_at = p.len();
    let (default_v, other_v) = if default {
        (Verdict::Allow, Verdict::Deny)
    } else {
        (Verdict::Deny, Verdict::Allow)
    };
    p.push(insn(ALU_MOV_K, 0, 0, 0, i32::from(default)));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    // The verifier rejects unreachable instructions: the other verdict only if some rule jumps there.
    let other_at = p.len();
    if fixups.iter().any(|(_, v)| *v == other_v) {
        p.push(insn(ALU_MOV_K, 0, 0, 0, i32::from(!default)));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    for (i, v) in fixups {
        let target = if v == default_v { default_at } else { other_at };
        p[i].off = jump_off(i, target);
    }
    Ok(p)
}

/// A forward jump's offset: relative to the instruction after the jump.
fn jump_off(from: usize, to: usize) -> i16 {
    i16::try_from(to - from - 1).expect("device filter program too long")
}

/// Compiles `rules`, loads the program and attaches it to the cgroup at `dir`, replacing (or
/// detaching) the programs attached there before.
pub(crate) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let insns = compile(rules)?;
    let fail = |msg: String| CgroupError::io(dir, format!("linux.resources.devices: {msg}"));
    let prog = load(&insns).map_err(&fail)?;
    let cg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| CgroupError::io(dir, format!("open: {e}; was create() called?")))?;
    let cg = OwnedFd::from(cg);
    let old = attached(cg.as_fd()).map_err(&fail)?;
    let old: Vec<OwnedFd> = old
        .into_iter()
        .filter_map(|id| match prog_fd_by_id(id) {
            Ok(fd) => Some(Ok(fd)),
            // Detached meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => Some(Err(fail(format!(
                "BPF_PROG_GET_FD_BY_ID {id} (a device program attached before): {e}"
            )))),
        })
        .collect::<Result<_, _>>()?;
    if let [one] = old.as_slice() {
        match attach(&cg, &prog, Some(one)) {
            Ok(()) => {
                tracing::debug!(
                    "device filter ({} insns) replaced in {}",
                    insns.len(),
                    dir.display()
                );
                return Ok(());
            }
            // Before Linux 5.6 (no BPF_F_REPLACE): attach, then detach below.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(fail(format!("BPF_PROG_ATTACH (replace): {e}"))),
        }
    }
    attach(&cg, &prog, None).map_err(|e| {
        fail(format!(
            "BPF_PROG_ATTACH: {e}{}",
            if e.raw_os_error() == Some(libc::EPERM) {
                "; the cgroup may have a non-multi program attached, or CAP_SYS_ADMIN is missing"
            } else {
                ""
            }
        ))
    })?;
    for o in &old {
        detach(&cg, o).map_err(|e| {
            fail(format!(
                "BPF_PROG_DETACH of the previous device program: {e}; both programs stay attached, \
                 so only what both allow is allowed"
            ))
        })?;
    }
    tracing::debug!(
        "device filter ({} insns) attached to {}",
        insns.len(),
        dir.display()
    );
    Ok(())
}

/// bpf(2) with an attr struct that is a prefix of `union bpf_attr`.
///
/// # Safety
/// `T` must be a `#[repr(C)]` struct laid out as the command's part of `union bpf_attr`, and every
/// pointer in it must point to memory valid for the kernel's reads and writes during the call.
unsafe fn sys_bpf<T>(cmd: u32, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: by this function's contract, `attr` is a live bpf_attr prefix of size_of::<T>() bytes
    // whose pointers are valid; the kernel reads and writes only that many bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libc::c_long::from(cmd),
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An fd returned by bpf(2).
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) just returned this new fd (O_CLOEXEC) and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Loads the program; on failure, loads it again with the verifier's log and puts the log's tail
/// into the error (one line).
fn load(insns: &[Insn]) -> Result<OwnedFd, String> {
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"beam_devices");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| "program too long".to_string())?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    // SAFETY: ProgLoadAttr is the BPF_PROG_LOAD part of bpf_attr; `insns` and `license` outlive the call.
    let err = match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    let mut log = vec![0u8; 1 << 20];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: as above; `log` is writable for log_size bytes and outlives the call.
    if let Ok(fd) = unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
        return Ok(owned(fd));
    }
    let text =
        String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(8)..].join(" | ");
    let hint = match err.raw_os_error() {
        Some(libc::EPERM) => {
            "; loading BPF programs needs CAP_SYS_ADMIN (or CAP_BPF) in the initial user namespace, \
             and on Linux < 5.11 a large enough RLIMIT_MEMLOCK"
        }
        Some(libc::EINVAL) => "; is the kernel built with CONFIG_CGROUP_BPF?",
        _ => "",
    };
    Err(format!(
        "loading the eBPF device filter ({} insns) failed: {err}{hint}{}",
        insns.len(),
        if tail.is_empty() {
            String::new()
        } else {
            format!("; verifier: {tail}")
        }
    ))
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn attach(cg: &OwnedFd, prog: &OwnedFd, replace: Option<&OwnedFd>) -> std::io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI | replace.map_or(0, |_| BPF_F_REPLACE),
        replace_bpf_fd: replace.map_or(0, |r| r.as_raw_fd() as u32),
    };
    // SAFETY: AttachAttr is the BPF_PROG_ATTACH part of bpf_attr; it holds no pointers.
    unsafe { sys_bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

fn detach(cg: &OwnedFd, prog: &OwnedFd) -> std::io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: AttachAttr is the BPF_PROG_DETACH part of bpf_attr; it holds no pointers.
    unsafe { sys_bpf(BPF_PROG_DETACH, &mut attr) }.map(drop)
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// Ids of the device programs attached to this very cgroup (not inherited ones).
fn attached(cg: BorrowedFd<'_>) -> Result<Vec<u32>, String> {
    let mut ids = vec![0u32; 16];
    loop {
        let mut attr = QueryAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        // SAFETY: QueryAttr is the BPF_PROG_QUERY part of bpf_attr; `ids` has room for prog_cnt ids
        // and outlives the call.
        match unsafe { sys_bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && ids.len() < 1 << 16 => {
                ids = vec![0; (attr.prog_cnt as usize).max(ids.len() * 2)];
            }
            Err(e) => return Err(format!("BPF_PROG_QUERY: {e}")),
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn prog_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: GetFdAttr is the BPF_PROG_GET_FD_BY_ID part of bpf_attr; it holds no pointers.
    unsafe { sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }.map(owned)
}

#[cfg(test)]
mod tests {
    //! The compiler against an interpreter of the instructions it emits, and (as root on pure v2,
    //! e.g. through tests/vm/cgroup-v2.sh) the kernel enforcing the program on open(2) and mknod(2).
    use super::*;
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

    #[test]
    fn v1_semantics() {
        let rwm = "rwm";
        #[rustfmt::skip]
        let cases: Vec<(Vec<LinuxDeviceCgroup>, Vec<(i32, u32, u32, u32, u64)>)> = vec![
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
    fn kernel_enforces_rules_and_update_replaces_the_program() {
        use std::os::unix::fs::FileTypeExt;
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() || super::super::mode().ok() != Some(CgroupMode::V2) {
            eprintln!(
                "skipped: the device filter test needs root on a pure cgroup v2 host (tests/vm/cgroup-v2.sh)"
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
}
