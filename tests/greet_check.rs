//! `ds01 greet` and `ds01 check` against fixture trees, a fake Engine API, a fake
//! real docker and a fake systemctl: each greeting case, and each check in its PASS
//! and FAIL forms.

mod common;
use common::{Fixture, ds01};
use ds01::demo::FakeSlice;
use predicates::prelude::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

const CFG: &str = "\
defaults:
  max_cpus: 8
  memory: 16g
  memory_swap: 16g
  max_containers_per_user: 3
default_group: student
groups:
  student:
    members: [alice, bob]
    aggregate:
      cpu_quota: \"2400%\"
      memory_max: \"48G\"
      memory_high: \"43G\"
      tasks_max: 12288
      gpu_limit: 2.0
  admin:
    members: [boss]
";

struct Env {
    f: Fixture,
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

impl Env {
    fn new(cfg: &str) -> Env {
        let f = Fixture::new(cfg);
        std::fs::create_dir_all(f.path().join("log")).expect("mkdir");
        Env { f }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.f.path().join(rel)
    }
    fn cg(&self) -> PathBuf {
        self.p("cg/ds01.slice")
    }
    fn greet(&self, user: &str) -> assert_cmd::assert::Assert {
        let mut c = self.f.ds01(&["greet", "--plain", "--user", user]);
        c.env("DS01_CGROUP_ROOT", self.cg())
            .env("DS01_EVENTS_LOG", self.p("log/events.jsonl"))
            .env("DS01_ALERTS_DIR", self.p("alerts"))
            .env("DS01_STATE_DIR", self.p("state"));
        c.assert()
    }
    fn check(&self, only: &str, socket: Option<&Path>) -> assert_cmd::Command {
        let mut c = self.f.ds01(&["check", "--only", only, "--cron-file"]);
        c.arg(self.p("cron"))
            .env("DS01_CGROUP_ROOT", self.cg())
            .env("DS01_SYSTEMD_DIR", self.p("systemd"))
            .env("DS01_EVENTS_LOG", self.p("log/events.jsonl"))
            .env("DS01_STATS_LOG", self.p("log/stats.log"))
            .env("DS01_ALERTS_DIR", self.p("alerts"))
            .env("DS01_SYSTEMCTL", "/bin/false")
            .env(
                "DOCKER_HOST",
                format!(
                    "unix://{}",
                    socket
                        .map_or(self.p("none.sock"), Path::to_path_buf)
                        .display()
                ),
            );
        c
    }
    /// `ds01 check --only NAME` must give exactly one line with `status`.
    fn expect(&self, only: &str, socket: Option<&Path>, status: &str, detail: &str) {
        let out = self.check(only, socket).output().expect("run check");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next().unwrap_or("");
        assert!(
            line.starts_with(status) && line.contains(detail),
            "{only}: expected {status} with {detail:?}, got:\n{text}"
        );
        let code = out.status.code();
        match status {
            "[PASS]" => assert_eq!(code, Some(0), "{text}"),
            "[FAIL]" => assert_eq!(code, Some(1), "{text}"),
            _ => assert_eq!(code, Some(2), "all skipped: {text}"),
        }
    }
}

// ---------------------------------------------------------------- greet

#[test]
fn greet_unlimited_user() {
    let e = Env::new(CFG);
    e.greet("boss")
        .success()
        .stdout(predicate::str::contains("ds01: boss (group admin)"))
        .stdout(predicate::str::contains("Quota      unlimited"))
        .stdout(predicate::str::contains("no containers"))
        .stdout(predicate::str::contains("ds01 events --user boss"));
}

#[test]
fn greet_limited_user_without_and_with_a_slice() {
    let e = Env::new(CFG);
    e.greet("alice")
        .success()
        .stdout(predicate::str::contains(
            "Quota      2 GPU, 48 GiB memory, 24 CPUs, 3 containers",
        ))
        .stdout(predicate::str::contains("Running    no containers"));
    let mut s = FakeSlice::new("student", "alice");
    s.memory_current = 24 << 30;
    s.containers = vec![("c".repeat(64), 0), ("d".repeat(64), 0)];
    s.write(&e.cg()).expect("slice");
    e.greet("alice")
        .success()
        .stdout(predicate::str::contains(
            "Memory     24 GiB / 48 GiB [##########----------] 50%",
        ))
        .stdout(predicate::str::contains(
            "Running    2 container(s), 42 tasks",
        ))
        .stdout(predicate::str::contains("\x1b[").not());
}

#[test]
fn greet_reports_oom_kills_of_the_last_24h_only() {
    let e = Env::new(CFG);
    let now = jiff::Timestamp::now();
    let t = |h: i64| ds01::timespec::format_event_time(now - jiff::SignedDuration::from_hours(h));
    let mut log = String::new();
    log.push_str(&format!("{{\"timestamp\":\"{}\",\"event_type\":\"resource.oom_kill\",\"user\":\"alice\",\"details\":{{\"oom_count\":5,\"container\":\"old\"}}}}\n", t(30)));
    log.push_str(&format!("{{\"timestamp\":\"{}\",\"event_type\":\"resource.oom_kill\",\"user\":\"alice\",\"details\":{{\"oom_count\":1,\"container\":\"alice-a\"}}}}\n", t(5)));
    log.push_str(&format!("{{\"timestamp\":\"{}\",\"event_type\":\"resource.oom_kill\",\"user\":\"bob\",\"details\":{{\"oom_count\":1}}}}\n", t(2)));
    log.push_str(&format!("{{\"timestamp\":\"{}\",\"event_type\":\"resource.oom_kill\",\"user\":\"alice\",\"details\":{{\"oom_count\":1,\"container\":\"alice-train\"}}}}\n", t(1)));
    // A large log before the last day costs nothing: the greeting stops at 24 h.
    let filler: String = (0..20_000)
        .map(|_| {
            format!(
                "{{\"timestamp\":\"{}\",\"event_type\":\"x.y\",\"user\":\"alice\"}}\n",
                t(48)
            )
        })
        .collect();
    std::fs::write(e.p("log/events.jsonl"), format!("{filler}{log}")).expect("write");
    e.greet("alice")
        .success()
        .stdout(predicate::str::contains(
            "2 of your processes were killed for exceeding memory in the last 24h — latest",
        ))
        .stdout(predicate::str::contains("in container alice-train"));
    e.greet("boss")
        .success()
        .stdout(predicate::str::contains("killed").not());
}

#[test]
fn greet_shows_pending_alerts_not_expired_ones() {
    let e = Env::new(CFG);
    std::fs::create_dir_all(e.p("alerts")).expect("mkdir");
    std::fs::write(
        e.p("alerts/alice.json"),
        json!([
            {"type": "memory_high", "message": "You are using 92% of your memory limit"},
            {"type": "old", "message": "stale alert", "expires": "2020-01-01T00:00:00Z"}
        ])
        .to_string(),
    )
    .expect("write");
    e.greet("alice")
        .success()
        .stdout(predicate::str::contains(
            "! You are using 92% of your memory limit",
        ))
        .stdout(predicate::str::contains("stale").not());
}

/// The monitor's gpu.json as it writes it, taken `age_s` ago.
fn write_gpu_report(e: &Env, age_s: i64) {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age_s);
    std::fs::create_dir_all(e.p("state")).expect("mkdir");
    std::fs::write(
        e.p("state/gpu.json"),
        json!({
            "taken_at": at.to_string(),
            "source": "test",
            "users": {"alice": {
                "allocated": 2, "in_use": 1, "memory_bytes": 38u64 << 30, "util_pct": 92.0,
                "processes": 3, "idle": [["1", "alice-nb", 4000]]
            }}
        })
        .to_string(),
    )
    .expect("write");
}

#[test]
fn greet_shows_gpus_in_use_and_an_idle_one() {
    let e = Env::new(CFG);
    write_gpu_report(&e, 5);
    e.greet("alice")
        .success()
        .stdout(predicate::str::contains(
            "  GPU        1 of 2 in use, 38 GiB, 92 %\n",
        ))
        .stdout(predicate::str::contains(
            "! GPU 1 (alice-nb) has been idle for 1 h 6 min",
        ));
    // A user without GPUs gets no GPU line; a stale report (monitor down) none at all.
    e.greet("bob")
        .success()
        .stdout(predicate::str::contains("  GPU ").not());
    write_gpu_report(&e, 3600);
    e.greet("alice")
        .success()
        .stdout(predicate::str::contains("  GPU ").not())
        .stdout(predicate::str::contains("idle").not());
}

#[test]
fn greet_banner_and_silence_on_any_error() {
    let e = Env::new(CFG);
    e.f.file("banner.txt", "Welcome to the lab GPU server\n");
    e.greet("alice")
        .success()
        .stdout(predicate::str::starts_with(
            "Welcome to the lab GPU server\n",
        ));
    std::fs::write(e.f.config(), "groups: [broken\n").expect("break");
    e.greet("alice").success().stdout("").stderr("");
    ds01()
        .args(["--config", "/nonexistent.yaml", "greet"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
}

// ---------------------------------------------------------------- check

/// A canned Engine API: /info and a container list.
fn engine(dir: &Path, info: Value, containers: Value) -> PathBuf {
    let sock = dir.join(format!("engine-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).expect("bind");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).map_or(true, |n| n == 0) || l == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("");
            let body = if path == "/info" {
                info.to_string()
            } else {
                containers.to_string()
            };
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    sock
}

#[test]
fn check_config_pass_and_fail() {
    let e = Env::new(CFG);
    e.expect("config", None, "[PASS]", "2 groups, 3 users");
    let e = Env::new(&CFG.replace("memory_high: \"43G\"", "memory_high: \"43X\""));
    e.expect("config", None, "[FAIL]", "\"43X\" is not a size");
    let e = Env::new(&format!("{CFG}  staff:\n    members: [carol]\n"));
    e.expect(
        "config",
        None,
        "[FAIL]",
        "group(s) staff have users but no aggregate limits",
    );
}

#[test]
fn check_generator_pass_and_fail() {
    let e = Env::new(CFG);
    e.expect(
        "generator",
        None,
        "[FAIL]",
        "differs from the config: 8 to create",
    );
    e.f.ds01(&["slices", "apply", "--no-reload"])
        .env("DS01_SYSTEMD_DIR", e.p("systemd"))
        .env("DS01_CGROUP_ROOT", e.cg())
        .assert()
        .success();
    e.expect("generator", None, "[PASS]", "rendered for 2 users");
}

#[test]
fn check_docker_pass_and_fail() {
    let e = Env::new(CFG);
    e.expect(
        "docker-daemon",
        None,
        "[FAIL]",
        "cannot reach the Docker daemon",
    );
    let good = engine(
        e.f.path(),
        json!({"ServerVersion": "20.10.24", "CgroupDriver": "systemd", "CgroupVersion": "2"}),
        json!([]),
    );
    e.expect("docker-daemon", Some(&good), "[PASS]", "Docker 20.10.24");
    e.expect(
        "docker-cgroup",
        Some(&good),
        "[PASS]",
        "cgroup driver systemd, cgroup v2",
    );
    let e2 = Env::new(CFG);
    let bad = engine(
        e2.f.path(),
        json!({"CgroupDriver": "cgroupfs", "CgroupVersion": "1"}),
        json!([]),
    );
    e2.expect(
        "docker-cgroup",
        Some(&bad),
        "[FAIL]",
        "cgroup driver cgroupfs",
    );
}

fn kernel_slice(e: &Env, memory_max: &str) {
    let dir = e.cg().join("ds01-student.slice/ds01-student-alice.slice");
    FakeSlice::new("student", "alice")
        .write(&e.cg())
        .expect("slice");
    std::fs::write(dir.join("memory.max"), memory_max).expect("w");
    std::fs::write(dir.join("memory.high"), "46170898432\n").expect("w");
    std::fs::write(dir.join("pids.max"), "12288\n").expect("w");
    std::fs::write(dir.join("cpu.max"), "2400000 100000\n").expect("w");
}

#[test]
fn check_slices_pass_and_fail() {
    let e = Env::new(CFG);
    let containers = json!([{"Id": "x", "Labels": {"ds01.user": "alice", "ds01.managed": "true"}}]);
    let sock = engine(e.f.path(), json!({}), containers);
    kernel_slice(&e, "51539607552\n");
    e.expect(
        "slices",
        Some(&sock),
        "[PASS]",
        "kernel limits equal the config for 1 user(s)",
    );
    kernel_slice(&e, "1073741824\n");
    e.expect(
        "slices",
        Some(&sock),
        "[FAIL]",
        "alice: memory.max is 1073741824, config says 51539607552",
    );
}

#[test]
fn check_memory_enforcement_pass_fail_and_skip() {
    let e = Env::new(CFG);
    let sock = engine(e.f.path(), json!({"CgroupDriver": "systemd"}), json!([]));
    e.expect(
        "memory-enforcement",
        Some(&sock),
        "[SKIP]",
        "no --image given",
    );
    // A fake docker that "starts" the container: creates its scope under the
    // --cgroup-parent it was given, with memory.max from --memory (or a wrong one).
    let fake = e.p("fake-docker");
    let script = |mem: &str| {
        format!(
            "#!/bin/sh\n[ \"$1\" = run ] || exit 0\nfor a in \"$@\"; do case $a in --cgroup-parent=*) p=${{a#--cgroup-parent=}};; esac; done\ng=${{p#ds01-}}; g=${{g%%-*}}\nd={}/ds01-$g.slice/$p/docker-abc123.scope\nmkdir -p $d && echo {mem} > $d/memory.max && echo abc123\n",
            e.cg().display()
        )
    };
    std::fs::write(&fake, script("67108864")).expect("w");
    chmod_x(&fake);
    let run = |status: &str, detail: &str| {
        let out = e
            .check("memory-enforcement", Some(&sock))
            .arg("--image")
            .arg("busybox")
            .env("DS01_REAL_DOCKER", &fake)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(status) && text.contains(detail), "{text}");
    };
    run(
        "[PASS]",
        "a 64 MiB container ran in ds01-student-alice.slice with memory.max 67108864",
    );
    std::fs::write(&fake, script("max")).expect("w");
    run("[FAIL]", "memory.max is max, expected 67108864");
}

#[test]
fn check_aggregate_pass_and_fail() {
    let e = Env::new(CFG);
    e.expect(
        "aggregate",
        None,
        "[PASS]",
        "64 MiB over a nearly full 48 GiB refused, 1 MiB into an empty slice allowed",
    );
    // A per-container memory cap below 1 MiB refuses even a request within quota.
    let e = Env::new(&CFG.replace(
        "  memory: 16g\n  memory_swap: 16g\n",
        "  memory: 512k\n  memory_swap: 512k\n",
    ));
    e.expect("aggregate", None, "[FAIL]", "within quota gave Refuse");
}

#[test]
fn check_psi_pass_fail_skip() {
    let e = Env::new(CFG);
    e.expect("psi", None, "[SKIP]", "no user slice");
    FakeSlice::new("student", "alice")
        .write(&e.cg())
        .expect("slice");
    e.expect("psi", None, "[PASS]", "readable in 1 user slice(s)");
    let mut s = FakeSlice::new("student", "bob");
    s.psi = false;
    s.write(&e.cg()).expect("slice");
    e.expect("psi", None, "[FAIL]", "bob/memory.pressure: not supported");
}

#[test]
fn check_collector_stats_events_pass_and_fail() {
    let e = Env::new(CFG);
    e.expect(
        "collector-deployed",
        None,
        "[FAIL]",
        "neither ds01-monitor.service nor ds01-collect.timer is enabled",
    );
    std::fs::write(e.p("cron"), "* * * * * root ds01 collect\n").expect("w");
    e.expect("collector-deployed", None, "[PASS]", "is installed");
    std::fs::remove_file(e.p("cron")).expect("rm");
    // The timer alone, then the monitor (the package's default).
    for (script, says) in [
        (
            "#!/bin/sh\n[ \"$2\" = ds01-collect.timer ] && echo enabled || echo disabled\n",
            "[PASS] collector-deployed - ds01-collect.timer is enabled",
        ),
        (
            "#!/bin/sh\n[ \"$2\" = ds01-monitor.service ] && echo enabled || echo disabled\n",
            "[PASS] collector-deployed - ds01-monitor.service is enabled",
        ),
    ] {
        let fake = e.p("systemctl");
        std::fs::write(&fake, script).expect("w");
        chmod_x(&fake);
        let out = e
            .check("collector-deployed", None)
            .env("DS01_SYSTEMCTL", &fake)
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with(says), "{stdout}");
    }

    e.expect("stats-recent", None, "[FAIL]", "cannot read");
    std::fs::write(
        e.p("log/stats.log"),
        "{\"timestamp\":\"2020-01-01T00:00:00Z\",\"user\":\"alice\"}\n",
    )
    .expect("w");
    e.expect("stats-recent", None, "[FAIL]", "expected within 120 s");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    std::fs::write(
        e.p("log/stats.log"),
        format!("{{\"timestamp\":\"{now}\",\"user\":\"alice\"}}\n"),
    )
    .expect("w");
    e.expect("stats-recent", None, "[PASS]", "last stats line");

    e.expect("events-writable", None, "[FAIL]", "events.jsonl");
    std::fs::write(e.p("log/events.jsonl"), "").expect("w");
    e.expect("events-writable", None, "[PASS]", "is writable");
}

#[test]
fn check_gpu_skip_pass_and_fail() {
    let e = Env::new(CFG);
    if common::nvml_present() {
        eprintln!("SKIP the no-driver case: this host has libnvidia-ml");
    } else {
        e.expect("gpu", None, "[SKIP]", "no GPUs: no NVIDIA driver");
    }
    let mig = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/gpu/mig/snapshot.json");
    let smi = |e: &Env, migs: &str| {
        let script = e.p("nvidia-smi");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat <<'EOF'\nGPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-a100a100-0000-0000-0000-000000000000)\n{migs}GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-a100a100-1111-0000-0000-000000000000)\nEOF\n"
            ),
        )
        .expect("write");
        chmod_x(&script);
        script
    };
    let all = "  MIG 3g.20gb     Device  0: (UUID: MIG-00000000-0000-0000-0000-000000000000)\n  MIG 2g.10gb     Device  1: (UUID: MIG-11111111-0000-0000-0000-000000000000)\n  MIG 1g.5gb      Device  2: (UUID: MIG-22222222-0000-0000-0000-000000000000)\n";
    let run = |e: &Env, script: &Path, snapshot: &Path| {
        let mut c = e.check("gpu", None);
        c.env("DS01_GPU_SNAPSHOT", snapshot)
            .env("DS01_NVIDIA_SMI", script)
            .env("DS01_STATE_DIR", e.p("state"));
        let out = c.output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = run(&e, &smi(&e, all), &mig);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("[PASS]")
            && text.contains("driver 550.54.15, 2 GPU(s), 3 MIG instance(s)"),
        "{text}"
    );
    // nvidia-smi missing an instance NVML has: the wrapper would weigh it wrong.
    let (code, text) = run(
        &e,
        &smi(&e, &all[..all.rfind("  MIG 1g").expect("mig")]),
        &mig,
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "MIG 0:2 (MIG-22222222-0000-0000-0000-000000000000) is missing from nvidia-smi -L"
        ),
        "{text}"
    );
    // A GPU off the bus fails the check by name.
    let plain = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/gpu/plain/snapshot.json");
    let (code, text) = run(&e, &smi(&e, all), &plain);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("GPU 3: the GPU has fallen off the bus"),
        "{text}"
    );
}

#[test]
fn check_greeting_and_the_summary_line() {
    let e = Env::new(CFG);
    e.expect("greeting", None, "[PASS]", "greeting for alice rendered");
    let out = e.check("config", None).output().expect("run");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Results: 1/1 passed, 0 failed, 0 skipped")
    );
    let out =
        e.f.ds01(&["check", "--json", "--only", "aggregate"])
            .output()
            .expect("run");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["passed"], 1);
    assert_eq!(v["results"][0]["status"], "PASS");
    e.f.ds01(&["check", "--only", "nonsense"]).assert().code(2);
}
