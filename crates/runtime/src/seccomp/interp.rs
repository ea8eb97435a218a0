//! A classic BPF interpreter for the subset the compiler emits, to check
//! compiled programs' verdicts in tests (the kernel's own checker rejects
//! what this one rejects: backward jumps, reading outside `seccomp_data`).

use super::bpf::*;

/// `struct seccomp_data`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Data {
    pub nr: i32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    fn word(&self, off: u32) -> u32 {
        match off {
            0 => self.nr as u32,
            4 => self.arch,
            8 => self.ip as u32,
            12 => (self.ip >> 32) as u32,
            16..=63 if off.is_multiple_of(4) => {
                let i = ((off - 16) / 8) as usize;
                let a = self.args[i];
                if (off - 16).is_multiple_of(8) {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => panic!("load outside seccomp_data at {off}"),
        }
    }
}

/// Runs `prog` on `data`; returns the verdict and the number of
/// instructions executed.
pub(crate) fn run(prog: &[Insn], data: &Data) -> (u32, usize) {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let i = prog
            .get(pc)
            .unwrap_or_else(|| panic!("fell off the program at {pc}"));
        steps += 1;
        pc += 1;
        match i.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => a = data.word(i.k),
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
            c if c == BPF_RET | BPF_K => return (i.k, steps),
            c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
            c if c & 0x07 == BPF_JMP => {
                let cond = match c & 0xf0 {
                    BPF_JEQ => a == i.k,
                    BPF_JGT => a > i.k,
                    BPF_JGE => a >= i.k,
                    other => panic!("unexpected jump op {other:#x}"),
                };
                pc += usize::from(if cond { i.jt } else { i.jf });
            }
            other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
        }
    }
}
