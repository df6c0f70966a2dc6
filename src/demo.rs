//! Demo and benchmark data: the embedded demo config, and generated configs with
//! any number of users (for benchmarks and `ds01 demo --users N`).

use crate::units::Limit;
use std::io;
use std::path::{Path, PathBuf};

/// The demo files, embedded in the binary (the same files as `demo/` in the repo).
pub const DEMO_FILES: &[(&str, &str)] = &[
    (
        "resource-limits.yaml",
        include_str!("../demo/resource-limits.yaml"),
    ),
    (
        "user-overrides.yaml",
        include_str!("../demo/user-overrides.yaml"),
    ),
    (
        "groups/student.members",
        include_str!("../demo/groups/student.members"),
    ),
    (
        "groups/researcher.members",
        include_str!("../demo/groups/researcher.members"),
    ),
];

/// Write the demo config into `dir`; returns the config path.
pub fn write_demo(dir: &Path) -> io::Result<PathBuf> {
    for (rel, text) in DEMO_FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
    }
    Ok(dir.join("resource-limits.yaml"))
}

/// The demo config with `users` generated members spread over the student (80 %)
/// and researcher (20 %) groups, named `user0001`, `user0002`, …
pub fn write_generated(dir: &Path, users: usize) -> io::Result<PathBuf> {
    let cfg = write_demo(dir)?;
    let mut students = String::new();
    let mut researchers = String::new();
    for i in 0..users {
        let line = format!("user{i:04}\n");
        if i % 5 == 4 {
            researchers.push_str(&line);
        } else {
            students.push_str(&line);
        }
    }
    std::fs::write(dir.join("groups/student.members"), students)?;
    std::fs::write(dir.join("groups/researcher.members"), researchers)?;
    std::fs::write(dir.join("user-overrides.yaml"), "{}\n")?;
    Ok(cfg)
}

/// A generated event log of `n` lines ending at `end`, one event every 10 s per
/// line spread over 200 users and a mix of types; 1 in 1,000 lines is a legacy flat
/// line and 1 in 10,000 is malformed (truncated). Deterministic for a given `n`.
pub fn write_events(path: &Path, n: usize, end: jiff::Timestamp) -> io::Result<()> {
    use std::io::Write;
    const TYPES: [&str; 8] = [
        "container.create",
        "container.start",
        "container.stop",
        "docker.cgroup_inject",
        "gpu.allocated",
        "resource.oom_kill",
        "quota.memory_exceeded",
        "resource.pressure",
    ];
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut w = io::BufWriter::new(std::fs::File::create(path)?);
    let start = end.as_second() - (n as i64) * 10 / 3;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        // xorshift: cheap, deterministic variety.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ts = jiff::Timestamp::from_second(start + (i as i64) * 10 / 3).unwrap_or(end);
        let user = format!("user{:04}", x % 200);
        let ty = TYPES[(x >> 8) as usize % TYPES.len()];
        let container = format!("{user}-job{}", (x >> 16) % 5);
        if i % 10_000 == 9_999 {
            writeln!(
                w,
                "{{\"timestamp\":\"{}\",\"event_type\":\"{ty}\",\"us",
                crate::timespec::format_event_time(ts)
            )?;
        } else if i % 1_000 == 999 {
            writeln!(
                w,
                "{{\"ts\":\"{}\",\"event\":\"{ty}\",\"user\":\"{user}\",\"container\":\"{container}\"}}",
                ts.strftime("%Y-%m-%dT%H:%M:%S")
            )?;
        } else {
            let ev = crate::events::Event::new(ty)
                .user(&user)
                .source("bench")
                .detail("container", container.as_str())
                .detail("group", "student")
                .detail("memory_bytes", (x >> 20) % (64 << 30));
            w.write_all(ev.to_line(ts).map_err(io::Error::other)?.as_bytes())?;
        }
    }
    w.flush()
}

/// One user slice of a fake cgroup v2 tree (for the demo, tests and benchmarks).
#[derive(Debug, Clone)]
pub struct FakeSlice {
    pub group: String,
    pub user: String,
    pub memory_current: u64,
    /// `None` = `max`.
    pub memory_max: Option<u64>,
    pub pids_current: u64,
    pub oom_kill: u64,
    /// Write the three PSI files.
    pub psi: bool,
    /// `(container id, oom_kill)` scopes below the slice.
    pub containers: Vec<(String, u64)>,
}

impl FakeSlice {
    pub fn new(group: &str, user: &str) -> FakeSlice {
        FakeSlice {
            group: group.into(),
            user: user.into(),
            memory_current: 3 << 30,
            memory_max: Some(48 << 30),
            pids_current: 42,
            oom_kill: 0,
            psi: true,
            containers: Vec::new(),
        }
    }

    /// The slice directory under `root` (the `ds01.slice` directory).
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(crate::naming::group_slice(&self.group))
            .join(crate::naming::user_slice(&self.group, &self.user))
    }

    /// Write (or rewrite) the slice's files as the kernel shows them.
    pub fn write(&self, root: &Path) -> io::Result<PathBuf> {
        let dir = self.dir(root);
        std::fs::create_dir_all(&dir)?;
        let max = self.memory_max.map_or("max".to_string(), |m| m.to_string());
        let files = [
            ("memory.current", format!("{}\n", self.memory_current)),
            ("memory.max", format!("{max}\n")),
            ("memory.high", "max\n".to_string()),
            (
                "memory.events",
                format!(
                    "low 0\nhigh 0\nmax {}\noom {}\noom_kill {}\noom_group_kill 0\n",
                    self.oom_kill * 3,
                    self.oom_kill,
                    self.oom_kill
                ),
            ),
            ("pids.current", format!("{}\n", self.pids_current)),
            ("pids.max", "12288\n".to_string()),
            (
                "cpu.stat",
                "usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789\nnr_periods 10\nnr_throttled 2\nthrottled_usec 5000\n"
                    .to_string(),
            ),
            ("cpu.max", "2400000 100000\n".to_string()),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text)?;
        }
        if self.psi {
            let psi = "some avg10=1.25 avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.75 avg60=0.25 avg300=0.05 total=65432\n";
            for name in ["memory.pressure", "cpu.pressure", "io.pressure"] {
                std::fs::write(dir.join(name), psi)?;
            }
        }
        for (id, kills) in &self.containers {
            let c = dir.join(format!("docker-{id}.scope"));
            std::fs::create_dir_all(&c)?;
            std::fs::write(
                c.join("memory.events"),
                format!("low 0\nhigh 0\nmax 0\noom {kills}\noom_kill {kills}\noom_group_kill 0\n"),
            )?;
        }
        Ok(dir)
    }
}

/// A fake tree of `n` user slices (80 % students, 20 % researchers), each with one
/// container scope.
pub fn write_fake_tree(root: &Path, n: usize) -> io::Result<()> {
    for i in 0..n {
        let group = if i % 5 == 4 { "researcher" } else { "student" };
        let mut s = FakeSlice::new(group, &format!("user{i:04}"));
        s.memory_current = ((i as u64 * 7919) % 48) << 30;
        s.containers = vec![(format!("{i:064x}"), 0)];
        s.write(root)?;
    }
    Ok(())
}

/// A generated stats history: `users` users sampled every minute for `minutes`
/// minutes up to `end`, written by the collector's own `stats_line` (every field
/// a real line has). Memory follows a daily rhythm
/// with noise; every 7th user runs close to its limit (above 90 % at the peaks),
/// every 5th gets OOM kills, and every 10th has its slice re-created (its counter
/// resets). Deterministic.
pub fn write_stats_history(
    path: &Path,
    users: usize,
    minutes: usize,
    end: jiff::Timestamp,
) -> io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut w = io::BufWriter::new(std::fs::File::create(path)?);
    let limit: u64 = 48 << 30;
    let start = end.as_second() - (minutes as i64) * 60;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut kills = vec![0u64; users];
    for m in 0..minutes {
        let t = start + (m as i64) * 60;
        let ts = jiff::Timestamp::from_second(t)
            .unwrap_or(end)
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let day = ((t % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU).sin();
        for (u, k) in kills.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 1000) as f64 / 1000.0;
            let base = if u % 7 == 0 {
                0.80
            } else {
                0.25 + 0.3 * ((u % 5) as f64 / 5.0)
            };
            let frac = (base + 0.12 * day + 0.05 * noise).clamp(0.01, 0.99);
            let cur = (limit as f64 * frac) as u64;
            if u % 5 == 0 && x.is_multiple_of(240) {
                *k += 1;
            }
            if u % 10 == 0 && m == minutes / 2 {
                *k = 0;
            }
            let psi_some = if frac > 0.9 {
                20.0 + 30.0 * noise
            } else {
                0.5 * noise
            };
            let psi = |some: f64, full: f64| {
                let line = |avg10: f64| crate::cgroup::parse::PsiLine {
                    avg10: (avg10 * 100.0).round() / 100.0,
                    avg60: (avg10 * 80.0).round() / 100.0,
                    ..Default::default()
                };
                Some(crate::cgroup::parse::Psi {
                    some: line(some),
                    full: Some(line(full)),
                })
            };
            let slice = crate::collect::SliceStats {
                group: if u % 5 == 4 { "researcher" } else { "student" }.into(),
                user: format!("user{u:03}"),
                memory_current: Some(cur),
                memory_max: Some(Limit::Value(limit)),
                memory_high: Some(Limit::Value(limit / 10 * 9)),
                pids_current: Some(100 + x % 400),
                pids_max: Some(Limit::Value(12288)),
                psi_memory: psi(psi_some, psi_some / 2.0),
                psi_cpu: psi(noise * 3.0, 0.0),
                psi_io: psi(noise, noise / 2.0),
                events: Some(crate::cgroup::MemoryEvents {
                    high: Some(m as u64 / 100),
                    max: Some(*k * 3),
                    oom: Some(*k),
                    oom_kill: Some(*k),
                    ..Default::default()
                }),
                cpu_usage_usec: Some(m as u64 * 60_000_000 * (1 + u as u64 % 4) / 2),
                ..Default::default()
            };
            w.write_all(crate::collect::stats_line(&ts, &slice).as_bytes())?;
        }
    }
    w.flush()
}

/// A generated GPU host for benchmarks: `gpus` GPUs and `procs` GPU processes, as
/// a snapshot (`dir/snapshot.json`, replayed with `DS01_GPU_SNAPSHOT`) and a
/// fixture `/proc` (`dir/proc/<pid>/cgroup`, `DS01_PROC_ROOT`). Three processes in
/// four run in the containers of [`write_fake_tree`]'s users (`user0000`, … with
/// container `{i:064x}`), one in four on bare metal; even GPUs are busy, odd ones
/// idle. Returns the snapshot's path.
pub fn write_gpu_fixture(dir: &Path, gpus: u32, procs: u32) -> io::Result<PathBuf> {
    use crate::gpu::{Device, Process, Snapshot};
    let gib = 1u64 << 30;
    let uuid = |g: u32| format!("GPU-{g:08x}-0000-4000-8000-000000000000");
    let mut s = Snapshot {
        version: crate::gpu::SNAPSHOT_VERSION,
        taken_at: jiff::Timestamp::now().to_string(),
        driver_version: Some("550.54.15".into()),
        ..Snapshot::default()
    };
    for g in 0..gpus {
        s.gpus.push(Device {
            index: g,
            uuid: uuid(g),
            name: "NVIDIA H200".into(),
            memory_used_bytes: Some(20 * gib),
            memory_total_bytes: Some(141 * gib),
            utilization_pct: Some(if g % 2 == 0 { 80 } else { 0 }),
            ..Device::default()
        });
    }
    let proc_root = dir.join("proc");
    for i in 0..procs {
        let pid = 10_000 + i;
        let user = i / 2; // two processes per user
        let group = if user % 5 == 4 {
            "researcher"
        } else {
            "student"
        };
        let bare = i % 4 == 3;
        let cgroup = if bare {
            format!(
                "0::/user.slice/user-{}.slice/session-1.scope\n",
                2000 + user
            )
        } else {
            format!(
                "0::/ds01.slice/ds01-{group}.slice/ds01-{group}-user{user:04}.slice/docker-{user:064x}.scope\n"
            )
        };
        let d = proc_root.join(pid.to_string());
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("cgroup"), cgroup)?;
        s.processes.push(Process {
            pid,
            device: uuid(i % gpus.max(1)),
            used_memory_bytes: Some(gib / 2 + u64::from(i) * (1 << 20)),
            sm_util_pct: Some(if i % 2 == 0 { 40 } else { 0 }),
            uid: bare.then_some(2000 + user),
            user: bare.then(|| format!("user{user:04}")),
            ..Process::default()
        });
    }
    let path = dir.join("snapshot.json");
    let text = serde_json::to_string_pretty(&s).map_err(io::Error::other)?;
    std::fs::write(&path, text)?;
    Ok(path)
}
