//! seccomp: `linux.seccomp` from config.json compiled to a classic BPF program.
//!
//! CONTRACT (used by `plan.rs` and `init.rs`):
//! - [`compile`] runs in the parent before clone and may allocate.
//! - [`SeccompProgram::load`] runs in the child right before execve: it is async-signal-safe
//!   (no allocation, no locks) — only the seccomp(2) syscall on memory prepared by `compile`.
//!   Without no_new_privs the caller needs CAP_SYS_ADMIN (the kernel answers EACCES otherwise).
//!
//! Why our own BPF and not `seccompiler`: seccompiler gives a whole filter a single match action,
//! which cannot express OCI profiles (ALLOW for most syscalls, ERRNO(ENOSYS) for clone3, all under
//! an ERRNO(EPERM) default), and its `apply_filter` always sets no_new_privs, which OCI only does
//! when `process.noNewPrivileges` is true. The generator here is small: see the `bpf` submodule.
//!
//! Program layout:
//! 1. `A = arch`. The native arch goes on to 2. Other arches listed in `architectures` that can
//!    reach this kernel (x86 on x86_64, arm on aarch64) get the *foreign action*: we have no
//!    syscall tables for them, so they get `defaultAction` when that denies; for a permissive
//!    default (ALLOW/LOG) with denying rules they get ERRNO(ENOSYS) instead, so a denylist can't
//!    be bypassed through a 32-bit ABI. Any other arch: KILL_PROCESS (libseccomp's bad-arch).
//! 2. `A = nr`. On x86_64, x32 numbers (bit 30 set) get the foreign action if SCMP_ARCH_X32 is
//!    listed, else KILL_PROCESS.
//! 3. A binary search over the sorted syscall numbers (`jge` nodes) down to leaves of at most
//!    `LEAF` `jeq` tests; a miss returns `defaultAction`. Right after each leaf come its
//!    targets: one `ret` per distinct unconditional action, and a block per syscall with
//!    argument conditions. Everything a leaf jumps to is thus near; only the `jge` over a large
//!    left subtree may need a long jump, which the assembler adds.
//!
//! Several rules for one syscall (the multi-action handling): the rules *with* `args` are tried
//! in profile order and the first whose conditions all hold (AND) decides; then the first rule
//! *without* `args` decides; then `defaultAction`. So an unconditional rule is the syscall's
//! fallback and conditional rules refine it whatever their order in the profile, as libseccomp
//! builds its per-syscall decision tree; a later unconditional rule for the same syscall is
//! ignored. Real profiles (Docker's included) never have overlapping rules for one syscall.
//!
//! Unknown actions and operators are rejected when the profile is parsed (serde names the
//! variant and lists the valid ones, see [`parse`]); unknown syscall names are skipped with a
//! warning, as runc does (names that exist on the other supported architecture only, like
//! `arch_prctl` on aarch64, are skipped quietly).

mod bpf;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::str::FromStr;

use bpf::{Asm, Cond, SockFilter, SockFprog};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg,
    LinuxSeccompFilterFlag as Flag, LinuxSeccompOperator as Operator,
};

pub use bpf::BPF_MAXINSNS;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "seccomp: {action} (for syscalls {syscalls:?}) is not supported yet; use SCMP_ACT_ERRNO, \
         SCMP_ACT_TRACE, SCMP_ACT_TRAP, SCMP_ACT_LOG, SCMP_ACT_KILL_PROCESS or SCMP_ACT_ALLOW"
    )]
    UnsupportedAction {
        action: String,
        syscalls: Vec<String>,
    },
    #[error(
        "seccomp: argument index {index} for syscalls {syscalls:?} is out of range; use 0 to 5"
    )]
    ArgIndex { index: usize, syscalls: Vec<String> },
    #[error(
        "seccomp: errnoRet {value} for syscalls {syscalls:?} is too large; use an errno from 0 to 4095"
    )]
    ErrnoRet { value: u32, syscalls: Vec<String> },
    #[error(
        "seccomp: SCMP_ACT_TRACE data {value} for syscalls {syscalls:?} is too large; use 0 to 65535"
    )]
    TraceRet { value: u32, syscalls: Vec<String> },
    #[error(
        "seccomp: the compiled filter has {len} instructions, over the kernel's limit of 4096; \
         merge rules or drop argument conditions"
    )]
    TooLong { len: usize },
    #[error(
        "seccomp: host architecture {0} is not supported; beam compiles filters for x86_64 and aarch64"
    )]
    UnsupportedHost(&'static str),
    #[error("seccomp: invalid profile: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("seccomp: internal error compiling the filter: {0}")]
    Internal(String),
}

/// A compiled filter ready to load.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    filter: Vec<SockFilter>,
    flags: libc::c_ulong,
}

/// Compile the OCI seccomp section for the host architecture.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let target = Target::host().ok_or(SeccompError::UnsupportedHost(std::env::consts::ARCH))?;
    compile_for(seccomp, target)
}

impl SeccompProgram {
    /// Load the filter into the calling thread (all threads with TSYNC). Async-signal-safe.
    pub fn load(&self) -> Result<(), nix::errno::Errno> {
        let prog = SockFprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr(),
        };
        // SAFETY: `prog` points at `self.filter`, which outlives the call and whose length (at most
        // BPF_MAXINSNS, checked by `compile`) is `prog.len`; `SockFilter`/`SockFprog` are
        // `repr(C)` copies of the kernel's structs. The kernel copies the program before returning.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const SockFprog,
            )
        };
        match rc {
            0 => Ok(()),
            // With TSYNC, a positive result is the id of a thread that could not be synchronised.
            rc if rc > 0 => Err(nix::errno::Errno::ESRCH),
            _ => Err(nix::errno::Errno::last()),
        }
    }

    /// Number of BPF instructions.
    pub fn instructions(&self) -> usize {
        self.filter.len()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits passed to seccomp(2).
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }
}

/// The Docker-equivalent default profile shipped in seccomp/default.json.
pub fn default_profile() -> LinuxSeccomp {
    parse(include_str!("../../../seccomp/default.json")).expect("seccomp/default.json is valid")
}

/// Parse a profile in config.json `linux.seccomp` form (e.g. a user-supplied profile file).
pub fn parse(json: &str) -> Result<LinuxSeccomp, SeccompError> {
    Ok(serde_json::from_str(json)?)
}

// SECCOMP_RET_* actions.
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// Audit architectures (seccomp_data.arch).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets in `struct seccomp_data` (both targets are little-endian).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(index: usize) -> u32 {
    16 + 8 * index as u32
}
const fn off_arg_hi(index: usize) -> u32 {
    off_arg_lo(index) + 4
}

/// Largest number of `jeq` tests in one leaf of the binary search.
const LEAF: usize = 8;

/// An architecture we have syscall tables for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    X86_64,
    Aarch64,
}

impl Target {
    fn host() -> Option<Target> {
        if cfg!(all(target_arch = "x86_64", target_endian = "little")) {
            Some(Target::X86_64)
        } else if cfg!(all(target_arch = "aarch64", target_endian = "little")) {
            Some(Target::Aarch64)
        } else {
            None
        }
    }

    fn audit_arch(self) -> u32 {
        match self {
            Target::X86_64 => AUDIT_ARCH_X86_64,
            Target::Aarch64 => AUDIT_ARCH_AARCH64,
        }
    }

    fn other(self) -> Target {
        match self {
            Target::X86_64 => Target::Aarch64,
            Target::Aarch64 => Target::X86_64,
        }
    }

    /// Syscall number by libseccomp name.
    fn syscall(self, name: &str) -> Option<u32> {
        match self {
            Target::X86_64 => syscalls::x86_64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Target::Aarch64 => {
                // The kernel's (and libseccomp's) name for nr 79 on arm64 is `newfstatat`.
                let name = if name == "newfstatat" {
                    "fstatat"
                } else {
                    name
                };
                syscalls::aarch64::Sysno::from_str(name)
                    .ok()
                    .map(|s| s.id() as u32)
            }
        }
    }
}

/// Names that only the 32-bit ABIs have (`bdflush`, `socketcall`, …): real syscalls that profiles such as
/// podman's list, skipped quietly (debug) rather than warned about like a typo.
fn exists_on_32bit(name: &str) -> bool {
    syscalls::x86::Sysno::from_str(name).is_ok() || syscalls::arm::Sysno::from_str(name).is_ok()
}

/// Everything the profile says about one syscall number.
#[derive(Debug)]
struct SyscallRules {
    nr: u32,
    /// Rules with argument conditions, in profile order: all conditions must hold.
    conditional: Vec<(Vec<LinuxSeccompArg>, u32)>,
    /// The first rule without conditions.
    fallback: Option<u32>,
}

fn compile_for(seccomp: &LinuxSeccomp, target: Target) -> Result<SeccompProgram, SeccompError> {
    let default_errno = seccomp.default_errno_ret();
    let no_names: Vec<String> = vec!["<defaultAction>".into()];
    let default = action_value(
        seccomp.default_action(),
        default_errno,
        default_errno,
        &no_names,
    )?;

    let mut by_nr: BTreeMap<u32, SyscallRules> = BTreeMap::new();
    let mut unknown: Vec<&str> = Vec::new();
    let mut any_denying_rule = false;
    for rule in seccomp.syscalls().iter().flatten() {
        let names = rule.names();
        let action = action_value(rule.action(), rule.errno_ret(), default_errno, names)?;
        any_denying_rule |= !is_permissive(action);
        let args = rule.args().clone().unwrap_or_default();
        if let Some(arg) = args.iter().find(|a| a.index() > 5) {
            return Err(SeccompError::ArgIndex {
                index: arg.index(),
                syscalls: names.clone(),
            });
        }
        for name in names {
            let Some(nr) = target.syscall(name) else {
                if target.other().syscall(name).is_some() || exists_on_32bit(name) {
                    tracing::debug!(syscall = %name, arch = ?target, "seccomp: syscall does not exist on this architecture; skipped");
                } else {
                    unknown.push(name);
                }
                continue;
            };
            let entry = by_nr.entry(nr).or_insert(SyscallRules {
                nr,
                conditional: Vec::new(),
                fallback: None,
            });
            if !args.is_empty() {
                entry.conditional.push((args.clone(), action));
            } else if entry.fallback.is_none() {
                entry.fallback = Some(action);
            }
        }
    }
    if !unknown.is_empty() {
        tracing::warn!(syscalls = ?unknown, "seccomp: unknown syscall names in the profile were skipped");
    }

    // What a listed but untranslatable architecture gets (module doc, step 1).
    let foreign_action = if is_permissive(default) && any_denying_rule {
        RET_ERRNO | libc::ENOSYS as u32
    } else {
        default
    };
    let mut foreign_arches = Vec::new();
    let mut x32 = false;
    for arch in seccomp.architectures().iter().flatten() {
        match (target, arch) {
            (Target::X86_64, Arch::ScmpArchX86) => foreign_arches.push(AUDIT_ARCH_I386),
            (Target::X86_64, Arch::ScmpArchX32) => x32 = true,
            (Target::Aarch64, Arch::ScmpArchArm) => foreign_arches.push(AUDIT_ARCH_ARM),
            _ => {} // native, or an arch that cannot run on this kernel
        }
    }
    if foreign_action != default && (x32 || !foreign_arches.is_empty()) {
        tracing::warn!(
            "seccomp: beam has no syscall tables for the listed 32-bit architectures; \
             their syscalls fail with ENOSYS instead of following this denylist profile"
        );
    }

    let mut flags: libc::c_ulong = 0;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            Flag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            Flag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            Flag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            // Only meaningful with SCMP_ACT_NOTIFY, which is refused above.
            Flag::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }

    // Syscalls that end up doing exactly what the default does need no test at all.
    let rules: Vec<SyscallRules> = by_nr
        .into_values()
        .filter(|s| !s.conditional.is_empty() || s.fallback.is_some_and(|a| a != default))
        .collect();

    let mut asm = Asm::new();
    // 1. Architecture.
    asm.load(OFF_ARCH);
    let native = asm.label();
    asm.jump_if(Cond::Eq, target.audit_arch(), native);
    if !foreign_arches.is_empty() {
        let foreign = asm.label();
        for audit_arch in foreign_arches {
            asm.jump_if(Cond::Eq, audit_arch, foreign);
        }
        asm.ret(RET_KILL_PROCESS);
        asm.bind(foreign);
        asm.ret(foreign_action);
    } else {
        asm.ret(RET_KILL_PROCESS);
    }
    asm.bind(native);
    // 2. Syscall number (and the x32 ABI, which shares x86_64's audit arch).
    asm.load(OFF_NR);
    if target == Target::X86_64 {
        let x86_64 = asm.label();
        asm.jump_unless(Cond::Ge, X32_SYSCALL_BIT, x86_64);
        asm.ret(if x32 {
            foreign_action
        } else {
            RET_KILL_PROCESS
        });
        asm.bind(x86_64);
    }
    // 3. Dispatch.
    emit_search(&mut asm, &rules, default);
    let filter = asm.assemble()?;
    Ok(SeccompProgram { filter, flags })
}

fn is_permissive(action: u32) -> bool {
    action == RET_ALLOW || action == RET_LOG
}

/// `SECCOMP_RET_*` value of an action. ERRNO data: the rule's errnoRet, else defaultErrnoRet,
/// else EPERM; TRACE data: errnoRet, else EPERM (as runc).
fn action_value(
    action: Action,
    errno_ret: Option<u32>,
    default_errno: Option<u32>,
    names: &[String],
) -> Result<u32, SeccompError> {
    Ok(match action {
        Action::ScmpActAllow => RET_ALLOW,
        Action::ScmpActLog => RET_LOG,
        Action::ScmpActKill | Action::ScmpActKillThread => RET_KILL_THREAD,
        Action::ScmpActKillProcess => RET_KILL_PROCESS,
        Action::ScmpActTrap => RET_TRAP,
        Action::ScmpActErrno => {
            let value = errno_ret.or(default_errno).unwrap_or(libc::EPERM as u32);
            if value > 4095 {
                return Err(SeccompError::ErrnoRet {
                    value,
                    syscalls: names.to_vec(),
                });
            }
            RET_ERRNO | value
        }
        Action::ScmpActTrace => {
            let value = errno_ret.unwrap_or(libc::EPERM as u32);
            if value > 0xffff {
                return Err(SeccompError::TraceRet {
                    value,
                    syscalls: names.to_vec(),
                });
            }
            RET_TRACE | value
        }
        Action::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction {
                action: action.to_string(),
                syscalls: names.to_vec(),
            });
        }
    })
}

/// Binary search over `rules` (sorted by number); `A` holds the syscall number throughout.
fn emit_search(asm: &mut Asm, rules: &[SyscallRules], default: u32) {
    if rules.len() > LEAF {
        let mid = rules.len() / 2;
        let right = asm.label();
        asm.jump_if(Cond::Ge, rules[mid].nr, right);
        emit_search(asm, &rules[..mid], default);
        asm.bind(right);
        emit_search(asm, &rules[mid..], default);
        return;
    }
    // Leaf: the tests, the miss, then the targets right behind them.
    let mut returns: Vec<(u32, bpf::Label)> = Vec::new();
    let mut blocks = Vec::new();
    for syscall in rules {
        let target = if syscall.conditional.is_empty() {
            let action = syscall.fallback.unwrap_or(default);
            match returns.iter().find(|(a, _)| *a == action) {
                Some(&(_, label)) => label,
                None => {
                    let label = asm.label();
                    returns.push((action, label));
                    label
                }
            }
        } else {
            let label = asm.label();
            blocks.push((syscall, label));
            label
        };
        asm.jump_if(Cond::Eq, syscall.nr, target);
    }
    asm.ret(default);
    for (action, label) in returns {
        asm.bind(label);
        asm.ret(action);
    }
    for (syscall, label) in blocks {
        asm.bind(label);
        for (args, action) in &syscall.conditional {
            let next_rule = asm.label();
            for arg in args {
                emit_arg_check(asm, arg, next_rule);
            }
            asm.ret(*action);
            asm.bind(next_rule);
        }
        asm.ret(syscall.fallback.unwrap_or(default));
    }
}

/// Fall through when the 64-bit argument satisfies `arg`, jump to `fail` otherwise. The
/// comparison is unsigned over the two 32-bit halves: the high halves decide unless equal.
fn emit_arg_check(asm: &mut Asm, arg: &LinuxSeccompArg, fail: bpf::Label) {
    let (hi_off, lo_off) = (off_arg_hi(arg.index()), off_arg_lo(arg.index()));
    let value = arg.value();
    let (hi, lo) = ((value >> 32) as u32, value as u32);
    let pass = asm.label();
    match arg.op() {
        Operator::ScmpCmpEq => {
            asm.load(hi_off);
            asm.jump_unless(Cond::Eq, hi, fail);
            asm.load(lo_off);
            asm.jump_unless(Cond::Eq, lo, fail);
        }
        Operator::ScmpCmpNe => {
            asm.load(hi_off);
            asm.jump_unless(Cond::Eq, hi, pass);
            asm.load(lo_off);
            asm.jump_if(Cond::Eq, lo, fail);
        }
        Operator::ScmpCmpGt | Operator::ScmpCmpGe => {
            asm.load(hi_off);
            asm.jump_if(Cond::Gt, hi, pass);
            asm.jump_unless(Cond::Eq, hi, fail);
            asm.load(lo_off);
            let cond = if arg.op() == Operator::ScmpCmpGt {
                Cond::Gt
            } else {
                Cond::Ge
            };
            asm.jump_unless(cond, lo, fail);
        }
        Operator::ScmpCmpLt | Operator::ScmpCmpLe => {
            asm.load(hi_off);
            asm.jump_if(Cond::Gt, hi, fail);
            asm.jump_unless(Cond::Eq, hi, pass);
            asm.load(lo_off);
            // a < v  <=>  !(a >= v);  a <= v  <=>  !(a > v)
            let cond = if arg.op() == Operator::ScmpCmpLt {
                Cond::Ge
            } else {
                Cond::Gt
            };
            asm.jump_if(cond, lo, fail);
        }
        Operator::ScmpCmpMaskedEq => {
            // OCI (like libseccomp): `value` is the mask, `valueTwo` the datum.
            let datum = arg.value_two().unwrap_or(0);
            asm.load(hi_off);
            asm.and(hi);
            asm.jump_unless(Cond::Eq, (datum >> 32) as u32, fail);
            asm.load(lo_off);
            asm.and(lo);
            asm.jump_unless(Cond::Eq, datum as u32, fail);
        }
    }
    asm.bind(pass);
}
