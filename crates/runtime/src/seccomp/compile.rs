//! The compiler from an OCI seccomp profile to a classic BPF program.
//!
//! Layout, in program order:
//!
//! ```text
//!   ld arch; jeq ARCH_1 → section 1; jeq ARCH_2 → section 2; …; ret KILL_PROCESS
//! section:  ld nr; [x86_64: jge X32_BIT → x32 section or KILL_PROCESS]
//!           binary search over syscall-number intervals → ret ACTION | rule block
//! block:    per syscall with argument conditions: rule after rule (first match
//!           wins), each an AND of 64-bit comparisons, falling to the default.
//! ```
//!
//! Numbers above the highest one the profile names on an architecture (up
//! to the end of its syscall range) return `ERRNO(ENOSYS)` instead of the
//! default action, unless that action lets the call through: such a syscall
//! is newer than the profile, and ENOSYS is what makes libc fall back to
//! an older call (clone3 → clone, as runc and crun do).
//!
//! Syscalls with the same plain action in consecutive numbers share one
//! interval, so the search depth is log2 of the number of action changes, not
//! of syscalls; the program grows linearly with the profile. The program is
//! emitted backwards (from its end), so every jump target is known when its
//! jump is written; a target more than 255 instructions away (the reach of
//! a conditional jump) gets a nearby `ret` or `ja` stepping stone.

use std::collections::HashMap;

use super::arch::{FilterArch, X32_SYSCALL_BIT};
use super::bpf::*;

/// The errno for syscalls newer than the profile.
const ENOSYS: u32 = libc::ENOSYS as u32;

/// One comparison of a syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cond {
    pub index: usize,
    pub op: Op,
    pub value: u64,
    pub value_two: u64,
}

/// Comparison operators (unsigned 64-bit, as libseccomp compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// A rule: when all conditions hold (or there are none), return `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub conds: Vec<Cond>,
    pub action: u32,
}

/// What the compiler needs: per architecture, the rules of each syscall
/// number in profile order.
pub(crate) struct Plan {
    pub default_action: u32,
    pub bad_arch_action: u32,
    /// Architectures in the order their checks appear.
    pub arches: Vec<ArchRules>,
    pub rules: Vec<Rule>,
}

/// The rules of one architecture: for each syscall number (ascending),
/// the range of `ids` holding its rule indices in profile order.
pub(crate) struct ArchRules {
    pub arch: FilterArch,
    pub groups: Vec<(u32, usize, usize)>,
    pub ids: Vec<usize>,
}

/// A jump destination: an emitted instruction, or "return this action"
/// (materialised as a nearby `ret`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dest {
    At(usize),
    Ret(u32),
}

/// Backward emitter: `rev[p]` is the instruction `p` places before the end.
struct Emitter {
    rev: Vec<Insn>,
    /// Most recent `ret` of each action.
    rets: HashMap<u32, usize>,
}

impl Emitter {
    fn pos(&self) -> usize {
        self.rev.len()
    }

    fn push(&mut self, i: Insn) -> usize {
        self.rev.push(i);
        self.rev.len() - 1
    }

    fn ret(&mut self, action: u32) -> usize {
        let p = self.push(stmt(BPF_RET | BPF_K, action));
        self.rets.insert(action, p);
        p
    }

    fn load(&mut self, offset: u32) -> usize {
        self.push(stmt(BPF_LD | BPF_W | BPF_ABS, offset))
    }

    /// The offset from the next instruction to `target`, if reachable by a
    /// conditional jump.
    fn reach(&self, target: usize) -> Option<u8> {
        u8::try_from(self.pos() - target - 1).ok()
    }

    /// Makes `d` reachable from the next instruction, emitting a `ret` or a
    /// `ja` right here when it is not. Only call right before emitting the
    /// jump that uses it (the inserted instruction must not be fallen into).
    fn near(&mut self, d: Dest) -> usize {
        match d {
            Dest::Ret(a) => match self.rets.get(&a) {
                Some(&p) if self.reach(p).is_some() => p,
                _ => self.ret(a),
            },
            Dest::At(p) if self.reach(p).is_some() => p,
            Dest::At(p) => {
                let off = (self.pos() - p - 1) as u32;
                self.push(stmt(BPF_JMP | BPF_JA, off))
            }
        }
    }

    /// Emits a conditional jump `code k` to `jt`/`jf`.
    fn jump(&mut self, code: u16, k: u32, jt: Dest, jf: Dest) -> usize {
        let mut t = self.near(jt);
        let mut f = self.near(jf);
        // Placing a stepping stone for one may push the other out of reach.
        loop {
            match (self.reach(t), self.reach(f)) {
                (Some(a), Some(b)) => {
                    return self.push(Insn {
                        code: BPF_JMP | code | BPF_K,
                        jt: a,
                        jf: b,
                        k,
                    });
                }
                (None, _) => t = self.near(Dest::At(t)),
                (_, None) => f = self.near(Dest::At(f)),
            }
        }
    }

    /// Emits the test of one condition; returns its entry.
    fn cond(&mut self, c: &Cond, t: Dest, f: Dest) -> usize {
        let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
        let hi = off_arg(c.index, true);
        let lo = off_arg(c.index, false);
        match c.op {
            Op::Eq => self.eq(hi, lo, vhi, vlo, None, t, f),
            Op::Ne => self.eq(hi, lo, vhi, vlo, None, f, t),
            Op::MaskedEq => {
                let (shi, slo) = ((c.value_two >> 32) as u32, c.value_two as u32);
                self.eq(hi, lo, shi, slo, Some((vhi, vlo)), t, f)
            }
            Op::Gt => self.greater(hi, lo, vhi, vlo, BPF_JGT, t, f),
            Op::Ge => self.greater(hi, lo, vhi, vlo, BPF_JGE, t, f),
            Op::Le => self.greater(hi, lo, vhi, vlo, BPF_JGT, f, t),
            Op::Lt => self.greater(hi, lo, vhi, vlo, BPF_JGE, f, t),
        }
    }

    /// `(arg & mask) == v` on both halves (mask all-ones when `None`).
    #[allow(clippy::too_many_arguments)]
    fn eq(
        &mut self,
        hi: u32,
        lo: u32,
        vhi: u32,
        vlo: u32,
        mask: Option<(u32, u32)>,
        t: Dest,
        f: Dest,
    ) -> usize {
        self.jump(BPF_JEQ, vlo, t, f);
        if let Some((_, mlo)) = mask {
            self.push(stmt(BPF_ALU | BPF_AND | BPF_K, mlo));
        }
        let lo_entry = self.load(lo);
        self.jump(BPF_JEQ, vhi, Dest::At(lo_entry), f);
        if let Some((mhi, _)) = mask {
            self.push(stmt(BPF_ALU | BPF_AND | BPF_K, mhi));
        }
        self.load(hi)
    }

    /// `arg > v` (`JGT`) or `arg >= v` (`JGE`): the high words decide unless
    /// equal, then the low words.
    #[allow(clippy::too_many_arguments)]
    fn greater(
        &mut self,
        hi: u32,
        lo: u32,
        vhi: u32,
        vlo: u32,
        low_op: u16,
        t: Dest,
        f: Dest,
    ) -> usize {
        self.jump(low_op, vlo, t, f);
        let lo_entry = self.load(lo);
        let hi_eq = self.jump(BPF_JEQ, vhi, Dest::At(lo_entry), f);
        self.jump(BPF_JGT, vhi, t, Dest::At(hi_eq));
        self.load(hi)
    }

    /// Emits one syscall's rules; returns where the syscall's check starts.
    fn rules(&mut self, rules: &[Rule], ids: &[usize], default: u32) -> Dest {
        // Rules after the first unconditional one never match.
        let end = ids
            .iter()
            .position(|&i| rules[i].conds.is_empty())
            .map_or(ids.len(), |p| p + 1);
        let mut next = Dest::Ret(default);
        for &i in ids[..end].iter().rev() {
            let rule = &rules[i];
            if rule.conds.is_empty() {
                next = Dest::Ret(rule.action);
                continue;
            }
            let mut success = Dest::Ret(rule.action);
            for c in rule.conds.iter().rev() {
                success = Dest::At(self.cond(c, success, next));
            }
            next = success;
        }
        next
    }

    /// Emits a binary search over `intervals` (start number, destination);
    /// the accumulator holds `nr`. Returns the entry.
    fn search(&mut self, intervals: &[(u32, Dest)]) -> Dest {
        if intervals.len() == 1 {
            return intervals[0].1;
        }
        let mid = intervals.len() / 2;
        let upper = self.search(&intervals[mid..]);
        let lower = self.search(&intervals[..mid]);
        Dest::At(self.jump(BPF_JGE, intervals[mid].0, upper, lower))
    }

    /// Emits the section of one architecture; returns its entry.
    fn section(&mut self, plan: &Plan, syscalls: &ArchRules, x32: Option<Dest>) -> usize {
        let default = plan.default_action;
        let mut dests: Vec<(u32, Dest)> = Vec::with_capacity(syscalls.groups.len());
        for &(nr, from, to) in syscalls.groups.iter().rev() {
            dests.push((
                nr,
                self.rules(&plan.rules, &syscalls.ids[from..to], default),
            ));
        }
        dests.reverse();
        // Intervals: [start, next start) → destination; gaps → default.
        let mut intervals: Vec<(u32, Dest)> = vec![(0, Dest::Ret(default))];
        for (nr, d) in dests {
            let last = intervals.last().map(|l| l.1);
            if last != Some(d) {
                if intervals.last().map(|l| l.0) == Some(nr) {
                    intervals.pop();
                }
                intervals.push((nr, d));
            }
            let after = nr.wrapping_add(1);
            if after != 0 && d != Dest::Ret(default) {
                intervals.push((after, Dest::Ret(default)));
            }
        }
        // Newer than the profile: ENOSYS up to the end of the range.
        let allows = matches!(default, ret::ALLOW | ret::LOG);
        if let Some(&(max, _, _)) = syscalls.groups.last()
            && !allows
        {
            let (newer, end) = (max.saturating_add(1), syscalls.arch.syscall_end());
            if newer < end {
                if intervals.last().map(|l| l.0) == Some(newer) {
                    intervals.pop();
                }
                intervals.push((newer, Dest::Ret(ret::ERRNO | ENOSYS)));
                intervals.push((end, Dest::Ret(default)));
            }
        }
        // Drop interval starts that do not change the destination.
        intervals.dedup_by(|b, a| a.1 == b.1);
        let entry = self.search(&intervals);
        let entry = match x32 {
            Some(x32) => Dest::At(self.jump(BPF_JGE, X32_SYSCALL_BIT, x32, entry)),
            None => entry,
        };
        // Fall into the search (or jump to a single destination).
        let entry = self.near(entry);
        if entry + 1 != self.pos() {
            self.push(stmt(BPF_JMP | BPF_JA, (self.pos() - entry - 1) as u32));
        }
        self.load(OFF_NR)
    }
}

/// Compiles a plan to a program.
pub(crate) fn emit(plan: &Plan) -> Vec<Insn> {
    let mut e = Emitter {
        rev: Vec::with_capacity(64 + plan.rules.len() * 8),
        rets: HashMap::new(),
    };
    let has_x32 = plan.arches.iter().any(|a| a.arch == FilterArch::X32);
    let mut entries: Vec<(u32, usize)> = Vec::new();
    let mut x32_entry = None;
    // Sections, last first. x32 shares x86_64's audit arch and is reached
    // from its section.
    for syscalls in plan.arches.iter().rev() {
        let arch = syscalls.arch;
        match arch {
            FilterArch::X32 => x32_entry = Some(e.section(plan, syscalls, None)),
            FilterArch::X86_64 => {
                let x32 = match x32_entry {
                    Some(p) => Dest::At(p),
                    None => Dest::Ret(plan.bad_arch_action),
                };
                let p = e.section(plan, syscalls, Some(x32));
                entries.push((arch.audit(), p));
            }
            _ => {
                let p = e.section(plan, syscalls, None);
                entries.push((arch.audit(), p));
            }
        }
    }
    // x32 without x86_64: its own check of the shared audit arch.
    if has_x32
        && !plan.arches.iter().any(|a| a.arch == FilterArch::X86_64)
        && let Some(p) = x32_entry
    {
        entries.push((FilterArch::X32.audit(), p));
    }
    // Arch dispatch, last check first.
    let mut next = Dest::Ret(plan.bad_arch_action);
    for (audit, p) in entries {
        next = Dest::At(e.jump(BPF_JEQ, audit, Dest::At(p), next));
    }
    let entry = e.near(next);
    if entry + 1 != e.pos() {
        e.push(stmt(BPF_JMP | BPF_JA, (e.pos() - entry - 1) as u32));
    }
    e.load(OFF_ARCH);
    e.rev.reverse();
    e.rev
}
