//! The OCI runtime spec of an instance, built from its job and its image config.
//!
//! Choices (documented, not hidden): the instance shares the host's network namespace (the
//! overlay network, when present, is attached by NetManager as in Oakestra); it gets its own
//! pid, ipc, uts and mount namespaces; its cgroup sits at a path the worker knows, so usage can
//! be read from cgroupfs; `privileged` grants every capability and every device, unmasks
//! /proc and /sys, and adds `/dev/fuse` (as upstream does).

use grove_core::instance::InstanceKey;
use grove_core::job::Job;
use serde_json::{json, Value};

use crate::runtime::registry::OciContainerConfig;

/// containerd's default capability set for unprivileged containers.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability of Linux 5.9+, for privileged instances.
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const CPU_PERIOD_US: u64 = 100_000;

/// The capability bounding set of this process (`CapBnd` of /proc/self/status); the shim runs
/// with the same set, and runc refuses capabilities outside it. All bits when unreadable.
pub fn current_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// `ALL_CAPS` is in kernel bit order, so a name's index is its bit.
fn in_bounding_set(cap: &str, bounding: u64) -> bool {
    ALL_CAPS.iter().position(|c| *c == cap).is_some_and(|bit| bounding & (1u64 << bit) != 0)
}

/// The process arguments: the job's `cmd` replaces entrypoint and command (upstream
/// semantics); otherwise the image's entrypoint followed by its command.
pub fn process_args(job: &Job, image: &OciContainerConfig) -> Vec<String> {
    if !job.cmd.is_empty() {
        return job.cmd.clone();
    }
    let mut args = image.entrypoint.clone().unwrap_or_default();
    args.extend(image.cmd.clone().unwrap_or_default());
    args
}

/// Image env, then the job's `environment`, then `HOSTNAME=instance-<n>`; later entries win.
pub fn process_env(key: &InstanceKey, job: &Job, image: &OciContainerConfig) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let name = entry.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(name.as_str()));
        env.push(entry);
    };
    let image_env = image.env.clone().unwrap_or_default();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    for e in image_env {
        set(e);
    }
    for e in &job.environment {
        if e.contains('=') {
            set(e.clone());
        }
    }
    set(format!("HOSTNAME={}", key.hostname()));
    env
}

/// `uid[:gid]` when numeric; named users are not resolved (no /etc/passwd lookup) and run as 0.
fn user(image: &OciContainerConfig) -> (u32, u32) {
    let u = image.user.as_deref().unwrap_or("");
    let mut parts = u.split(':');
    let uid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let gid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (uid, gid)
}

/// Builds the runtime spec. `bounding` is the capability bounding set the instance can get at
/// most ([`current_bounding_set`]); a privileged instance gets all of it.
pub fn build(
    key: &InstanceKey,
    job: &Job,
    image: &OciContainerConfig,
    cgroups_path: &str,
    bounding: u64,
) -> Value {
    let wanted: &[&str] = if job.privileged { &ALL_CAPS } else { &DEFAULT_CAPS };
    let caps: Vec<&str> = wanted.iter().copied().filter(|c| in_bounding_set(c, bounding)).collect();
    let (uid, gid) = user(image);
    let cwd = image.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if job.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    // Host networking: give the instance the host's resolver configuration.
    for f in ["/etc/resolv.conf", "/etc/hosts"] {
        if std::path::Path::new(f).exists() {
            mounts.push(json!({"destination": f, "type": "bind", "source": f, "options": ["rbind", "ro"]}));
        }
    }

    let mut resources = json!({
        "devices": [{"allow": job.privileged, "access": "rwm"}],
    });
    if job.memory > 0 {
        resources["memory"] = json!({"limit": job.memory.saturating_mul(1024 * 1024)});
    }
    if job.vcpus > 0 {
        resources["cpu"] = json!({"quota": u64::from(job.vcpus) * CPU_PERIOD_US, "period": CPU_PERIOD_US});
    }

    let mut linux = json!({
        "resources": resources,
        "cgroupsPath": cgroups_path,
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    });
    if job.privileged {
        if std::path::Path::new("/dev/fuse").exists() {
            linux["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]);
        }
    } else {
        linux["maskedPaths"] = json!([
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
            "/proc/scsi"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
        ]);
    }

    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": process_args(job, image),
            "env": process_env(key, job, image),
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": !job.privileged
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": key.hostname(),
        "mounts": mounts,
        "linux": linux
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> OciContainerConfig {
        OciContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "MODE=image".into()]),
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "echo hi".into()]),
            working_dir: Some("/srv".into()),
            user: Some("1000:1000".into()),
        }
    }

    #[test]
    fn spec_from_job() {
        let key = InstanceKey::new("a.b.c.d", 4);
        let job = Job {
            environment: vec!["MODE=demo".into(), "X=1".into()],
            memory: 64,
            vcpus: 2,
            ..Job::default()
        };
        let s = build(&key, &job, &image(), "/grove/ns/a.b.c.d.instance.4", u64::MAX);
        assert_eq!(s["hostname"], "instance-4");
        assert_eq!(s["process"]["args"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(
            s["process"]["env"],
            json!(["PATH=/bin", "MODE=demo", "X=1", "HOSTNAME=instance-4"])
        );
        assert_eq!(s["process"]["cwd"], "/srv");
        assert_eq!(s["process"]["user"], json!({"uid": 1000, "gid": 1000}));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], json!(64u64 * 1024 * 1024));
        assert_eq!(s["linux"]["resources"]["cpu"], json!({"quota": 200_000, "period": 100_000}));
        assert_eq!(s["linux"]["cgroupsPath"], "/grove/ns/a.b.c.d.instance.4");
        assert!(s["linux"]["maskedPaths"].is_array());
        assert_eq!(s["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 14);
    }

    #[test]
    fn cmd_replaces_entrypoint_and_privileged_widens() {
        let key = InstanceKey::new("j", 0);
        let job = Job { cmd: vec!["sleep".into(), "5".into()], privileged: true, ..Job::default() };
        let s = build(&key, &job, &image(), "/g", u64::MAX);
        assert_eq!(s["process"]["args"], json!(["sleep", "5"]));
        assert!(s["linux"].get("maskedPaths").is_none());
        assert_eq!(s["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 41);
        assert_eq!(s["linux"]["resources"]["devices"], json!([{"allow": true, "access": "rwm"}]));
        assert!(s["linux"]["resources"].get("memory").is_none());
    }

    #[test]
    fn capabilities_stay_within_the_bounding_set() {
        let key = InstanceKey::new("j", 0);
        // Everything but CAP_SYS_RESOURCE (bit 24), as on a host that dropped it.
        let bounding = 0x1ff_feff_ffff_u64;
        let job = Job { privileged: true, ..Job::default() };
        let caps = build(&key, &job, &image(), "/g", bounding)["process"]["capabilities"]["bounding"].clone();
        let caps: Vec<&str> = caps.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"CAP_SYS_RESOURCE"));
        assert!(caps.contains(&"CAP_SYS_ADMIN"));
        // Without CAP_NET_RAW (bit 13) in the set, the default set shrinks too.
        let plain = build(&key, &Job::default(), &image(), "/g", !(1u64 << 13));
        assert_eq!(plain["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 13);
    }
}
