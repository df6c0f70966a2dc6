//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod engine;

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// A temp config dir: `resource-limits.yaml` plus any other files.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(yaml: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("resource-limits.yaml"), yaml).expect("write config");
        Fixture { dir }
    }

    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
        self
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("resource-limits.yaml")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `ds01 --config <this config> ARGS`
    pub fn ds01(&self, args: &[&str]) -> Command {
        let mut c = ds01();
        c.arg("--config").arg(self.config()).args(args);
        c
    }
}

pub fn ds01() -> Command {
    let mut c = Command::cargo_bin("ds01").expect("binary built");
    c.env_remove("DS01_CONFIG").env("NO_COLOR", "1");
    c
}

/// The planning repo's shared folder (beside this checkout), when present.
pub fn shared_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.is_dir().then_some(p)
}

/// A precondition that must hold in CI: outside CI a missing one skips the test
/// with a loud message; in CI it fails.
pub fn require(cond: bool, what: &str) -> bool {
    if cond {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("precondition missing in CI: {what}");
    }
    eprintln!("SKIPPED: precondition missing: {what}");
    false
}

/// `systemd-analyze verify` on `units` with `dir` as the unit search path; returns
/// (success, everything it printed). `None` (with the loud skip/CI failure of
/// [`require`]) when systemd-analyze is not installed.
pub fn systemd_verify(dir: &Path, units: &[PathBuf]) -> Option<(bool, String)> {
    let have = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(have, "systemd-analyze (Debian package systemd)") {
        return None;
    }
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .current_dir(dir)
        .output()
        .expect("run systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

/// Remove a real cgroup directory and its (empty) parent: kill what still runs in
/// it (a test's shell may have left a child, like a `sleep`), then retry for a few
/// seconds — the kernel keeps a cgroup busy a little after its last process died.
pub fn remove_cgroup(dir: &Path) {
    let start = std::time::Instant::now();
    while dir.exists() && std::fs::remove_dir(dir).is_err() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: signalling a process the test itself put in its own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if start.elapsed() > std::time::Duration::from_secs(5) {
            eprintln!("note: could not remove {}", dir.display());
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

/// Whether this host has NVIDIA's management library (a GPU driver): the real-NVML
/// tests run there, the no-driver cases elsewhere.
pub fn nvml_present() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        "/usr/lib64/libnvidia-ml.so.1",
        "/usr/lib/libnvidia-ml.so.1",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}
