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
mod tests;
