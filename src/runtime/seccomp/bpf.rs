//! A tiny classic-BPF assembler for seccomp filters.
//!
//! The compiler in `mod.rs` emits instructions with symbolic forward labels; [`Asm::assemble`]
//! lays them out and resolves the labels. A conditional jump only has 8-bit offsets (`jt`/`jf`
//! reach at most 255 instructions ahead), so when a target is farther the assembler routes that
//! branch through a trampoline: an unconditional `BPF_JA` (32-bit offset) placed right after the
//! jump. Layout is repeated until every jump fits. All jumps are forward, as the kernel requires.

use super::SeccompError;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The kernel's `struct sock_fprog`: what seccomp(2) takes.
#[repr(C)]
pub(super) struct SockFprog {
    pub len: u16,
    pub filter: *const SockFilter,
}

/// The kernel refuses filters longer than this (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

pub(super) const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
pub(super) const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub(super) const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
pub(super) const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Conditions of `BPF_JMP | <op> | BPF_K` instructions (comparisons are unsigned 32-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `A == k`
    Eq,
    /// `A > k`
    Gt,
    /// `A >= k`
    Ge,
}

impl Cond {
    pub(super) fn code(self) -> u16 {
        match self {
            Cond::Eq => 0x15, // BPF_JMP | BPF_JEQ | BPF_K
            Cond::Gt => 0x25, // BPF_JMP | BPF_JGT | BPF_K
            Cond::Ge => 0x35, // BPF_JMP | BPF_JGE | BPF_K
        }
    }
}

/// A forward jump target; bind it exactly once, after every jump to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

enum Op {
    Load(u32),
    And(u32),
    Jump {
        cond: Cond,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Goto(Label),
    Ret(u32),
    Bind(Label),
}

impl Op {
    fn is_insn(&self) -> bool {
        !matches!(self, Op::Bind(_))
    }
}

/// Collects instructions with symbolic labels; see the module doc.
#[derive(Default)]
pub struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// The next instruction emitted is the target of `label`.
    pub fn bind(&mut self, label: Label) {
        self.ops.push(Op::Bind(label));
    }

    /// `A = seccomp_data[offset..offset + 4]`
    pub fn load(&mut self, offset: u32) {
        self.ops.push(Op::Load(offset));
    }

    /// `A &= k`
    pub fn and(&mut self, k: u32) {
        self.ops.push(Op::And(k));
    }

    /// `if A <cond> k goto jt else goto jf`
    pub fn jump(&mut self, cond: Cond, k: u32, jt: Label, jf: Label) {
        self.ops.push(Op::Jump { cond, k, jt, jf });
    }

    /// `if A <cond> k goto target`, else fall through.
    pub fn jump_if(&mut self, cond: Cond, k: u32, target: Label) {
        let next = self.label();
        self.jump(cond, k, target, next);
        self.bind(next);
    }

    /// `if !(A <cond> k) goto target`, else fall through.
    pub fn jump_unless(&mut self, cond: Cond, k: u32, target: Label) {
        let next = self.label();
        self.jump(cond, k, next, target);
        self.bind(next);
    }

    /// `return k` (a `SECCOMP_RET_*` value)
    pub fn ret(&mut self, k: u32) {
        self.ops.push(Op::Ret(k));
    }

    /// Resolve labels, inserting long jumps where needed, and check the kernel's size limit.
    pub fn assemble(mut self) -> Result<Vec<SockFilter>, SeccompError> {
        // Each pass gives every too-far conditional jump a trampoline right after it; a rewritten
        // jump then targets its own trampolines at offsets 0 and 1, which no later insertion can
        // separate from it, so every jump is rewritten at most once and this terminates.
        loop {
            let positions = self.layout()?;
            let len = self.ops.iter().filter(|op| op.is_insn()).count();
            if len > BPF_MAXINSNS {
                return Err(SeccompError::TooLong { len });
            }
            let mut rewritten = false;
            let mut out = Vec::with_capacity(self.ops.len() + 16);
            let mut pc = 0usize;
            for op in std::mem::take(&mut self.ops) {
                if let Op::Jump { cond, k, jt, jf } = op {
                    let far =
                        |l: Label| offset(&positions, pc, l).map(|off| off > u8::MAX as usize);
                    let (jt_far, jf_far) = (far(jt)?, far(jf)?);
                    if jt_far || jf_far {
                        rewritten = true;
                        let t = if jt_far { self.label() } else { jt };
                        let f = if jf_far { self.label() } else { jf };
                        out.push(Op::Jump {
                            cond,
                            k,
                            jt: t,
                            jf: f,
                        });
                        if jt_far {
                            out.extend([Op::Bind(t), Op::Goto(jt)]);
                        }
                        if jf_far {
                            out.extend([Op::Bind(f), Op::Goto(jf)]);
                        }
                        pc += 1;
                        continue;
                    }
                    out.push(op);
                } else {
                    out.push(op);
                }
                if out.last().is_some_and(Op::is_insn) {
                    pc += 1;
                }
            }
            self.ops = out;
            if !rewritten {
                break;
            }
        }

        let positions = self.layout()?;
        let mut prog = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let pc = prog.len();
            let insn = match *op {
                Op::Bind(_) => continue,
                Op::Load(offset) => SockFilter {
                    code: LD_W_ABS,
                    jt: 0,
                    jf: 0,
                    k: offset,
                },
                Op::And(k) => SockFilter {
                    code: ALU_AND_K,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Op::Ret(k) => SockFilter {
                    code: RET_K,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Op::Goto(target) => {
                    let off = offset(&positions, pc, target)?;
                    SockFilter {
                        code: JMP_JA,
                        jt: 0,
                        jf: 0,
                        k: off as u32,
                    }
                }
                Op::Jump { cond, k, jt, jf } => {
                    let short = |l: Label| {
                        u8::try_from(offset(&positions, pc, l)?).map_err(|_| {
                            SeccompError::Internal("a conditional jump is still too long".into())
                        })
                    };
                    SockFilter {
                        code: cond.code(),
                        jt: short(jt)?,
                        jf: short(jf)?,
                        k,
                    }
                }
            };
            prog.push(insn);
        }
        Ok(prog)
    }

    /// Instruction index of every label.
    fn layout(&self) -> Result<Vec<usize>, SeccompError> {
        let mut positions = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for op in &self.ops {
            match op {
                Op::Bind(Label(l)) => positions[*l] = pc,
                _ => pc += 1,
            }
        }
        if positions.contains(&usize::MAX) {
            return Err(SeccompError::Internal("a label was never bound".into()));
        }
        Ok(positions)
    }
}

/// Jump offset from the instruction at `pc` to `target` (BPF counts from the next instruction).
fn offset(positions: &[usize], pc: usize, target: Label) -> Result<usize, SeccompError> {
    positions[target.0]
        .checked_sub(pc + 1)
        .ok_or_else(|| SeccompError::Internal("backward jump".into()))
}

/// A classic-BPF interpreter for the subset the assembler emits, to check programs in tests
/// (including programs for the architecture this machine is not).
#[cfg(test)]
pub fn run(prog: &[SockFilter], data: &[u8; 64]) -> u32 {
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let insn = prog[pc];
        pc += 1;
        match insn.code {
            LD_W_ABS => {
                let k = insn.k as usize;
                a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            }
            ALU_AND_K => a &= insn.k,
            JMP_JA => pc += insn.k as usize,
            RET_K => return insn.k,
            code => {
                let taken = match code {
                    0x15 => a == insn.k,
                    0x25 => a > insn.k,
                    0x35 => a >= insn.k,
                    _ => panic!("unexpected BPF opcode {code:#x}"),
                };
                pc += if taken { insn.jt } else { insn.jf } as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_jumps_get_trampolines() {
        let mut asm = Asm::new();
        let far = asm.label();
        asm.load(0);
        asm.jump_if(Cond::Eq, 7, far);
        for i in 0..600 {
            asm.ret(i);
        }
        asm.bind(far);
        asm.ret(0xdead);
        let prog = asm.assemble().unwrap();
        assert_eq!(prog.len(), 1 + 2 + 600 + 1, "one trampoline added");
        let mut data = [0u8; 64];
        data[0] = 7;
        assert_eq!(run(&prog, &data), 0xdead);
        data[0] = 8;
        assert_eq!(run(&prog, &data), 0);
    }

    #[test]
    fn too_long_is_an_error() {
        let mut asm = Asm::new();
        for i in 0..=BPF_MAXINSNS as u32 {
            asm.ret(i);
        }
        assert!(matches!(
            asm.assemble(),
            Err(SeccompError::TooLong { len: 4097 })
        ));
    }
}
