//! `ds01 monitor` on fixture trees: an OOM kill (a modified memory.events) becomes
//! one event at once through inotify, slices added while running are followed, the
//! OOM state is shared with `ds01 collect`, alerts are written, signals are handled.

mod common;
use ds01::demo::FakeSlice;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Mon {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mon {
    fn root(&self) -> PathBuf {
        self.dir.path().join("cg/ds01.slice")
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn args(&self, cmd: &str) -> Vec<String> {
        let mut v = vec![cmd.to_string()];
        for (flag, rel) in [
            ("--stats-log", "stats.log"),
            ("--state-dir", "state"),
            ("--events-log", "events.jsonl"),
        ] {
            v.push(flag.into());
            v.push(self.p(rel).display().to_string());
        }
        v.push("--cgroup-root".into());
        v.push(self.root().display().to_string());
        v
    }
    fn start(slices: &[FakeSlice], interval: u64) -> Mon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Mon { dir, child: None };
        for s in slices {
            s.write(&m.root()).expect("slice");
        }
        let mut args = m.args("monitor");
        args.extend([
            "--interval".into(),
            interval.to_string(),
            "--rescan".into(),
            "1".into(),
            "--alerts-dir".into(),
            m.p("alerts").display().to_string(),
        ]);
        let child = Command::new(assert_cmd::cargo::cargo_bin("ds01"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn monitor");
        m.child = Some(child);
        // Ready once the first pass wrote its stats lines.
        wait_for(
            || {
                std::fs::read_to_string(m.p("stats.log"))
                    .is_ok_and(|t| t.lines().count() >= slices.len())
            },
            "the first pass",
        );
        m
    }
    fn ooms(&self) -> Vec<Value> {
        std::fs::read_to_string(self.p("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event_type"] == "resource.oom_kill")
            .collect()
    }
    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id() as libc::pid_t;
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(pid, sig) };
    }
}

impl Drop for Mon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Poll `cond` every 20 ms; a generous deadline (correctness, not speed: the
/// latency is measured in BENCHMARKS.md).
fn wait_for(cond: impl Fn() -> bool, what: &str) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// What the kernel does on an OOM kill: rewrite memory.events (only that file).
fn bump_oom(root: &Path, s: &mut FakeSlice, n: u64) {
    s.oom_kill = n;
    std::fs::write(
        s.dir(root).join("memory.events"),
        format!(
            "low 0\nhigh 0\nmax {}\noom {n}\noom_kill {n}\noom_group_kill 0\n",
            n * 3
        ),
    )
    .expect("write memory.events");
}

#[test]
fn an_oom_kill_is_logged_between_passes() {
    let mut a = FakeSlice::new("student", "alice");
    let m = Mon::start(&[a.clone(), FakeSlice::new("student", "bob")], 3600);
    assert!(m.ooms().is_empty());
    bump_oom(&m.root(), &mut a, 1);
    let took = wait_for(|| m.ooms().len() == 1, "the OOM event");
    eprintln!(
        "OOM event {} ms after the memory.events write",
        took.as_millis()
    );
    let ev = &m.ooms()[0];
    assert_eq!(ev["user"], "alice");
    assert_eq!(ev["source"], "monitor");
    assert_eq!(ev["details"]["oom_count"], 1);
    // The collector shares the state: it does not log the same kill again.
    let mut c = common::ds01();
    c.args(m.args("collect")).assert().success();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(m.ooms().len(), 1);
    // A second kill: one more event.
    bump_oom(&m.root(), &mut a, 2);
    wait_for(|| m.ooms().len() == 2, "the second OOM event");
    assert_eq!(m.ooms()[1]["details"]["oom_count"], 1);
}

#[test]
fn slices_appearing_and_going_are_followed() {
    let m = Mon::start(&[FakeSlice::new("student", "alice")], 3600);
    let mut b = FakeSlice::new("researcher", "bob");
    b.write(&m.root()).expect("new slice");
    // Give the rescan (every second) time to watch it, then kill in it.
    std::thread::sleep(Duration::from_millis(1500));
    bump_oom(&m.root(), &mut b, 1);
    wait_for(
        || m.ooms().iter().any(|e| e["user"] == "bob"),
        "bob's OOM event",
    );
    std::fs::remove_dir_all(b.dir(&m.root())).expect("slice goes away");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(m.child.as_ref().is_some(), "still running");
}

#[test]
fn alerts_are_written_for_users_near_a_limit() {
    let mut hot = FakeSlice::new("student", "alice");
    hot.memory_current = 46 << 30;
    let m = Mon::start(&[hot, FakeSlice::new("student", "bob")], 3600);
    wait_for(|| m.p("alerts/alice.json").exists(), "alice's alerts");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(m.p("alerts/alice.json")).expect("read"))
            .expect("json");
    assert_eq!(v[0]["type"], "memory_high");
    assert!(
        v[0]["message"].as_str().is_some_and(|t| t.contains("96%")),
        "{v}"
    );
    assert!(v[0]["expires"].is_string());
    assert!(!m.p("alerts/bob.json").exists(), "no alert for bob");
}

#[test]
fn sighup_keeps_running_and_sigterm_stops_cleanly() {
    let mut m = Mon::start(&[FakeSlice::new("student", "alice")], 1);
    m.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(1500));
    let child = m.child.as_mut().expect("child");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "SIGHUP must not stop it"
    );
    // Passes keep coming every second.
    wait_for(
        || std::fs::read_to_string(m.p("stats.log")).is_ok_and(|t| t.lines().count() >= 2),
        "a second pass",
    );
    m.signal(libc::SIGTERM);
    let mut child = m.child.take().expect("child");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "clean exit: {status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
