//! cgroup v2 device rules: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! attached to the cgroup (v2 has no devices.allow/deny files).
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }` and checks the rules from the last to the first, so that a
//! later rule overrides an earlier one as in v1 (`deny all` then allows):
//! an allow rule matches when it grants every requested access, a deny rule
//! when it covers any of them. A request no rule matches is allowed, as in
//! a fresh v1 cgroup.

use std::fs::File;
use std::os::fd::AsFd as _;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// `BPF_DEVCG_DEV_*` and `BPF_DEVCG_ACC_*`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction, as `struct bpf_insn` (8 bytes, little-endian
/// register nibbles: dst low, src high).
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst & 0xf) << 8)
        | (u64::from(src & 0xf) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

// Opcodes used.
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const JMP_EXIT: u8 = 0x95;

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |acc, c| {
        acc | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// Builds the program for `rules` (already validated by the planner).
pub(crate) fn program(rules: &[LinuxDeviceCgroup]) -> Vec<u64> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),        // r2 = access_type
        insn(ALU64_MOV_X, 3, 2, 0, 0),      // r3 = r2
        insn(ALU32_RSH_K, 3, 0, 0, 16),     // r3 = access
        insn(ALU32_AND_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_MEM_W, 4, 1, 4, 0),        // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),        // r5 = minor
    ];
    for rule in rules.iter().rev() {
        let mut block = Vec::new();
        // Each check jumps past the block when it fails; offsets are fixed
        // up once the block length is known (`i16::MIN` marks them).
        match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::B => block.push(insn(JMP_JNE_K, 2, 0, i16::MIN, DEV_BLOCK)),
            LinuxDeviceType::C => block.push(insn(JMP_JNE_K, 2, 0, i16::MIN, DEV_CHAR)),
            _ => {}
        }
        if let Some(m) = rule.major().filter(|m| *m >= 0) {
            block.push(insn(JMP_JNE_K, 4, 0, i16::MIN, m as i32));
        }
        if let Some(m) = rule.minor().filter(|m| *m >= 0) {
            block.push(insn(JMP_JNE_K, 5, 0, i16::MIN, m as i32));
        }
        let access = rule
            .access()
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or("rwm");
        let bits = access_bits(access);
        block.push(insn(ALU64_MOV_X, 1, 3, 0, 0));
        if rule.allow() {
            // Every requested bit granted: (access & !bits) == 0.
            block.push(insn(ALU32_AND_K, 1, 0, 0, !bits & 0x7));
            block.push(insn(JMP_JNE_K, 1, 0, i16::MIN, 0));
        } else {
            // Any requested bit covered: (access & bits) != 0.
            block.push(insn(ALU32_AND_K, 1, 0, 0, bits));
            block.push(insn(JMP_JEQ_K, 1, 0, i16::MIN, 0));
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if (*ins >> 16) as u16 == i16::MIN as u16 {
                let off = (len - i - 1) as u64;
                *ins = (*ins & !(0xffff << 16)) | (off << 16);
            }
        }
        p.extend(block);
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory
/// `dir`, replacing the one a previous `apply` attached.
pub(crate) fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let prog = program(rules);
    let fail = |source| CgroupError::Write {
        path: dir.to_owned(),
        value: "(cgroup device eBPF program)".to_owned(),
        source,
    };
    let cgroup = File::open(dir).map_err(fail)?;
    let prog_fd = crate::sys::seccomp::load_cgroup_device_program(&prog).map_err(fail)?;
    crate::sys::seccomp::attach_cgroup_device_program(cgroup.as_fd(), prog_fd.as_fd()).map_err(fail)
}
