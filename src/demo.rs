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
