//! Demo and benchmark data: the embedded demo config, and generated configs with
//! any number of users (for benchmarks and `ds01 demo --users N`).

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
