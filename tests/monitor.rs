//! `ds01 monitor` on fixture trees: an OOM kill (a modified memory.events) becomes
//! one event at once through inotify, slices added while running are followed, the
//! OOM state is shared with `ds01 collect`, alerts are written, signals are handled.

mod common;
use common::require;
use ds01::demo::FakeSlice;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Mon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The real cgroup root, when not the fixture tree in `dir`.
    real_root: Option<PathBuf>,
    stdout: Arc<Mutex<Vec<String>>>,
}

/// How to start a monitor beyond the defaults.
#[derive(Default)]
struct Setup {
    /// resource-limits.yaml text (else no config file: built-in settings).
    config: Option<String>,
    /// Serve /metrics on a free loopback port.
    listen: bool,
    /// A real cgroup tree instead of the fixture.
    real_root: Option<PathBuf>,
    /// GPUs: the plain-host snapshot under demo/gpu replayed every second, and a
    /// fake Docker daemon where alice's container holds GPU 0 and bob's GPU 1.
    gpu: bool,
    /// Seconds between full rescans (default 1).
    rescan: Option<u64>,
    /// Extra environment (`DS01_TEST_PAUSE`).
    env: Vec<(&'static str, String)>,
}

impl Mon {
    fn root(&self) -> PathBuf {
        self.real_root
            .clone()
            .unwrap_or_else(|| self.dir.path().join("cg/ds01.slice"))
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
        Mon::start_with(slices, interval, Setup::default())
    }
    fn start_with(slices: &[FakeSlice], interval: u64, setup: Setup) -> Mon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Mon {
            dir,
            child: None,
            real_root: setup.real_root,
            stdout: Arc::new(Mutex::new(Vec::new())),
        };
        for s in slices {
            s.write(&m.root()).expect("slice");
        }
        let mut args = m.args("monitor");
        args.extend([
            "--interval".into(),
            interval.to_string(),
            "--rescan".into(),
            setup.rescan.unwrap_or(1).to_string(),
            "--alerts-dir".into(),
            m.p("alerts").display().to_string(),
        ]);
        if setup.listen {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        let mut envs: Vec<(&str, PathBuf)> = setup
            .env
            .iter()
            .map(|(k, v)| (*k, PathBuf::from(v)))
            .collect();
        if setup.gpu {
            let sock = m.p("docker.sock");
            let d = Arc::new(Mutex::new(common::engine::Daemon::default()));
            for (id, name, user, gpu) in [
                (GPU_A, "alice-train", "alice", "0"),
                (GPU_B, "bob-notebook", "bob", "1"),
            ] {
                let mut c = common::engine::inspect(id, name, user, "docker", 600, 0);
                c["HostConfig"]["DeviceRequests"] =
                    json!([{"Count": 0, "DeviceIDs": [gpu], "Capabilities": [["gpu"]]}]);
                d.lock().expect("lock").containers.insert(id.into(), c);
            }
            common::engine::serve(&sock, d);
            args.extend([
                "--gpu-interval".into(),
                "1s".into(),
                "--docker-socket".into(),
                sock.display().to_string(),
                "--no-lifecycle".into(),
            ]);
            let demo = repo_file("demo/gpu/plain");
            envs.push(("DS01_GPU_SNAPSHOT", demo.join("snapshot.json")));
            envs.push(("DS01_PROC_ROOT", demo.join("proc")));
        }
        let config = m.p("resource-limits.yaml");
        if let Some(text) = &setup.config {
            std::fs::write(&config, text).expect("write config");
        }
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("ds01"))
            .arg("--config")
            .arg(&config)
            .args(&args)
            .envs(envs)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn monitor");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::clone(&m.stdout);
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("monitor: {l}");
                lines.lock().expect("lock").push(l);
            }
        });
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
    /// What the monitor printed so far.
    fn said(&self) -> String {
        self.stdout.lock().expect("lock").join("\n")
    }
    /// The address it serves on (from its start-up line).
    fn addr(&self) -> String {
        wait_for(
            || self.said().contains("serving http://"),
            "the listen line",
        );
        let said = self.said();
        let rest = said.split("serving http://").nth(1).expect("listen line");
        rest.split('/').next().expect("address").to_string()
    }
    fn events(&self, ty: &str) -> Vec<Value> {
        std::fs::read_to_string(self.p("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event_type"] == ty)
            .collect()
    }
    fn ooms(&self) -> Vec<Value> {
        self.events("resource.oom_kill")
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

/// One HTTP request: (status code, body).
fn get(addr: &str, path: &str, accept: Option<&str>) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{accept}\r\n"
    )
    .expect("send");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        code,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

/// A chunked HTTP/1.1 body (Prometheus's API may send one).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the one sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
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

/// systemd makes a group slice and its first user slice back to back: the user
/// slice must be watched from the directory watches alone (no periodic rescan for
/// an hour here), so a kill in a container right after is read while its scope
/// exists and names it. The monitor is held for 300 ms inside its rescan, between
/// watching the directories and walking the tree, and the user slice is made in
/// that window (when the walk came first, such a slice waited for the next rescan).
#[test]
fn a_user_slice_made_with_its_group_is_watched_at_once() {
    let m = Mon::start_with(
        &[FakeSlice::new("student", "alice")],
        3600,
        Setup {
            rescan: Some(3600),
            env: vec![("DS01_TEST_PAUSE", "monitor-rescan-walk:300".into())],
            ..Setup::default()
        },
    );
    std::thread::sleep(Duration::from_millis(800));
    for i in 0..3 {
        let group = format!("g{i}");
        let id = format!("{i:064x}");
        let mut s = FakeSlice::new(&group, "bob");
        s.containers = vec![(id.clone(), 0)];
        // The group directory alone: its creation starts a rescan, which pauses.
        let slice = s.dir(&m.root());
        std::fs::create_dir(slice.parent().expect("group dir")).expect("group dir");
        std::thread::sleep(Duration::from_millis(100));
        s.write(&m.root())
            .expect("the user slice, inside the window");
        std::thread::sleep(Duration::from_millis(800));
        let scope = slice.join(format!("docker-{id}.scope"));
        std::fs::write(
            scope.join("memory.events"),
            "low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .expect("scope memory.events");
        bump_oom(&m.root(), &mut s, 1);
        std::thread::sleep(Duration::from_millis(800));
        // The container goes, as Docker removes its scope after the kill.
        std::fs::remove_dir_all(&scope).expect("scope goes");
        let ev = m
            .ooms()
            .into_iter()
            .find(|e| e["details"]["group"] == group.as_str());
        let ev = ev.unwrap_or_else(|| panic!("no OOM event for {group} while the scope existed"));
        assert_eq!(ev["details"]["container_id"], id.as_str(), "{ev}");
    }
}

/// Docker's container scope appears in a watched slice: the slice is read at once,
/// so when the container's main process is killed and its scope is gone before
/// the kill is read, the container is still named (the one that went).
#[test]
fn a_container_whose_scope_went_before_its_kill_was_read_is_named() {
    let mut a = FakeSlice::new("student", "alice");
    let m = Mon::start_with(
        std::slice::from_ref(&a),
        3600,
        Setup {
            rescan: Some(3600),
            ..Setup::default()
        },
    );
    std::thread::sleep(Duration::from_millis(800));
    let id = format!("{:064x}", 0xc3);
    // The scope, made whole and moved in (the monitor reads it when it appears).
    let slice = a.dir(&m.root());
    let made = slice.join("making");
    std::fs::create_dir(&made).expect("scope dir");
    std::fs::write(
        made.join("memory.events"),
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    )
    .expect("scope memory.events");
    let scope = slice.join(format!("docker-{id}.scope"));
    std::fs::rename(&made, &scope).expect("scope in place");
    wait_for(
        || std::fs::read_to_string(m.p("state/oom-tracking.json")).is_ok_and(|t| t.contains(&id)),
        "the container in alice's OOM tracking",
    );
    // The kill ends the container: its scope is gone before the kill is read.
    std::fs::remove_dir_all(&scope).expect("scope goes");
    bump_oom(&m.root(), &mut a, 1);
    wait_for(|| !m.ooms().is_empty(), "the OOM event");
    let ev = &m.ooms()[0];
    assert_eq!(ev["details"]["container_id"], id.as_str(), "{ev}");
    assert_eq!(ev["details"]["container_gone"], true, "{ev}");
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

const METRICS_CFG: &str = "\
default_group: student
groups:
  student:
    members: [alice, bob]
    aggregate:
      cpu_quota: \"400%\"
      memory_max: \"48G\"
      tasks_max: 4096
  admin:
    members: [root_like]
    aggregate:
      memory_max: null
";

#[test]
fn metrics_show_every_slice_from_the_kernel_files_and_the_configured_limits() {
    let alice = FakeSlice::new("student", "alice");
    let mut bob = FakeSlice::new("student", "bob");
    bob.memory_max = None;
    bob.oom_kill = 4;
    let m = Mon::start_with(
        &[alice.clone(), bob],
        3600,
        Setup {
            config: Some(METRICS_CFG.into()),
            listen: true,
            ..Setup::default()
        },
    );
    let addr = m.addr();
    let (code, text) = get(&addr, "/metrics", None);
    assert_eq!(code, 200);
    let a = "{user=\"alice\",group=\"student\"}";
    let b = "{user=\"bob\",group=\"student\"}";
    assert_eq!(
        sample(&text, &format!("ds01_user_memory_current_bytes{a}")),
        Some(alice.memory_current as f64)
    );
    assert_eq!(
        sample(&text, &format!("ds01_user_memory_max_bytes{a}")),
        Some((48u64 << 30) as f64)
    );
    assert_eq!(
        sample(&text, &format!("ds01_user_memory_max_bytes{b}")),
        None,
        "no series for an unlimited memory.max"
    );
    assert_eq!(
        sample(&text, &format!("ds01_user_memory_events_oom_kill_total{b}")),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, &format!("ds01_user_tasks_current{a}")),
        Some(42.0)
    );
    assert!(text.contains("# TYPE ds01_user_cpu_usage_seconds_total counter"));
    assert!(text.contains(
        "ds01_user_info{user=\"alice\",group=\"student\",slice=\"ds01-student-alice.slice\"} 1"
    ));
    // The configured limits: a series per configured user, none for unlimited.
    assert_eq!(
        sample(&text, &format!("ds01_user_limit_cpu_cores{a}")),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, &format!("ds01_user_limit_tasks{b}")),
        Some(4096.0)
    );
    assert!(!text.contains("user=\"root_like\""), "{text}");
    assert!(sample(&text, "ds01_monitor_scrape_duration_seconds").is_some_and(|d| d > 0.0));
    assert_eq!(sample(&text, "ds01_monitor_user_slices"), Some(2.0));
    // A fixture tree is not cgroup2: no triggers, said at start-up.
    assert_eq!(sample(&text, "ds01_monitor_pressure_triggers"), Some(0.0));
    assert!(
        m.said().contains("not on a cgroup2 file system"),
        "{}",
        m.said()
    );

    // OpenMetrics when asked for it (what Prometheus asks for), ending in # EOF.
    let (_, om) = get(
        &addr,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE ds01_user_cpu_usage_seconds counter"));

    // The classic text passes Prometheus's own linter.
    if require(
        Command::new("promtool").arg("--version").output().is_ok(),
        "promtool (Debian package prometheus)",
    ) {
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        p.stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("feed promtool");
        let out = p.wait_with_output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Values are read at scrape time.
    let mut hot = alice.clone();
    hot.memory_current = 7 << 30;
    hot.write(&m.root()).expect("rewrite");
    let (_, text) = get(&addr, "/metrics", None);
    assert_eq!(
        sample(&text, &format!("ds01_user_memory_current_bytes{a}")),
        Some((7u64 << 30) as f64)
    );
}

#[test]
fn healthz_and_unknown_paths() {
    let m = Mon::start_with(
        &[FakeSlice::new("student", "alice")],
        3600,
        Setup {
            listen: true,
            ..Setup::default()
        },
    );
    let addr = m.addr();
    let (code, body) = get(&addr, "/healthz", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("ok"), "{body}");
    assert_eq!(get(&addr, "/nope", None).0, 404);
    let mut c = std::net::TcpStream::connect(&addr).expect("connect");
    c.write_all(b"POST /metrics HTTP/1.1\r\n\r\n")
        .expect("send");
    let mut t = String::new();
    c.read_to_string(&mut t).expect("read");
    assert!(t.starts_with("HTTP/1.1 405"), "{t}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    common::ds01()
        .args(["monitor", "--listen", &addr, "--cgroup-root"])
        .arg(dir.path())
        .arg("--stats-log")
        .arg(dir.path().join("s"))
        .arg("--state-dir")
        .arg(dir.path().join("st"))
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!(
            "cannot listen on {addr}"
        )));
}

/// The host's kernel: real PSI triggers on a real cgroup2 slice (the hybrid
/// host's `unified` tree). CPU hogs in the slice make the kernel fire the cpu
/// trigger; the monitor logs one `resource.pressure` event and, in the cooldown,
/// no second one.
#[test]
fn real_kernel_pressure_trigger_fires_once_per_cooldown() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let usable = rustix::process::geteuid().is_root()
        && unified.join("cgroup.procs").exists()
        && unified.join("cpu.pressure").exists();
    if !common::require(
        usable,
        "root and a cgroup2 tree with PSI at /sys/fs/cgroup/unified",
    ) {
        return;
    }
    let tag = format!("p{}", std::process::id());
    let root = unified.join("ds01.slice");
    let slice = root.join(format!("ds01-{tag}.slice/ds01-{tag}-alice.slice"));
    std::fs::create_dir_all(&slice).expect("mkdir the slice");
    let cfg = "\
groups:
  student: {}
monitoring:
  pressure:
    window_s: 2
    cpu_some_pct: 25
    memory_some_pct: 10
    memory_full_pct: null
    cooldown_min: 10
";
    let m = Mon::start_with(
        &[],
        3600,
        Setup {
            config: Some(cfg.into()),
            listen: true,
            real_root: Some(root.clone()),
            ..Setup::default()
        },
    );
    let addr = m.addr();
    let (_, text) = get(&addr, "/metrics", None);
    let armed = sample(&text, "ds01_monitor_pressure_triggers").unwrap_or(0.0);
    // Four spinning shells on this machine's cores: tasks wait for a CPU.
    let hogs: Vec<Child> = (0..4)
        .map(|_| {
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs; while :; do :; done",
                    slice.display()
                ))
                .spawn()
                .expect("spawn hog")
        })
        .collect();
    // /metrics reads real kernel files through descriptors it keeps open: the
    // values must still move between scrapes.
    let cpu_series = format!("ds01_user_cpu_usage_seconds_total{{user=\"alice\",group=\"{tag}\"}}");
    let cpu_before = sample(&get(&addr, "/metrics", None).1, &cpu_series);
    let start = Instant::now();
    let mine = |m: &Mon| -> Vec<Value> {
        m.events("resource.pressure")
            .into_iter()
            .filter(|e| e["details"]["group"] == tag.as_str())
            .collect()
    };
    while mine(&m).is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = start.elapsed();
    // Pressure goes on for three more windows: the cooldown holds a second event.
    std::thread::sleep(Duration::from_secs(6));
    let (_, during) = get(&addr, "/metrics", None);
    let cpu_after = sample(&during, &cpu_series);
    for mut h in hogs {
        let _ = h.kill();
        let _ = h.wait();
    }
    common::remove_cgroup(&slice);
    let (_, after) = get(&addr, "/metrics", None);
    assert!(armed >= 2.0, "two triggers armed on our slice: {text}");
    assert!(
        sample(&during, "ds01_monitor_open_files").is_some_and(|n| n >= 4.0),
        "cgroupfs files kept open: {during}"
    );
    eprintln!("cpu seconds {cpu_before:?} -> {cpu_after:?}");
    assert!(
        cpu_after.unwrap_or(0.0) > cpu_before.unwrap_or(f64::MAX) + 1.0,
        "fresh values through the kept descriptors: {cpu_before:?} -> {cpu_after:?}"
    );
    assert_eq!(
        sample(&after, &cpu_series),
        None,
        "the removed slice is gone from /metrics"
    );
    assert_eq!(sample(&after, "ds01_monitor_read_errors"), Some(0.0));
    let evs = mine(&m);
    eprintln!("pressure event after {} ms: {evs:?}", first.as_millis());
    assert_eq!(evs.len(), 1, "exactly one event in the cooldown: {evs:?}");
    let e = &evs[0];
    assert_eq!(e["user"], "alice");
    assert_eq!(e["source"], "monitor");
    assert_eq!(e["details"]["resource"], "cpu");
    assert_eq!(e["details"]["kind"], "some");
    assert_eq!(e["details"]["threshold_ms"], 500.0);
    assert!(e["details"]["avg10"].is_number(), "{e}");
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Run promtool with `args` in `dir`; assert success.
fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the Prometheus server when the test ends, however it ends.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus (Debian's package) scrapes two monitors with different
/// trees; its HTTP API has each user's series from both, the shipped alert rules
/// load, and an OOM kill on one server fires DS01OOMKill for that user there.
#[test]
fn a_real_prometheus_scrapes_two_monitors_and_fires_the_oom_alert() {
    if !require(
        Command::new("prometheus").arg("--version").output().is_ok()
            && Command::new("promtool").arg("--version").output().is_ok(),
        "prometheus and promtool (Debian package prometheus)",
    ) {
        return;
    }
    // The files shipped in the repo are valid, and the rules pass their unit tests.
    let dir = repo_file("deploy/prometheus");
    promtool(&dir, &["check", "config", "prometheus.yml"]);
    promtool(&dir, &["check", "rules", "ds01-alerts.yml"]);
    promtool(&dir, &["test", "rules", "ds01-alerts.test.yml"]);

    let setup = || Setup {
        config: Some(METRICS_CFG.into()),
        listen: true,
        ..Setup::default()
    };
    let mut bob = FakeSlice::new("student", "bob");
    let a = Mon::start_with(
        &[FakeSlice::new("student", "alice"), bob.clone()],
        3600,
        setup(),
    );
    let b = Mon::start_with(
        &[
            FakeSlice::new("student", "alice"),
            FakeSlice::new("admin", "root_like"),
        ],
        3600,
        setup(),
    );
    let (ta, tb) = (a.addr(), b.addr());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let work = tempfile::tempdir().expect("tempdir");
    let cfg = work.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: ds01\n    static_configs:\n      - targets: ['{ta}']\n        labels: {{server: a}}\n      - targets: ['{tb}']\n        labels: {{server: b}}\n",
            dir.join("ds01-alerts.yml").display()
        ),
    )
    .expect("write prometheus.yml");
    let api = format!("127.0.0.1:{port}");
    let _prom = Server(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus"),
    );
    let query = |q: &str| -> Vec<Value> {
        // Not up yet: nothing to ask.
        if std::net::TcpStream::connect(&api).is_err() {
            return Vec::new();
        }
        let q: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (code, body) = get(&api, &format!("/api/v1/query?query={q}"), None);
        if code != 200 {
            return Vec::new();
        }
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    };
    let pairs = |rs: &[Value]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = rs
            .iter()
            .map(|r| {
                (
                    r["metric"]["server"].as_str().unwrap_or("").to_string(),
                    r["metric"]["user"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let want = vec![
        ("a".to_string(), "alice".to_string()),
        ("a".to_string(), "bob".to_string()),
        ("b".to_string(), "alice".to_string()),
        ("b".to_string(), "root_like".to_string()),
    ];
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        got = pairs(&query("ds01_user_info"));
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(got, want, "each user's series from both servers");
    // Counters arrive as counters (OpenMetrics), named with _total.
    let mem = query("ds01_user_memory_current_bytes{server=\"b\",user=\"alice\"}");
    assert_eq!(mem.len(), 1, "{mem:?}");
    assert_eq!(mem[0]["value"][1], (3u64 << 30).to_string());
    assert_eq!(
        pairs(&query("ds01_user_cpu_usage_seconds_total")).len(),
        4,
        "the cpu counter from both"
    );
    let up = query("up");
    assert!(
        up.len() == 2 && up.iter().all(|r| r["value"][1] == "1"),
        "{up:?}"
    );
    // An OOM kill on server a: the rule fires for bob there, nobody else.
    bump_oom(&a.root(), &mut bob, 1);
    let start = Instant::now();
    let mut alerts = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        alerts = query("ALERTS{alertname=\"DS01OOMKill\"}");
        if !alerts.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "DS01OOMKill after {} ms: {alerts:?}",
        start.elapsed().as_millis()
    );
    assert_eq!(pairs(&alerts), vec![("a".to_string(), "bob".to_string())]);
    drop(b);
}

const GPU_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const GPU_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";

/// The GPU thread's report reaches the stats lines, /metrics and gpu.json.
#[test]
fn gpu_accounting_reaches_stats_metrics_and_gpu_json() {
    let m = Mon::start_with(
        &[FakeSlice::new("student", "alice"), FakeSlice::new("researcher", "bob")],
        1,
        Setup {
            config: Some(
                "groups:\n  student:\n    members: [alice]\n  researcher:\n    members: [bob]\nbare_metal_access:\n  exempt_users: [datasciencelab]\n".into(),
            ),
            listen: true,
            gpu: true,
            ..Setup::default()
        },
    );
    let addr = m.addr();
    let metric = |series: &str| {
        let (_, text) = get(&addr, "/metrics", None);
        sample(&text, series)
    };
    wait_for(
        || {
            metric("ds01_gpu_allocated{gpu=\"0\",user=\"alice\",container=\"alice-train\"}")
                == Some(1.0)
        },
        "alice's GPU in /metrics",
    );
    assert_eq!(
        metric("ds01_user_gpu_memory_bytes{user=\"alice\"}"),
        Some((38u64 << 30) as f64)
    );
    assert_eq!(metric("ds01_user_gpus_in_use{user=\"bob\"}"), Some(0.0));
    assert_eq!(metric("ds01_gpu_up{gpu=\"3\"}"), Some(0.0));
    assert_eq!(metric("ds01_gpu_utilization_ratio{gpu=\"0\"}"), Some(0.92));
    assert_eq!(
        metric("ds01_user_gpu_bare_metal_processes{user=\"datasciencelab\",exempt=\"true\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric("ds01_user_gpu_bare_metal_processes{user=\"mallory\",exempt=\"false\"}"),
        Some(1.0)
    );
    // Idle history grows between samples for bob's idle GPU.
    wait_for(
        || metric("ds01_gpu_idle_seconds{gpu=\"1\"}").is_some_and(|s| s >= 1.0),
        "bob's GPU idle time",
    );
    wait_for(
        || {
            std::fs::read_to_string(m.p("stats.log")).is_ok_and(|t| {
                t.lines().any(|l| {
                    serde_json::from_str::<Value>(l).is_ok_and(|v| {
                        v["user"] == "alice"
                            && v["gpus_allocated"] == 1
                            && v["gpu_memory_bytes"] == json!(38u64 << 30)
                            && v["gpu_util_pct"] == json!(92.0)
                    })
                })
            })
        },
        "GPU fields in alice's stats line",
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(m.p("state/gpu.json")).expect("gpu.json"))
            .expect("json");
    assert_eq!(saved["users"]["bob"]["allocated"], 1);
    assert!(
        saved["idle_state"]["busy_at"]
            .as_object()
            .is_some_and(|o| o.len() >= 3)
    );
}

/// The `ds01_…` metric names an expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ds01_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The Grafana dashboard and the alert rules only use metrics `/metrics` serves,
/// and every dashboard query is valid PromQL (promtool parses it as a rule).
#[test]
fn dashboard_and_rules_use_only_served_metrics_and_valid_promql() {
    let m = Mon::start_with(
        &[FakeSlice::new("student", "alice")],
        3600,
        Setup {
            config: Some(METRICS_CFG.into()),
            listen: true,
            gpu: true,
            ..Setup::default()
        },
    );
    let addr = m.addr();
    wait_for(
        || {
            get(&addr, "/metrics", None)
                .1
                .contains("ds01_gpu_allocated")
        },
        "the GPU families",
    );
    let (_, text) = get(&addr, "/metrics", None);
    let served: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/grafana/ds01-dashboard.json"))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules = std::fs::read_to_string(repo_file("deploy/prometheus/ds01-alerts.yml"))
        .expect("read the rules");
    for name in exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .chain(metric_names(&rules))
    {
        assert!(
            served.contains(&name.as_str()),
            "{name} is used by the dashboard or the rules but not served"
        );
    }
    if !require(
        Command::new("promtool").arg("--version").output().is_ok(),
        "promtool (Debian package prometheus)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$__interval", "1m")
            .replace(['$'], "");
        file.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).expect("quote")
        ));
    }
    std::fs::write(dir.path().join("dash.yml"), file).expect("write");
    promtool(dir.path(), &["check", "rules", "dash.yml"]);
}

/// Everything that writes the event log at once, on real files, while OOM kills
/// keep coming: the monitor (a pass every second, inotify between), `ds01 collect`
/// passes back to back (the timer racing it), and 8 `ds01 events log` writers.
/// Every line is whole JSON, every writer's event is there exactly once, and every
/// kill is logged exactly once (the events' counts add up to the kills).
#[test]
fn the_monitor_timer_passes_and_eight_writers_at_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const KILLS: u64 = 25;
    const PER_WRITER: usize = 60;
    let mut a = FakeSlice::new("student", "alice");
    let m = Mon::start(&[a.clone(), FakeSlice::new("student", "bob")], 1);
    let stop = Arc::new(AtomicBool::new(false));
    let collect_args = m.args("collect");
    let timer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut passes = 0;
            while !stop.load(Ordering::SeqCst) {
                let _ = common::ds01().args(&collect_args).output();
                passes += 1;
            }
            passes
        })
    };
    let log = m.p("events.jsonl");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                for seq in 0..PER_WRITER {
                    let out = common::ds01()
                        .args([
                            "events",
                            "log",
                            "test.hammer",
                            &format!("user=w{w}"),
                            &format!("seq={seq}"),
                        ])
                        .arg("--file")
                        .arg(&log)
                        .output()
                        .expect("events log");
                    assert!(out.status.success());
                }
            })
        })
        .collect();
    for n in 1..=KILLS {
        bump_oom(&m.root(), &mut a, n);
        std::thread::sleep(Duration::from_millis(40 + (n * 37) % 120));
    }
    for w in writers {
        w.join().expect("writer");
    }
    let logged = |m: &Mon| -> u64 {
        m.ooms()
            .iter()
            .map(|e| e["details"]["oom_count"].as_u64().unwrap_or(0))
            .sum()
    };
    wait_for(|| logged(&m) >= KILLS, "every kill logged");
    // A little longer, with passes still racing: nothing is logged twice.
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::SeqCst);
    let passes = timer.join().expect("timer");
    let text = std::fs::read_to_string(&log).expect("read the log");
    let mut seen = vec![vec![0u32; PER_WRITER]; 8];
    for line in text.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("torn line {line:?}: {e}"));
        if v["event_type"] == "test.hammer" {
            let w: usize = v["user"]
                .as_str()
                .and_then(|u| u[1..].parse().ok())
                .expect("writer");
            let seq = v["details"]["seq"].as_u64().expect("seq") as usize;
            seen[w][seq] += 1;
        }
    }
    assert!(
        seen.iter().flatten().all(|n| *n == 1),
        "a writer's line lost or doubled: {seen:?}"
    );
    assert_eq!(
        logged(&m),
        KILLS,
        "kills logged (monitor and {passes} racing timer passes): {:?}",
        m.ooms()
    );
    eprintln!(
        "{} OOM events for {KILLS} kills, {passes} timer passes, {} writer lines",
        m.ooms().len(),
        8 * PER_WRITER
    );
}
