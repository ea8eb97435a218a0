//! Maps `linux.resources` to cgroup file writes.
//!
//! One code path serves both versions: [`plan`] turns the OCI resources into an
//! ordered list of [`Step`]s naming a controller, a file and a value, and only
//! the file names and value encodings differ between v1 and v2. The caller
//! ([`super::Cgroup::apply`]) resolves each controller to a directory and
//! writes.

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNetwork,
    LinuxResources,
};

use super::CgroupError;

/// The cgroup version whose file names and encodings a plan uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// Pseudo-controller of `unified` keys: written to the cgroup2 directory.
pub(crate) const UNIFIED: &str = "unified";

/// One file write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The controller owning the file (`memory`, `cpu`, ...; [`UNIFIED`]).
    pub controller: &'static str,
    /// File name inside the cgroup directory.
    pub file: String,
    /// What to write.
    pub value: String,
    /// The `linux.resources` field this comes from, for errors.
    pub field: &'static str,
    /// When true, a failure (or a missing controller) is a warning only.
    pub best_effort: bool,
    /// File and value to write instead when `file` does not exist (BFQ's
    /// weight files, which replace CFQ's).
    pub alt: Option<(String, String)>,
}

/// A unit of work of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Write(Setting),
    /// v1 memory limit and memory+swap limit: the kernel requires
    /// `limit <= memsw` at every moment, so the order depends on the current
    /// values; the writer tries one order, then the other.
    MemoryPair {
        limit: Setting,
        swap: Setting,
    },
    /// v2 device rules (the container's, then the defaults), enforced by an
    /// eBPF program attached to the cgroup.
    DeviceProgram(Vec<LinuxDeviceCgroup>),
}

fn set(controller: &'static str, file: &str, value: String, field: &'static str) -> Step {
    Step::Write(Setting {
        controller,
        file: file.to_owned(),
        value,
        field,
        best_effort: false,
        alt: None,
    })
}

fn best_effort(controller: &'static str, file: &str, value: String, field: &'static str) -> Step {
    Step::Write(Setting {
        controller,
        file: file.to_owned(),
        value,
        field,
        best_effort: true,
        alt: None,
    })
}

fn with_alt(step: Step, file: &str, value: String) -> Step {
    match step {
        Step::Write(mut s) => {
            s.alt = Some((file.to_owned(), value));
            Step::Write(s)
        }
        other => other,
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::InvalidResource {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Plans the writes for `res` on cgroup `version`. Pure: no I/O.
pub(crate) fn plan(res: &LinuxResources, version: Version) -> Result<Vec<Step>, CgroupError> {
    let mut steps = Vec::new();
    if let Some(mem) = res.memory() {
        plan_memory(mem, version, &mut steps)?;
    }
    if let Some(cpu) = res.cpu() {
        plan_cpu(cpu, version, &mut steps)?;
    }
    if let Some(pids) = res.pids() {
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_owned()
        };
        steps.push(set("pids", "pids.max", v, "pids.limit"));
    }
    if let Some(bio) = res.block_io() {
        plan_block_io(bio, version, &mut steps)?;
    }
    if let Some(hp) = res.hugepage_limits() {
        for limit in hp {
            let size = limit.page_size();
            let ok = size.len() > 2
                && (size.ends_with("KB") || size.ends_with("MB") || size.ends_with("GB"))
                && size[..size.len() - 2].bytes().all(|b| b.is_ascii_digit());
            if !ok {
                return Err(invalid(
                    "hugepageLimits.pageSize",
                    format!("{size:?} is not a size like 2MB or 1GB"),
                ));
            }
            let (file, value) = match version {
                Version::V1 => (
                    format!("hugetlb.{size}.limit_in_bytes"),
                    limit.limit().to_string(),
                ),
                Version::V2 => (format!("hugetlb.{size}.max"), max_or(limit.limit())),
            };
            steps.push(set("hugetlb", &file, value, "hugepageLimits"));
        }
    }
    if let Some(net) = res.network() {
        plan_network(net, version, &mut steps);
    }
    if let Some(rdma) = res.rdma() {
        let mut devices: Vec<_> = rdma.iter().collect();
        devices.sort_by(|a, b| a.0.cmp(b.0));
        for (dev, r) in devices {
            let mut v = dev.clone();
            if let Some(h) = r.hca_handles() {
                v.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = r.hca_objects() {
                v.push_str(&format!(" hca_object={o}"));
            }
            steps.push(set("rdma", "rdma.max", v, "rdma"));
        }
    }
    if let Some(devices) = res.devices() {
        plan_devices(devices, version, &mut steps)?;
    }
    if let Some(unified) = res.unified() {
        let mut keys: Vec<_> = unified.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in keys {
            if key.is_empty()
                || key.contains('/')
                || key.starts_with('.')
                || !key.contains('.')
                || key.starts_with("cgroup.procs")
                || key.starts_with("cgroup.threads")
            {
                return Err(invalid(
                    "unified",
                    format!("{key:?} is not a cgroup interface file name"),
                ));
            }
            steps.push(set(UNIFIED, key, value.clone(), "unified"));
        }
    }
    Ok(steps)
}

/// `-1` (or any negative value) means "no limit": `max` on v2.
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

#[allow(deprecated)] // `kernel` is deprecated in the spec; we read it to warn.
fn plan_memory(
    mem: &LinuxMemory,
    version: Version,
    steps: &mut Vec<Step>,
) -> Result<(), CgroupError> {
    for (name, v) in [
        ("memory.limit", mem.limit()),
        ("memory.reservation", mem.reservation()),
        ("memory.swap", mem.swap()),
    ] {
        if let Some(v) = v
            && v < -1
        {
            return Err(invalid(
                name,
                format!("{v} is negative (use -1 for no limit)"),
            ));
        }
    }
    if let Some(s) = mem.swappiness()
        && s > 100
    {
        return Err(invalid("memory.swappiness", format!("{s} is above 100")));
    }
    if mem.kernel().is_some() {
        tracing::warn!(
            "linux.resources.memory.kernel is ignored: kernel memory limits were removed from Linux"
        );
    }
    match version {
        Version::V1 => {
            let limit = mem.limit().map(|l| Setting {
                controller: "memory",
                file: "memory.limit_in_bytes".to_owned(),
                value: l.to_string(),
                field: "memory.limit",
                best_effort: false,
                alt: None,
            });
            let swap = mem.swap().map(|s| Setting {
                controller: "memory",
                file: "memory.memsw.limit_in_bytes".to_owned(),
                value: s.to_string(),
                field: "memory.swap",
                best_effort: false,
                alt: None,
            });
            if let (Some(l), Some(s)) = (mem.limit(), mem.swap())
                && s >= 0
                && (l < 0 || s < l)
            {
                return Err(invalid(
                    "memory.swap",
                    format!("memory+swap limit {s} is below the memory limit {l}"),
                ));
            }
            match (limit, swap) {
                (Some(limit), Some(swap)) => steps.push(Step::MemoryPair { limit, swap }),
                (Some(l), None) => steps.push(Step::Write(l)),
                (None, Some(s)) => steps.push(Step::Write(s)),
                (None, None) => {}
            }
            if let Some(r) = mem.reservation() {
                steps.push(set(
                    "memory",
                    "memory.soft_limit_in_bytes",
                    r.to_string(),
                    "memory.reservation",
                ));
            }
            if let Some(k) = mem.kernel_tcp() {
                steps.push(best_effort(
                    "memory",
                    "memory.kmem.tcp.limit_in_bytes",
                    k.to_string(),
                    "memory.kernelTCP",
                ));
            }
            if let Some(s) = mem.swappiness() {
                steps.push(set(
                    "memory",
                    "memory.swappiness",
                    s.to_string(),
                    "memory.swappiness",
                ));
            }
            if mem.disable_oom_killer() == Some(true) {
                steps.push(set(
                    "memory",
                    "memory.oom_control",
                    "1".to_owned(),
                    "memory.disableOOMKiller",
                ));
            }
        }
        Version::V2 => {
            if let Some(l) = mem.limit() {
                steps.push(set("memory", "memory.max", max_or(l), "memory.limit"));
            }
            if let Some(swap) = swap_v2(mem.swap(), mem.limit())? {
                steps.push(set("memory", "memory.swap.max", swap, "memory.swap"));
            }
            if let Some(r) = mem.reservation() {
                steps.push(set("memory", "memory.low", max_or(r), "memory.reservation"));
            }
            if mem.kernel_tcp().is_some() {
                tracing::warn!("linux.resources.memory.kernelTCP is ignored on cgroup v2");
            }
            if mem.swappiness().is_some() {
                tracing::warn!(
                    "linux.resources.memory.swappiness is ignored on cgroup v2 (no per-cgroup swappiness)"
                );
            }
            if mem.disable_oom_killer() == Some(true) {
                tracing::warn!("linux.resources.memory.disableOOMKiller is ignored on cgroup v2");
            }
        }
    }
    Ok(())
}

/// The OCI `swap` is memory+swap (v1 semantics); v2's `memory.swap.max` is
/// swap alone.
fn swap_v2(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>, CgroupError> {
    let Some(swap) = swap else {
        // An unlimited memory limit without a swap setting lifts both.
        return Ok((limit == Some(-1)).then(|| "max".to_owned()));
    };
    if swap == -1 {
        return Ok(Some("max".to_owned()));
    }
    if swap == 0 {
        return Ok(None);
    }
    match limit {
        None | Some(-1) | Some(0) => {
            Err(invalid("memory.swap", "a swap limit needs a memory limit"))
        }
        Some(l) if swap < l => Err(invalid(
            "memory.swap",
            format!("memory+swap limit {swap} is below the memory limit {l}"),
        )),
        Some(l) => Ok(Some((swap - l).to_string())),
    }
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), the conversion runc,
/// crun and systemd share.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn plan_cpu(cpu: &LinuxCpu, version: Version, steps: &mut Vec<Step>) -> Result<(), CgroupError> {
    if let Some(q) = cpu.quota()
        && (q == 0 || q < -1)
    {
        return Err(invalid(
            "cpu.quota",
            format!("{q} is not a positive number of microseconds or -1"),
        ));
    }
    if let Some(p) = cpu.period()
        && !(1000..=1_000_000).contains(&p)
    {
        return Err(invalid(
            "cpu.period",
            format!("{p} is outside 1000..=1000000 microseconds"),
        ));
    }
    match version {
        Version::V1 => {
            if let Some(s) = cpu.shares() {
                steps.push(set("cpu", "cpu.shares", s.to_string(), "cpu.shares"));
            }
            // Period first: the kernel checks the quota against the period.
            if let Some(p) = cpu.period() {
                steps.push(set("cpu", "cpu.cfs_period_us", p.to_string(), "cpu.period"));
            }
            if let Some(q) = cpu.quota() {
                steps.push(set("cpu", "cpu.cfs_quota_us", q.to_string(), "cpu.quota"));
            }
            if let Some(b) = cpu.burst() {
                steps.push(set("cpu", "cpu.cfs_burst_us", b.to_string(), "cpu.burst"));
            }
            if let Some(p) = cpu.realtime_period() {
                steps.push(best_effort(
                    "cpu",
                    "cpu.rt_period_us",
                    p.to_string(),
                    "cpu.realtimePeriod",
                ));
            }
            if let Some(r) = cpu.realtime_runtime() {
                steps.push(best_effort(
                    "cpu",
                    "cpu.rt_runtime_us",
                    r.to_string(),
                    "cpu.realtimeRuntime",
                ));
            }
        }
        Version::V2 => {
            if let Some(s) = cpu.shares() {
                let w = shares_to_weight(s);
                if w != 0 {
                    steps.push(set("cpu", "cpu.weight", w.to_string(), "cpu.shares"));
                }
            }
            if cpu.quota().is_some() || cpu.period().is_some() {
                let quota = match cpu.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".to_owned(),
                };
                let v = match cpu.period() {
                    Some(p) => format!("{quota} {p}"),
                    None => quota,
                };
                steps.push(set("cpu", "cpu.max", v, "cpu.quota"));
            }
            if let Some(b) = cpu.burst() {
                steps.push(set("cpu", "cpu.max.burst", b.to_string(), "cpu.burst"));
            }
            if cpu.realtime_period().is_some() || cpu.realtime_runtime().is_some() {
                tracing::warn!("linux.resources.cpu realtime settings are ignored on cgroup v2");
            }
        }
    }
    if let Some(i) = cpu.idle() {
        steps.push(set("cpu", "cpu.idle", i.to_string(), "cpu.idle"));
    }
    if let Some(c) = cpu.cpus() {
        check_list("cpu.cpus", c)?;
        steps.push(set("cpuset", "cpuset.cpus", c.clone(), "cpu.cpus"));
    }
    if let Some(m) = cpu.mems() {
        check_list("cpu.mems", m)?;
        steps.push(set("cpuset", "cpuset.mems", m.clone(), "cpu.mems"));
    }
    Ok(())
}

/// A cpuset list: `0-3,5,7-8`.
fn check_list(field: &str, s: &str) -> Result<(), CgroupError> {
    let ok = !s.trim().is_empty()
        && s.trim().split(',').all(|part| {
            let mut it = part.splitn(2, '-');
            let a = it.next().map(|a| a.parse::<u32>().is_ok()).unwrap_or(false);
            let b = it.next().map(|b| b.parse::<u32>().is_ok()).unwrap_or(true);
            a && b
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format!("{s:?} is not a list like 0-3,5")))
    }
}

fn plan_block_io(
    bio: &LinuxBlockIo,
    version: Version,
    steps: &mut Vec<Step>,
) -> Result<(), CgroupError> {
    for (field, w) in [
        ("blockIO.weight", bio.weight()),
        ("blockIO.leafWeight", bio.leaf_weight()),
    ] {
        if let Some(w) = w
            && !(10..=1000).contains(&w)
        {
            return Err(invalid(field, format!("{w} is outside 10..=1000")));
        }
    }
    let throttles = [
        (
            "blockIO.throttleReadBpsDevice",
            bio.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
            "rbps",
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            bio.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
            "wbps",
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            bio.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
            "riops",
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            bio.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
            "wiops",
        ),
    ];
    match version {
        Version::V1 => {
            // blkio.weight exists with CFQ; BFQ names it blkio.bfq.weight. The
            // writer picks whichever exists (see `Cgroup::apply`).
            if let Some(w) = bio.weight() {
                steps.push(with_alt(
                    set("blkio", "blkio.weight", w.to_string(), "blockIO.weight"),
                    "blkio.bfq.weight",
                    w.to_string(),
                ));
            }
            if let Some(w) = bio.leaf_weight() {
                steps.push(set(
                    "blkio",
                    "blkio.leaf_weight",
                    w.to_string(),
                    "blockIO.leafWeight",
                ));
            }
            for d in bio.weight_device().iter().flatten() {
                if let Some(w) = d.weight() {
                    steps.push(set(
                        "blkio",
                        "blkio.weight_device",
                        format!("{}:{} {w}", d.major(), d.minor()),
                        "blockIO.weightDevice",
                    ));
                }
                if let Some(w) = d.leaf_weight() {
                    steps.push(set(
                        "blkio",
                        "blkio.leaf_weight_device",
                        format!("{}:{} {w}", d.major(), d.minor()),
                        "blockIO.weightDevice",
                    ));
                }
            }
            for (field, devs, file, _) in throttles {
                for d in devs.iter().flatten() {
                    steps.push(set(
                        "blkio",
                        file,
                        format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                        field,
                    ));
                }
            }
        }
        Version::V2 => {
            if let Some(w) = bio.weight() {
                steps.push(with_alt(
                    set(
                        "io",
                        "io.weight",
                        format!("default {}", blkio_weight_to_io(w)),
                        "blockIO.weight",
                    ),
                    "io.bfq.weight",
                    format!("default {w}"),
                ));
            }
            if bio.leaf_weight().is_some() {
                tracing::warn!("linux.resources.blockIO.leafWeight is ignored on cgroup v2");
            }
            for d in bio.weight_device().iter().flatten() {
                if let Some(w) = d.weight() {
                    steps.push(set(
                        "io",
                        "io.weight",
                        format!("{}:{} {}", d.major(), d.minor(), blkio_weight_to_io(w)),
                        "blockIO.weightDevice",
                    ));
                }
            }
            for (field, devs, _, key) in throttles {
                for d in devs.iter().flatten() {
                    let rate = if d.rate() == 0 {
                        "max".to_owned()
                    } else {
                        d.rate().to_string()
                    };
                    steps.push(set(
                        "io",
                        "io.max",
                        format!("{}:{} {key}={rate}", d.major(), d.minor()),
                        field,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// blkio weight (10..1000) to io.weight (1..10000), as runc converts.
pub(crate) fn blkio_weight_to_io(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

fn plan_network(net: &LinuxNetwork, version: Version, steps: &mut Vec<Step>) {
    if version == Version::V2 {
        tracing::warn!("linux.resources.network is ignored on cgroup v2 (no net_cls/net_prio)");
        return;
    }
    if let Some(id) = net.class_id() {
        steps.push(best_effort(
            "net_cls",
            "net_cls.classid",
            id.to_string(),
            "network.classID",
        ));
    }
    for p in net.priorities().iter().flatten() {
        steps.push(best_effort(
            "net_prio",
            "net_prio.ifpriomap",
            format!("{} {}", p.name(), p.priority()),
            "network.priorities",
        ));
    }
}

/// Device rules every container gets after its own, so that the nodes the
/// runtime creates in /dev work: mknod of any node, and the standard devices
/// (null, zero, full, random, urandom, tty, console pts, ptmx, tun).
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_owned()));
        r
    };
    vec![
        rule(LinuxDeviceType::C, None, None, "m"),
        rule(LinuxDeviceType::B, None, None, "m"),
        rule(LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(5), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(7), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(8), "rwm"),
        rule(LinuxDeviceType::C, Some(1), Some(9), "rwm"),
        rule(LinuxDeviceType::C, Some(5), Some(0), "rwm"),
        rule(LinuxDeviceType::C, Some(5), Some(2), "rwm"),
        rule(LinuxDeviceType::C, Some(136), None, "rwm"),
        rule(LinuxDeviceType::C, Some(10), Some(200), "rwm"),
    ]
}

/// The v1 `devices.allow`/`devices.deny` line of a rule.
fn device_line(d: &LinuxDeviceCgroup) -> Result<String, CgroupError> {
    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C => 'c',
        other => {
            return Err(invalid(
                "devices.type",
                format!("{:?} is not a, b or c", other.as_str()),
            ));
        }
    };
    let access = d.access().as_deref().unwrap_or("rwm");
    let access = if access.is_empty() { "rwm" } else { access };
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(invalid(
            "devices.access",
            format!("{access:?} is not a combination of r, w and m"),
        ));
    }
    let num = |n: Option<i64>, what: &str| -> Result<String, CgroupError> {
        match n {
            None | Some(-1) => Ok("*".to_owned()),
            Some(n) if n >= 0 => Ok(n.to_string()),
            Some(n) => Err(invalid(what, format!("{n} is negative"))),
        }
    };
    if typ == 'a' {
        return Ok(format!("a *:* {access}"));
    }
    Ok(format!(
        "{typ} {}:{} {access}",
        num(d.major(), "devices.major")?,
        num(d.minor(), "devices.minor")?
    ))
}

fn plan_devices(
    devices: &[LinuxDeviceCgroup],
    version: Version,
    steps: &mut Vec<Step>,
) -> Result<(), CgroupError> {
    let defaults = default_device_rules();
    match version {
        Version::V1 => {
            for d in devices.iter().chain(defaults.iter()) {
                let file = if d.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                steps.push(set("devices", file, device_line(d)?, "devices"));
            }
        }
        Version::V2 => {
            // v2 enforces device rules with an eBPF program attached to the
            // cgroup (see devices_bpf.rs).
            let mut all = Vec::with_capacity(devices.len() + defaults.len());
            for d in devices.iter().chain(defaults.iter()) {
                device_line(d)?;
                all.push(d.clone());
            }
            steps.push(Step::DeviceProgram(all));
        }
    }
    Ok(())
}
