//! `ds01 collect` on fixture trees: values, limits, PSI, bad files, OOM tracking
//! (rise, reset, inode change, corrupt state, racing passes, attribution), and a
//! real-kernel pass on the host's hybrid cgroup tree.

mod common;
use common::{ds01, require};
use ds01::demo::FakeSlice;
use predicates::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("cg/ds01.slice")
    }
    fn stats(&self) -> PathBuf {
        self.dir.path().join("log/resource-stats.log")
    }
    fn events(&self) -> PathBuf {
        self.dir.path().join("log/events.jsonl")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn cmd(&self) -> assert_cmd::Command {
        self.cmd_at(&self.root())
    }
    fn cmd_at(&self, root: &Path) -> assert_cmd::Command {
        let mut c = ds01();
        c.arg("collect")
            .arg("--cgroup-root")
            .arg(root)
            .arg("--stats-log")
            .arg(self.stats())
            .arg("--state-dir")
            .arg(self.state())
            .arg("--events-log")
            .arg(self.events())
            .arg("--docker-root")
            .arg(self.dir.path().join("docker"));
        c
    }
    fn pass(&self) -> assert_cmd::assert::Assert {
        self.cmd().assert()
    }
    fn stat_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.stats())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("stats line is JSON"))
            .collect()
    }
    fn oom_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.events())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("event is JSON"))
            .filter(|v| v["event_type"] == "resource.oom_kill")
            .collect()
    }
    fn slice(&self, s: &FakeSlice) -> PathBuf {
        s.write(&self.root()).expect("write slice")
    }
}

#[test]
fn values_equal_the_files_in_contract_order() {
    let e = Env::new();
    let mut a = FakeSlice::new("student", "alice");
    a.memory_current = 12 << 30;
    a.memory_max = Some(48 << 30);
    a.pids_current = 17;
    e.slice(&a);
    e.pass().success().stdout("");
    let lines = std::fs::read_to_string(e.stats()).expect("stats");
    let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(lines.trim())
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        &keys[..15],
        [
            "timestamp",
            "user",
            "group",
            "memory_current_bytes",
            "memory_max_bytes",
            "memory_pct",
            "pids_current",
            "pids_max",
            "psi_memory_some_avg10",
            "psi_memory_full_avg10",
            "psi_cpu_some_avg10",
            "psi_cpu_full_avg10",
            "oom_count",
            "oom_kill_count",
            "memory_high_bytes"
        ]
    );
    let v = &e.stat_lines()[0];
    assert_eq!(v["user"], "alice");
    assert_eq!(v["group"], "student");
    assert_eq!(v["memory_current_bytes"], 12u64 << 30);
    assert_eq!(v["memory_max_bytes"], 48u64 << 30);
    assert_eq!(v["memory_pct"], 25.0);
    assert_eq!(v["pids_current"], 17);
    assert_eq!(v["pids_max"], 12288);
    assert_eq!(v["psi_memory_some_avg10"], 1.25);
    assert_eq!(v["psi_cpu_full_avg10"], 0.75);
    assert_eq!(v["memory_high_bytes"], Value::Null);
    assert_eq!(v["cpu_usage_usec"], 123_456_789u64);
    let ts = v["timestamp"].as_str().expect("ts");
    assert!(ts.len() == 20 && ts.ends_with('Z'), "{ts}");
}

#[test]
fn unlimited_is_null_and_pct_zero() {
    let e = Env::new();
    let mut a = FakeSlice::new("admin", "boss");
    a.memory_max = None;
    let dir = e.slice(&a);
    std::fs::write(dir.join("pids.max"), "max\n").expect("write");
    e.pass().success();
    let v = &e.stat_lines()[0];
    assert_eq!(v["memory_max_bytes"], Value::Null);
    assert_eq!(v["memory_pct"], 0.0);
    assert_eq!(v["pids_max"], Value::Null);
}

#[test]
fn every_slice_every_pass_in_one_append() {
    let e = Env::new();
    ds01::demo::write_fake_tree(&e.root(), 25).expect("tree");
    e.pass().success();
    e.pass().success();
    let lines = e.stat_lines();
    assert_eq!(lines.len(), 50);
    let first: std::collections::BTreeSet<&str> = lines[..25]
        .iter()
        .filter_map(|v| v["user"].as_str())
        .collect();
    assert_eq!(first.len(), 25, "all 25 users in the first pass");
}

#[test]
fn a_full_disk_leaves_the_stats_log_on_a_whole_line() {
    // A file size limit (with SIGXFSZ ignored) makes the write short exactly as a
    // nearly full file system does, without root or a tmpfs (the real-kernel guest
    // does it on a real 64 KiB tmpfs).
    let e = Env::new();
    ds01::demo::write_fake_tree(&e.root(), 200).expect("tree");
    e.pass().success();
    let before = std::fs::read(e.stats()).expect("read");
    assert!(
        before.len() > 8192,
        "one pass is bigger than the limit below"
    );
    let cmd = e.cmd();
    let argv: Vec<String> = std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .map(|a| format!("'{a}'"))
        .collect();
    let limit_blocks = (before.len() / 512 + 4) as u64; // room for a few more lines
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {limit_blocks}; exec {}",
            argv.join(" ")
        ))
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no room to write"), "{err}");
    assert!(err.contains("still ends on a whole line"), "{err}");
    let after = std::fs::read(e.stats()).expect("read");
    assert_eq!(after, before, "the partial pass was taken back");
    // The next pass (with room again) appends whole lines after it.
    e.pass().success();
    assert_eq!(e.stat_lines().len(), 400);
}

#[test]
fn sigkill_at_every_step_of_the_oom_update_logs_each_kill_exactly_once() {
    for point in ["oom-intent", "oom-logged", "oom-state-half"] {
        let e = Env::new();
        let mut a = FakeSlice::new("student", "alice");
        e.slice(&a);
        e.pass().success();
        a.oom_kill = 2;
        e.slice(&a);
        let out = e
            .cmd()
            .env("DS01_TEST_FAULT", format!("{point}:1"))
            .output()
            .expect("run");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9), "{point}: the pass was killed");
        // The next pass (the timer, or the monitor) finishes the job.
        e.pass().success();
        e.pass().success();
        let ev = e.oom_events();
        assert_eq!(ev.len(), 1, "{point}: exactly one event, {ev:?}");
        assert_eq!(ev[0]["details"]["total_oom_kills"], 2);
        // And a later kill is still seen.
        a.oom_kill = 3;
        e.slice(&a);
        e.pass().success();
        assert_eq!(e.oom_events().len(), 2, "{point}");
    }
}

#[test]
fn missing_psi_files_leave_the_fields_out() {
    let e = Env::new();
    let mut a = FakeSlice::new("student", "alice");
    a.psi = false;
    e.slice(&a);
    e.slice(&FakeSlice::new("student", "bob"));
    e.pass().success();
    let lines = e.stat_lines();
    let alice = lines.iter().find(|v| v["user"] == "alice").expect("alice");
    assert!(alice.get("psi_memory_some_avg10").is_none());
    assert!(alice.get("psi_cpu_full_avg10").is_none());
    let bob = lines.iter().find(|v| v["user"] == "bob").expect("bob");
    assert_eq!(bob["psi_memory_some_avg10"], 1.25);
}

#[test]
fn a_garbage_or_unreadable_file_fails_one_slice_not_the_pass() {
    let e = Env::new();
    let bad = e.slice(&FakeSlice::new("student", "alice"));
    std::fs::write(bad.join("memory.events"), "oom_kill lots\n").expect("write");
    let unreadable = e.slice(&FakeSlice::new("student", "carol"));
    std::fs::remove_file(unreadable.join("memory.current")).expect("rm");
    std::fs::create_dir(unreadable.join("memory.current")).expect("dir in place of a file");
    e.slice(&FakeSlice::new("student", "bob"));
    e.pass()
        .code(1)
        .stderr(predicate::str::contains(
            "ds01-student-alice.slice/memory.events",
        ))
        .stderr(predicate::str::contains(
            "ds01-student-carol.slice/memory.current",
        ));
    let users: Vec<Value> = e.stat_lines().iter().map(|v| v["user"].clone()).collect();
    assert_eq!(users, [Value::from("bob")]);
}

#[test]
fn foreign_directories_are_skipped_quietly_or_named_with_verbose() {
    let e = Env::new();
    e.slice(&FakeSlice::new("student", "alice"));
    std::fs::create_dir_all(e.root().join("something-else")).expect("mkdir");
    std::fs::create_dir_all(e.root().join("ds01-student.slice/not-a-user")).expect("mkdir");
    std::fs::create_dir_all(e.root().join("ds01-student.slice/ds01-other-bob.slice"))
        .expect("mkdir");
    e.pass().success().stdout("");
    e.cmd()
        .arg("--verbose")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("skipped (not a ds01 slice)")
                .and(predicate::str::contains("something-else")),
        )
        .stdout(predicate::str::contains("not-a-user"))
        .stdout(predicate::str::contains("ds01-other-bob.slice"))
        .stdout(predicate::str::contains("collected 1 user slice(s)"));
}

#[test]
fn oom_rise_logs_exactly_one_event_and_unchanged_none() {
    let e = Env::new();
    let mut a = FakeSlice::new("student", "alice");
    e.slice(&a);
    e.pass()
        .success()
        .stderr(predicate::str::contains("OOM state rebuilt"));
    assert!(e.oom_events().is_empty());
    a.oom_kill = 2;
    e.slice(&a);
    e.pass().success();
    let evs = e.oom_events();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["user"], "alice");
    assert_eq!(evs[0]["details"]["group"], "student");
    assert_eq!(evs[0]["details"]["oom_count"], 2);
    assert_eq!(evs[0]["details"]["total_oom_kills"], 2);
    e.pass().success();
    e.pass().success();
    assert_eq!(e.oom_events().len(), 1, "unchanged count: no new event");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(e.state().join("oom-counts.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state, serde_json::json!({"alice": 2}), "COMPAT.md format");
}

#[test]
fn lower_count_is_a_reset_and_its_kills_are_new() {
    let e = Env::new();
    let mut a = FakeSlice::new("student", "alice");
    a.oom_kill = 5;
    e.slice(&a);
    e.pass().success();
    a.oom_kill = 2;
    e.slice(&a);
    // Without the tracking file the inode cannot tell a new cgroup from the old
    // one: a lower count is taken as a reset (as the older scripts did).
    std::fs::remove_file(e.state().join("oom-tracking.json")).expect("tracking");
    e.pass().success();
    let evs = e.oom_events();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["details"]["oom_count"], 2);
    assert_eq!(evs[0]["details"]["counter_reset"], true);
}

/// The same cgroup (same inode) with a lower count than the state: a read older
/// than the state (a pass that read, then waited for the lock while another pass
/// logged a later kill). Found by the monitor + timer + writers test, where it
/// logged phantom "counter_reset" kills. Nothing is logged and the state stays.
#[test]
fn a_lower_count_from_the_same_cgroup_is_a_stale_read_not_a_reset() {
    let e = Env::new();
    let mut a = FakeSlice::new("student", "alice");
    a.oom_kill = 5;
    e.slice(&a);
    e.pass().success();
    a.oom_kill = 2;
    e.slice(&a);
    e.pass().success();
    assert!(e.oom_events().is_empty(), "{:?}", e.oom_events());
    // The state still holds 5: the next real kill is one kill.
    a.oom_kill = 6;
    e.slice(&a);
    e.pass().success();
    let evs = e.oom_events();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["details"]["oom_count"], 1);
}

#[test]
fn recreated_cgroup_with_same_count_is_a_reset() {
    let e = Env::new();
    let mut a = FakeSlice::new("student", "alice");
    a.oom_kill = 3;
    let dir = e.slice(&a);
    e.pass().success();
    // The slice goes away with its last container and comes back; three new kills
    // bring the fresh counter back to exactly the old value.
    std::fs::rename(&dir, e.dir.path().join("old-slice")).expect("move away");
    e.slice(&a);
    e.pass().success();
    let evs = e.oom_events();
    assert_eq!(evs.len(), 1, "inode change detected");
    assert_eq!(evs[0]["details"]["oom_count"], 3);
}

#[test]
fn new_slice_after_baseline_reports_its_kills() {
    let e = Env::new();
    e.slice(&FakeSlice::new("student", "alice"));
    e.pass().success();
    let mut b = FakeSlice::new("student", "bob");
    b.oom_kill = 1;
    e.slice(&b);
    e.pass().success();
    let evs = e.oom_events();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["user"], "bob");
}

#[test]
fn corrupt_or_empty_state_is_reported_and_rebuilt_without_a_flood() {
    for content in ["{not json", ""] {
        let e = Env::new();
        let mut a = FakeSlice::new("student", "alice");
        a.oom_kill = 7;
        e.slice(&a);
        std::fs::create_dir_all(e.state()).expect("mkdir");
        std::fs::write(e.state().join("oom-counts.json"), content).expect("write");
        e.pass()
            .success()
            .stderr(predicate::str::contains("OOM state rebuilt"));
        assert!(e.oom_events().is_empty(), "no flood of old kills");
        a.oom_kill = 8;
        e.slice(&a);
        e.pass().success();
        assert_eq!(e.oom_events().len(), 1);
        assert_eq!(e.oom_events()[0]["details"]["oom_count"], 1);
    }
}

#[test]
fn kills_are_attributed_to_containers() {
    let e = Env::new();
    let id_a = "a".repeat(64);
    let id_b = "b".repeat(64);
    let mut s = FakeSlice::new("student", "alice");
    s.containers = vec![(id_a.clone(), 0), (id_b.clone(), 0)];
    e.slice(&s);
    e.pass().success();
    let cfg = e.dir.path().join(format!("docker/containers/{id_a}"));
    std::fs::create_dir_all(&cfg).expect("mkdir");
    std::fs::write(
        cfg.join("config.v2.json"),
        r#"{"ID":"x","Name":"/alice-train"}"#,
    )
    .expect("write");
    s.oom_kill = 1;
    s.containers = vec![(id_a.clone(), 1), (id_b.clone(), 0)];
    e.slice(&s);
    e.pass().success();
    let ev = &e.oom_events()[0];
    assert_eq!(ev["details"]["container_id"], id_a.as_str());
    assert_eq!(ev["details"]["container"], "alice-train");
    // Kills in two containers: both listed, the one with more kills named.
    s.oom_kill = 4;
    s.containers = vec![(id_a.clone(), 2), (id_b.clone(), 2)];
    e.slice(&s);
    e.pass().success();
    let ev = &e.oom_events()[1];
    assert_eq!(ev["details"]["oom_count"], 3);
    assert_eq!(
        ev["details"]["container_id"],
        id_b.as_str(),
        "2 new kills in b, 1 in a"
    );
    assert_eq!(
        ev["details"]["container"],
        &id_b[..12],
        "no name known: short id"
    );
    assert_eq!(
        ev["details"]["containers"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn two_racing_passes_log_a_kill_once() {
    let e = Env::new();
    ds01::demo::write_fake_tree(&e.root(), 200).expect("tree");
    e.pass().success();
    for i in 0..200 {
        let mut s = FakeSlice::new(
            if i % 5 == 4 { "researcher" } else { "student" },
            &format!("user{i:04}"),
        );
        s.oom_kill = 1;
        s.write(&e.root()).expect("write");
    }
    let spawn = || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("ds01"))
            .args(e.cmd().get_args())
            .spawn()
            .expect("spawn")
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().expect("wait").success());
    assert!(b.wait().expect("wait").success());
    let evs = e.oom_events();
    assert_eq!(evs.len(), 200, "one event per user, never two");
}

#[test]
fn unwritable_event_log_fails_the_pass_and_the_kill_is_logged_later() {
    let e = Env::new();
    let mut a = FakeSlice::new("student", "alice");
    e.slice(&a);
    e.pass().success();
    a.oom_kill = 1;
    e.slice(&a);
    // A directory where the event log should be.
    std::fs::create_dir_all(e.events()).expect("mkdir");
    e.pass().code(1).stderr(predicate::str::contains(
        "OOM events not logged (will retry next pass)",
    ));
    assert_eq!(e.stat_lines().len(), 2, "stats still written");
    std::fs::remove_dir(e.events()).expect("rmdir");
    e.pass().success();
    assert_eq!(e.oom_events().len(), 1);
}

#[test]
fn hybrid_host_reads_memory_and_pids_from_v1() {
    let e = Env::new();
    let base = e.dir.path().join("hy");
    let unified = base.join("unified/ds01.slice");
    let rel = Path::new("ds01-student.slice/ds01-student-alice.slice");
    let v2 = unified.join(rel);
    std::fs::create_dir_all(&v2).expect("mkdir");
    std::fs::write(v2.join("memory.pressure"), "some avg10=2.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=1\n").expect("psi");
    let mem = base.join("memory/ds01.slice").join(rel);
    std::fs::create_dir_all(&mem).expect("mkdir");
    std::fs::write(mem.join("memory.usage_in_bytes"), "1073741824\n").expect("w");
    std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").expect("w");
    std::fs::write(
        mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
    )
    .expect("w");
    let pids = base.join("pids/ds01.slice").join(rel);
    std::fs::create_dir_all(&pids).expect("mkdir");
    std::fs::write(pids.join("pids.current"), "9\n").expect("w");
    std::fs::write(pids.join("pids.max"), "max\n").expect("w");
    e.cmd_at(&unified).assert().success();
    let v = &e.stat_lines()[0];
    assert_eq!(v["memory_current_bytes"], 1u64 << 30);
    assert_eq!(v["memory_max_bytes"], Value::Null, "v1 'unlimited' is null");
    assert_eq!(v["oom_kill_count"], 4);
    assert_eq!(v["pids_current"], 9);
    assert_eq!(v["psi_memory_some_avg10"], 2.0);
}

/// The host's own kernel: a hybrid tree (cgroup v1 memory/pids + v2 `unified` with
/// PSI). Creates real cgroups, runs a process that uses memory in them, collects,
/// then makes the kernel OOM-kill in the slice and checks the event.
#[test]
fn real_kernel_hybrid_host_pass() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let memory = Path::new("/sys/fs/cgroup/memory");
    let usable = rustix::process::geteuid().is_root()
        && unified.join("cgroup.procs").exists()
        && memory.join("cgroup.procs").exists()
        && unified.join("cpu.pressure").exists();
    if !require(
        usable,
        "root and a hybrid cgroup tree with PSI at /sys/fs/cgroup/{unified,memory}",
    ) {
        return;
    }
    let tag = format!("t{}", std::process::id());
    let rel = PathBuf::from(format!(
        "ds01.slice/ds01-{tag}.slice/ds01-{tag}-alice.slice"
    ));
    let dirs = [
        unified.join(&rel),
        memory.join(&rel),
        Path::new("/sys/fs/cgroup/pids").join(&rel),
    ];
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap_or_else(|err| panic!("mkdir {}: {err}", d.display()));
    }
    std::fs::write(dirs[1].join("memory.limit_in_bytes"), "67108864").expect("set v1 memory limit");
    let join = dirs
        .iter()
        .map(|d| format!("echo $$ > {}/cgroup.procs;", d.display()))
        .collect::<String>();
    // A shell that joins the slice, then holds 20 MB in a variable.
    let sh = |body: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{join} {body}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sh")
    };
    let mut holder = sh("x=$(head -c 20000000 /dev/zero | tr '\\0' a); sleep 30");
    let usage = dirs[1].join("memory.usage_in_bytes");
    for _ in 0..100 {
        let u: u64 = std::fs::read_to_string(&usage)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if u > 10 << 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let e = Env::new();
    let root = unified.join("ds01.slice");
    let first = e.cmd_at(&root).output().expect("run collect");
    // Now 200 MB in a 64 MB cgroup: the kernel OOM-kills inside the slice.
    let hog = sh("y=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived");
    let hog_out = hog.wait_with_output().expect("hog exits");
    let second = e.cmd_at(&root).output().expect("run collect");
    let _ = holder.kill();
    let _ = holder.wait();
    for d in &dirs {
        common::remove_cgroup(d);
    }
    assert!(
        first.status.success(),
        "collect failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        second.status.success(),
        "collect failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let lines = e.stat_lines();
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|v| v["group"] == tag.as_str())
        .collect();
    assert_eq!(ours.len(), 2, "our slice in both passes");
    let v = ours[0];
    eprintln!("real kernel stats line: {v}");
    assert_eq!(v["memory_max_bytes"], 67_108_864u64);
    assert!(
        v["memory_current_bytes"]
            .as_u64()
            .is_some_and(|m| m > 10 << 20),
        "{v}"
    );
    assert!(v["pids_current"].as_u64().is_some_and(|p| p >= 1), "{v}");
    assert!(v["psi_cpu_some_avg10"].is_number(), "real PSI parsed: {v}");
    assert!(v["psi_memory_full_avg10"].is_number(), "{v}");
    assert!(
        !String::from_utf8_lossy(&hog_out.stdout).contains("survived"),
        "the hog was not killed"
    );
    let after = ours[1];
    eprintln!("after the OOM kill: {after}");
    assert!(
        after["oom_kill_count"].as_u64().is_some_and(|n| n >= 1),
        "{after}"
    );
    let evs: Vec<Value> = e
        .oom_events()
        .into_iter()
        .filter(|v| v["details"]["group"] == tag.as_str())
        .collect();
    assert_eq!(evs.len(), 1, "exactly one resource.oom_kill event: {evs:?}");
    assert_eq!(evs[0]["details"]["oom_count"], after["oom_kill_count"]);
}

#[test]
fn a_container_counter_seen_before_its_slice_still_attributes_the_kill() {
    // The kernel counts up the hierarchy: a reader can see the container's oom_kill
    // rise a moment before the slice's (the monitor reads on the first change).
    let e = Env::new();
    let id = "e".repeat(64);
    let mut s = FakeSlice::new("student", "alice");
    s.containers = vec![(id.clone(), 0)];
    e.slice(&s);
    e.pass().success();
    s.containers = vec![(id.clone(), 1)];
    e.slice(&s);
    e.pass().success();
    assert!(
        e.oom_events().is_empty(),
        "the slice has not counted the kill yet"
    );
    s.oom_kill = 1;
    e.slice(&s);
    e.pass().success();
    let evs = e.oom_events();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["details"]["container_id"], id.as_str());
    // The same race for a container started since the last read (found in the
    // real-kernel guest: the kill went unattributed): it counts from 0.
    let new_id = "f".repeat(64);
    s.containers = vec![(id.clone(), 1), (new_id.clone(), 1)];
    e.slice(&s);
    e.pass().success();
    assert_eq!(e.oom_events().len(), 1, "the slice has not counted it yet");
    s.oom_kill = 2;
    e.slice(&s);
    e.pass().success();
    let evs = e.oom_events();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[1]["details"]["container_id"], new_id.as_str());
}

/// A kill no present container counted, with one container of the same cgroup
/// gone since the last read, names that container (its scope went with it);
/// with two gone, or in a new cgroup, or with one that counted it, it does not
/// guess.
#[test]
fn a_kill_after_its_containers_scope_went_names_the_one_that_went() {
    use ds01::collect::{SliceStats, Tracking, oom_rise};
    let tracking = |inode: u64, ids: &[&str]| Tracking {
        inode: Some(inode),
        containers: ids.iter().map(|i| (i.to_string(), 0)).collect(),
    };
    let now = |inode: u64, kills: u64, ids: &[(&str, u64)]| SliceStats {
        inode: Some(inode),
        events: Some(ds01::cgroup::MemoryEvents {
            oom_kill: Some(kills),
            ..Default::default()
        }),
        containers: ids.iter().map(|(i, n)| (i.to_string(), *n)).collect(),
        ..Default::default()
    };
    let r = oom_rise(
        Some(0),
        Some(&tracking(7, &["a", "b"])),
        &now(7, 1, &[("b", 0)]),
    );
    assert_eq!(
        (r.new_kills, r.containers.clone(), r.container_gone),
        (1, vec![("a".to_string(), 1)], true)
    );
    // Two went: no guess.
    let r = oom_rise(Some(0), Some(&tracking(7, &["a", "b"])), &now(7, 1, &[]));
    assert!(r.containers.is_empty() && !r.container_gone);
    // A new cgroup (re-created slice): the old one's containers say nothing.
    let r = oom_rise(Some(0), Some(&tracking(7, &["a"])), &now(8, 1, &[]));
    assert!(r.containers.is_empty() && !r.container_gone && r.reset);
    // A present container counted it: that one, not the one that went.
    let r = oom_rise(
        Some(0),
        Some(&tracking(7, &["a", "b"])),
        &now(7, 1, &[("b", 1)]),
    );
    assert_eq!(
        (r.containers.clone(), r.container_gone),
        (vec![("b".to_string(), 1)], false)
    );
    // No kill: nothing named.
    let r = oom_rise(Some(1), Some(&tracking(7, &["a"])), &now(7, 1, &[]));
    assert!(r.containers.is_empty() && r.new_kills == 0);
}
