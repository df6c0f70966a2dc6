//! `ds01 lifecycle` through the binary: a stateful fake Engine API on a unix socket
//! (list, inspect, stop with its grace, remove), a fixture cgroup tree with the
//! container's scope and a fixture /proc for its network namespace.

mod common;
use common::Fixture;
use common::engine::{Daemon, inspect, serve};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

struct Env {
    f: Fixture,
    daemon: Arc<Mutex<Daemon>>,
    socket: PathBuf,
}

impl Env {
    fn new() -> Env {
        let me = ds01::docker::identity::current().expect("who am I");
        let f = Fixture::new(&format!(
            "defaults:\n  container_hold_after_stop_h: 0.0003\ngroups:\n  student:\n    members: [alice]\ncontainer_types:\n  docker:\n    max_runtime_h: 0.001\n    idle_timeout_h: null\n    sigterm_grace_s: 7\naccess_control:\n  admin_users: [{:?}]\n",
            me.name
        ));
        let d = f.path();
        let scope = d.join("cg/ds01-student.slice/ds01-student-alice.slice/docker-c1.scope");
        std::fs::create_dir_all(&scope).expect("mkdir");
        std::fs::write(scope.join("cpu.stat"), "usage_usec 1000\n").expect("write");
        std::fs::create_dir_all(d.join("proc/4242/net")).expect("mkdir");
        std::fs::write(
            d.join("proc/4242/net/dev"),
            "h1\nh2\n    lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        )
        .expect("write");
        let daemon = Arc::new(Mutex::new(Daemon::default()));
        daemon.lock().expect("lock").containers.insert(
            "c1".into(),
            inspect("c1", "alice-train", "alice", "docker", 3600, 4242),
        );
        let socket = d.join("docker.sock");
        serve(&socket, Arc::clone(&daemon));
        Env { f, daemon, socket }
    }

    fn run(&self, extra: &[&str]) -> (bool, String, String) {
        let d = self.f.path();
        let mut args = vec![
            "lifecycle",
            "--docker-socket",
            self.socket.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        let out = self
            .f
            .ds01(&args)
            .env("DS01_CGROUP_ROOT", d.join("cg"))
            .env("DS01_STATE_DIR", d.join("state"))
            .env("DS01_ALERTS_DIR", d.join("alerts"))
            .env("DS01_EVENTS_LOG", d.join("events.jsonl"))
            .env("DS01_NVIDIA_SMI", "/nonexistent/nvidia-smi")
            .args(["--proc-root", d.join("proc").to_str().expect("utf8")])
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.f.path().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[test]
fn warn_then_stop_with_the_type_grace_then_remove_after_the_hold() {
    let e = Env::new();
    // A dry run first: what would happen, and nothing done.
    let (ok, out, err) = e.run(&["--dry-run", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let row = &v["rows"][0];
    assert_eq!(row["container"], "alice-train");
    assert_eq!(
        row["limits"]["runtime"]["from"],
        "container_types.docker.max_runtime_h"
    );
    assert!(
        row["actions"][0]
            .as_str()
            .is_some_and(|a| a.starts_with("warn (runtime90)")),
        "{row}"
    );
    assert!(e.events().is_empty(), "a dry run logs nothing");
    assert!(!e.f.path().join("state/lifecycle.json").exists());

    // The first real pass: past the max runtime already, but never warned: warn.
    let (ok, out, err) = e.run(&[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("did       warn (runtime90)"), "{out}");
    let ev = e.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["event_type"], "maintenance.runtime_warning");
    assert!(e.daemon.lock().expect("lock").stops.is_empty());
    let alerts = std::fs::read_to_string(e.f.path().join("alerts/alice.json")).expect("alerts");
    assert!(alerts.contains("alice-train has run for"), "{alerts}");

    // After the promised lead (10% of 3.6 s): the stop, with the type's grace.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (ok, out, err) = e.run(&[]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        e.daemon.lock().expect("lock").stops,
        [("c1".to_string(), 7)]
    );
    let kill = e
        .events()
        .into_iter()
        .find(|v| v["event_type"] == "maintenance.runtime_kill")
        .expect("runtime_kill");
    assert_eq!(kill["user"], "alice");
    assert_eq!(kill["details"]["container"], "alice-train");
    assert!(
        kill["details"]["runtime_s"]
            .as_u64()
            .is_some_and(|s| s >= 3600)
    );
    assert_eq!(kill["details"]["grace_s"], 7);

    // Stopped; after container_hold_after_stop_h (≈1.1 s) it is removed.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let (ok, out, err) = e.run(&[]);
    assert!(ok, "{out}{err}");
    assert_eq!(e.daemon.lock().expect("lock").removed, ["c1"]);
    assert!(
        e.events()
            .iter()
            .any(|v| v["event_type"] == "maintenance.container_removed"
                && v["details"]["container"] == "alice-train")
    );
    // Each warning once: no second runtime warning in all these passes.
    let warnings = e
        .events()
        .iter()
        .filter(|v| v["event_type"] == "maintenance.runtime_warning")
        .count();
    assert_eq!(warnings, 1);
}

#[test]
fn an_unreachable_daemon_is_a_clear_error() {
    let e = Env::new();
    let out =
        e.f.ds01(&["lifecycle", "--docker-socket", "/nonexistent/docker.sock"])
            .env("DS01_STATE_DIR", e.f.path().join("state"))
            .env("DS01_EVENTS_LOG", e.f.path().join("events.jsonl"))
            .env("DS01_NVIDIA_SMI", "/nonexistent/nvidia-smi")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cannot list containers: cannot reach the Docker daemon"),
        "{text}"
    );
}
