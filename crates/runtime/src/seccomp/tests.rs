//! Compiler tests against the BPF interpreter: every action, every
//! operator (64-bit values, both halves), architectures, and errors.

use oci_spec::runtime::LinuxSeccomp;

use super::arch::{FilterArch, X32_SYSCALL_BIT};
use super::interp::{Data, run};
use super::*;

const X86_64: u32 = 0xc000_003e;
const I386: u32 = 0x4000_0003;
const AARCH64: u32 = 0xc000_00b7;

fn profile(json: &str) -> LinuxSeccomp {
    parse_profile(json).unwrap()
}

fn prog(json: &str) -> SeccompProgram {
    compile(&profile(json)).unwrap()
}

fn nr(name: &str) -> i32 {
    FilterArch::native().syscall(name).unwrap() as i32
}

fn verdict(p: &SeccompProgram, name: &str, args: [u64; 6]) -> u32 {
    let d = Data {
        nr: nr(name),
        arch: FilterArch::native().audit(),
        ip: 0,
        args,
    };
    run(p.instructions(), &d).0
}

fn raw(p: &SeccompProgram, arch: u32, nr: i32) -> u32 {
    run(
        p.instructions(),
        &Data {
            nr,
            arch,
            ..Data::default()
        },
    )
    .0
}

#[test]
fn every_action_has_its_return_value() {
    let p = prog(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["gettid"], "action": "SCMP_ACT_KILL_THREAD"},
        {"names": ["getuid"], "action": "SCMP_ACT_TRAP"},
        {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
        {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getegid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
        {"names": ["getpgrp"], "action": "SCMP_ACT_LOG"},
        {"names": ["getsid"], "action": "SCMP_ACT_ALLOW"}
    ]}"#,
    );
    let z = [0; 6];
    assert_eq!(verdict(&p, "getpid", z), 0);
    assert_eq!(verdict(&p, "getppid", z), 0x8000_0000);
    assert_eq!(verdict(&p, "gettid", z), 0);
    assert_eq!(verdict(&p, "getuid", z), 0x0003_0000);
    assert_eq!(verdict(&p, "getgid", z), 0x0005_0000 | 42);
    assert_eq!(verdict(&p, "geteuid", z), 0x0005_0000 | 1);
    assert_eq!(verdict(&p, "getegid", z), 0x7ff0_0000 | 7);
    assert_eq!(verdict(&p, "getpgrp", z), 0x7ffc_0000);
    assert_eq!(verdict(&p, "getsid", z), 0x7fff_0000);
    assert_eq!(verdict(&p, "read", z), 0x7fff_0000);
}

#[test]
fn default_errno_and_unknown_names() {
    let p = prog(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["read", "no_such_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"}
    ]}"#,
    );
    assert_eq!(verdict(&p, "read", [0; 6]), 0x7fff_0000);
    assert_eq!(verdict(&p, "write", [0; 6]), 0x0005_0000 | 38);
    // Numbers past the architecture's range get the default.
    assert_eq!(
        raw(&p, FilterArch::native().audit(), 5000),
        0x0005_0000 | 38
    );
}

/// The highest number `names` resolve to on x86_64.
fn highest(names: &[&str]) -> u32 {
    names
        .iter()
        .filter_map(|n| FilterArch::X86_64.syscall(n))
        .max()
        .unwrap()
}

#[test]
fn syscalls_newer_than_the_profile_get_enosys() {
    let enosys = 0x0005_0000 | 38;
    let p = prog(
        r#"{"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": [
        {"names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO"}
    ]}"#,
    );
    let max = highest(&["read", "getpid", "mount"]);
    // Below the highest named number: the default, whether named or not.
    assert_eq!(raw(&p, X86_64, (max - 1) as i32), 0x8000_0000);
    assert_eq!(raw(&p, X86_64, max as i32), 0x0005_0001);
    // Above it, to the end of the range: ENOSYS.
    for nr in [max + 1, max + 2, 450, 1023] {
        assert_eq!(raw(&p, X86_64, nr as i32), enosys, "{nr}");
    }
    // Past the range, and nr -1: the default.
    assert_eq!(raw(&p, X86_64, 1024), 0x8000_0000);
    assert_eq!(raw(&p, X86_64, 0x0f_0002), 0x8000_0000);
    assert_eq!(raw(&p, X86_64, -1), 0x8000_0000);
    // The same per architecture, from each one's own highest number
    // (mount is 21 on i386, getpid 20, read 3).
    assert_eq!(raw(&p, I386, 20), 0x7fff_0000);
    assert_eq!(raw(&p, I386, 21), 0x0005_0001);
    assert_eq!(raw(&p, I386, 22), enosys);
    assert_eq!(raw(&p, I386, 1024), 0x8000_0000);
    let x32 = |nr: u32| (nr | X32_SYSCALL_BIT) as i32;
    assert_eq!(raw(&p, X86_64, x32(max)), 0x0005_0001);
    assert_eq!(raw(&p, X86_64, x32(max - 1)), 0x8000_0000);
    assert_eq!(raw(&p, X86_64, x32(max + 1)), enosys);
    assert_eq!(raw(&p, X86_64, x32(1024)), 0x8000_0000);
}

#[test]
fn newer_syscalls_keep_a_permissive_default() {
    for (default, ret) in [
        ("SCMP_ACT_ALLOW", 0x7fff_0000),
        ("SCMP_ACT_LOG", 0x7ffc_0000),
    ] {
        let p = prog(&format!(
            r#"{{"defaultAction": "{default}", "syscalls": [
            {{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}}
        ]}}"#
        ));
        let max = highest(&["mount"]);
        assert_eq!(raw(&p, X86_64, (max + 1) as i32), ret, "{default}");
        assert_eq!(raw(&p, X86_64, 1000), ret, "{default}");
    }
    // A profile naming nothing has no "newer" syscalls.
    let p = prog(r#"{"defaultAction": "SCMP_ACT_ERRNO"}"#);
    assert_eq!(raw(&p, X86_64, 1000), 0x0005_0001);
}

/// Checks `op` against a reference on values around the interesting 64-bit
/// boundaries (high word differs, low word differs, equal).
fn check_op(op: &str, value: u64, value_two: Option<u64>, reference: impl Fn(u64) -> bool) {
    let two = value_two
        .map(|v| format!(r#", "valueTwo": {v}"#))
        .unwrap_or_default();
    let p = prog(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{{"index": 3, "value": {value}{two}, "op": "{op}"}}]}}
    ]}}"#
    ));
    let probes = [
        0,
        1,
        value,
        value.wrapping_sub(1),
        value.wrapping_add(1),
        value ^ (1 << 32),
        value ^ 1,
        value.wrapping_add(1 << 32),
        value.wrapping_sub(1 << 32),
        value | 0xffff_ffff,
        value & !0xffff_ffff,
        u64::MAX,
        0xffff_ffff,
        0x1_0000_0000,
    ];
    for a in probes {
        let mut args = [0u64; 6];
        args[3] = a;
        let want = if reference(a) {
            0x7fff_0000
        } else {
            0x0005_0001
        };
        assert_eq!(
            verdict(&p, "ioctl", args),
            want,
            "{op} {value:#x} on {a:#x}"
        );
        // Other arguments do not matter.
        args[2] = a ^ 0xdead;
        assert_eq!(
            verdict(&p, "ioctl", args),
            want,
            "{op} {value:#x} on {a:#x}"
        );
    }
}

#[test]
fn every_operator_compares_64_bit_values() {
    for v in [
        0u64,
        5,
        0xffff_ffff,
        0x1_0000_0000,
        0x1234_5678_9abc_def0,
        u64::MAX - 1,
    ] {
        check_op("SCMP_CMP_EQ", v, None, |a| a == v);
        check_op("SCMP_CMP_NE", v, None, |a| a != v);
        check_op("SCMP_CMP_LT", v, None, |a| a < v);
        check_op("SCMP_CMP_LE", v, None, |a| a <= v);
        check_op("SCMP_CMP_GT", v, None, |a| a > v);
        check_op("SCMP_CMP_GE", v, None, |a| a >= v);
    }
    for (mask, want) in [
        (0xff, 0x12),
        (0xffff_0000_0000_00ff, 0x1234_0000_0000_0012),
        (0x7e02_0000, 0),
    ] {
        check_op("SCMP_CMP_MASKED_EQ", mask, Some(want), |a| a & mask == want);
    }
}

#[test]
fn conditions_of_a_rule_are_anded_and_rules_tried_in_order() {
    let p = prog(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 4, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 4}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 4096, "op": "SCMP_CMP_LE"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_TRAP"},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW"}
    ]}"#,
    );
    assert_eq!(
        verdict(&p, "mmap", [0, 8192, 7, 0, 0, 0]),
        0x0005_000d,
        "first rule: both hold"
    );
    assert_eq!(
        verdict(&p, "mmap", [1, 4096, 7, 0, 0, 0]),
        0x7fff_0000,
        "second rule"
    );
    assert_eq!(
        verdict(&p, "mmap", [0, 8192, 3, 0, 0, 0]),
        0x0003_0000,
        "unconditional third"
    );
}

#[test]
fn conditions_on_one_argument_are_ored_like_runc() {
    let p = prog(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
    ]}"#,
    );
    assert_eq!(verdict(&p, "personality", [0; 6]), 0x7fff_0000);
    assert_eq!(verdict(&p, "personality", [8, 0, 0, 0, 0, 0]), 0x7fff_0000);
    assert_eq!(verdict(&p, "personality", [9, 0, 0, 0, 0, 0]), 0x0005_0001);
}

#[test]
fn architectures_are_checked_first() {
    let p = prog(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}
    ]}"#,
    );
    // getpid is 39 on x86_64, 20 on i386.
    assert_eq!(raw(&p, X86_64, 39), 0x0005_0001);
    assert_eq!(raw(&p, X86_64, 20), 0x7fff_0000);
    assert_eq!(raw(&p, I386, 20), 0x0005_0001);
    assert_eq!(raw(&p, I386, 39), 0x7fff_0000);
    // Unlisted arch, and x32 syscalls when x32 is not listed: killed.
    assert_eq!(raw(&p, AARCH64, 172), 0x8000_0000);
    assert_eq!(raw(&p, X86_64, (39 | X32_SYSCALL_BIT) as i32), 0x8000_0000);

    let p = prog(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X32"], "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}
    ]}"#,
    );
    assert_eq!(raw(&p, X86_64, (39 | X32_SYSCALL_BIT) as i32), 0x0005_0001);
    assert_eq!(raw(&p, X86_64, (40 | X32_SYSCALL_BIT) as i32), 0x7fff_0000);
    assert_eq!(raw(&p, X86_64, 39), 0x0005_0001);
}

#[test]
fn invalid_profiles_name_the_field() {
    let cases = [
        (
            r#"{"defaultAction": "SCMP_ACT_NOPE"}"#,
            "invalid seccomp profile at defaultAction",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}"#,
            "invalid seccomp profile at architectures[0]",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}"#,
            "invalid seccomp profile at syscalls[0].args[0].op",
        ),
    ];
    for (json, want) in cases {
        let e = parse_profile(json).unwrap_err();
        assert!(e.to_string().starts_with(want), "{json}: {e}");
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
    let cases = [
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            "invalid linux.seccomp.syscalls[0].args[0].index: 6 is above 5",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_MIPS"]}"#,
            "invalid linux.seccomp.architectures[0]: SCMP_ARCH_MIPS is not supported",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]}"#,
            "invalid linux.seccomp.syscalls[0].errnoRet: 5000 is above 4095",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#,
            "invalid linux.seccomp.defaultErrnoRet: 70000 is above 4095",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_MASKED_EQ"}]}]}"#,
            "invalid linux.seccomp.syscalls[0].args[0].valueTwo",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY is not supported",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not supported",
        ),
    ];
    for (json, want) in cases {
        let e = compile(&profile(json)).unwrap_err();
        assert!(e.to_string().starts_with(want), "{json}: {e}");
    }
}

#[test]
fn flags_are_passed_through() {
    let p = prog(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
    );
    assert_eq!(p.flags(), 7);
}

#[test]
fn long_profiles_need_stepping_stones_and_stay_linear() {
    // 300 syscalls, each with its own conditional rule: blocks far from the
    // search tree exercise the far-jump path.
    let names: Vec<String> = syscalls::x86_64::Sysno::iter()
        .take(300)
        .map(|s| format!("\"{}\"", s.name()))
        .collect();
    let mut rules = Vec::new();
    for (i, n) in names.iter().enumerate() {
        rules.push(format!(
            r#"{{"names": [{n}], "action": "SCMP_ACT_ERRNO", "errnoRet": {}, "args": [{{"index": 1, "value": {i}, "op": "SCMP_CMP_EQ"}}]}}"#,
            i + 1
        ));
    }
    let p = prog(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{}]}}"#,
        rules.join(",")
    ));
    assert!(
        p.instructions().len() < 300 * 12,
        "{} instructions",
        p.instructions().len()
    );
    for (i, s) in syscalls::x86_64::Sysno::iter().take(300).enumerate() {
        let mut args = [0u64; 6];
        args[1] = i as u64;
        let d = Data {
            nr: s.id(),
            arch: X86_64,
            ip: 0,
            args,
        };
        assert_eq!(
            run(p.instructions(), &d).0,
            0x0005_0000 | (i as u32 + 1),
            "{}",
            s.name()
        );
        args[1] = i as u64 + (1 << 32);
        let d = Data {
            nr: s.id(),
            arch: X86_64,
            ip: 0,
            args,
        };
        assert_eq!(run(p.instructions(), &d).0, 0x7fff_0000, "{}", s.name());
    }
}

#[test]
fn default_profile_allows_the_usual_and_refuses_the_dangerous() {
    let p = compile(&default_profile().unwrap()).unwrap();
    let allow = 0x7fff_0000;
    let eperm = 0x0005_0001;
    for name in [
        "read",
        "write",
        "openat",
        "execve",
        "mmap",
        "futex",
        "exit_group",
        "getdents64",
        "wait4",
        "rt_sigaction",
    ] {
        assert_eq!(verdict(&p, name, [0; 6]), allow, "{name}");
    }
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "kexec_load",
        "init_module",
        "reboot",
        "pivot_root",
        "swapon",
        "perf_event_open",
        "open_by_handle_at",
        "userfaultfd",
        "fsopen",
        "move_mount",
    ] {
        assert_eq!(verdict(&p, name, [0; 6]), eperm, "{name}");
    }
    // clone without namespace flags is allowed, with CLONE_NEWUSER refused;
    // clone3 reports ENOSYS so that libc falls back to clone.
    assert_eq!(verdict(&p, "clone", [0x0111_0011, 0, 0, 0, 0, 0]), allow);
    assert_eq!(
        verdict(&p, "clone", [0x1000_0000 | 0x11, 0, 0, 0, 0, 0]),
        eperm
    );
    assert_eq!(verdict(&p, "clone3", [0; 6]), 0x0005_0000 | 38);
    assert_eq!(verdict(&p, "personality", [0; 6]), allow);
    assert_eq!(
        verdict(&p, "personality", [0x0040_0000, 0, 0, 0, 0, 0]),
        eperm
    );
    assert_eq!(verdict(&p, "socket", [2, 1, 0, 0, 0, 0]), allow);
    assert_eq!(verdict(&p, "socket", [40, 1, 0, 0, 0, 0]), eperm);
    // i386 through int 0x80: filtered too (getpid = 20, mount = 21).
    assert_eq!(raw(&p, I386, 20), allow);
    assert_eq!(raw(&p, I386, 21), eperm);
    // Numbers above every one the profile names: ENOSYS, not EPERM.
    assert_eq!(raw(&p, X86_64, 1000), 0x0005_0000 | 38);
    assert_eq!(raw(&p, I386, 1000), 0x0005_0000 | 38);
}

/// Prints the compile time of the default profile (the minimum over many
/// runs, as the shared machine is noisy). Run with `--release --no-capture`
/// for the figure in docs/benchmarks.md.
#[test]
fn default_profile_compile_time() {
    fn min_time(runs: u32, mut f: impl FnMut()) -> std::time::Duration {
        (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    }
    let profile = default_profile().unwrap();
    let len = compile(&profile).unwrap().instructions().len();
    let compile_t = min_time(300, || {
        compile(&profile).unwrap();
    });
    let parse_t = min_time(300, || {
        default_profile().unwrap();
    });
    let tables_t = min_time(300, || {
        for a in [FilterArch::X86_64, FilterArch::X86, FilterArch::X32] {
            std::hint::black_box(super::arch::SyscallTable::new(a));
        }
    });
    eprintln!(
        "default profile: {len} instructions; compile {compile_t:?} (of which name tables {tables_t:?}); JSON parse {parse_t:?}; minimum of 300 runs"
    );
    let p = compile(&profile).unwrap();
    let d = Data {
        nr: nr("read"),
        arch: X86_64,
        ..Data::default()
    };
    eprintln!(
        "instructions executed for read(2): {}",
        run(p.instructions(), &d).1
    );
}
