//! The docker wrapper, hermetically: a fake real docker that records its argv, a
//! fake Engine API on a unix socket, a fixture cgroup tree and recorded nvidia-smi
//! output. Every argument form, refusal, admin rule, fail-open and the recursion
//! guard.

mod common;
use common::Fixture;
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
  shm_size: 4g
  pids_limit: 4096
  max_containers_per_user: 3
  max_gpu_slots_per_container: 2
  gpu_hold_after_stop_h: 0.25
default_group: student
groups:
  student:
    members: [alice]
    aggregate:
      cpu_quota: \"2400%\"
      memory_max: \"48G\"
      memory_high: \"43G\"
      tasks_max: 1000
      gpu_limit: 2.0
  admin:
    members: [boss]
";

const SMI: &str = "GPU 0: NVIDIA A100 (UUID: GPU-aaaa)\nGPU 1: NVIDIA A100 (UUID: GPU-bbbb)\nGPU 2: NVIDIA A100 (UUID: GPU-cccc)\nGPU 3: NVIDIA A100 (UUID: GPU-dddd)\n";

struct Env {
    f: Fixture,
    record: PathBuf,
    fake_docker: PathBuf,
    socket: PathBuf,
    cg: PathBuf,
    events: PathBuf,
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Serve canned Engine API answers until the test process ends.
fn serve(socket: &Path, containers: Value, inspects: Vec<(String, Value)>) {
    let listener = UnixListener::bind(socket).expect("bind fake docker socket");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut first = String::new();
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).map_or(true, |n| n == 0) || l == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("");
            let body = if path.starts_with("/containers/json") {
                assert!(
                    path.contains("ds01.user%3Dalice") || path.contains("ds01.user%3D"),
                    "{path}"
                );
                // `all=1` lists stopped containers too (those with "State": "exited").
                let all = path.contains("all=1");
                let list: Vec<&Value> = containers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| all || c["State"] != "exited")
                    .collect();
                serde_json::to_string(&list).expect("json")
            } else if let Some((_, v)) = inspects
                .iter()
                .find(|(id, _)| path == format!("/containers/{id}/json"))
            {
                v.to_string()
            } else {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            };
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

impl Env {
    fn new(containers: Value, inspects: Vec<(String, Value)>) -> Env {
        let f = Fixture::new(CFG);
        let d = f.path().to_path_buf();
        let record = d.join("argv.txt");
        let fake_docker = d.join("fake-docker");
        std::fs::write(
            &fake_docker,
            format!("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > {}\nexit ${{FAKE_EXIT:-0}}\n", record.display()),
        )
        .expect("write fake docker");
        chmod_x(&fake_docker);
        let smi = d.join("nvidia-smi");
        std::fs::write(&smi, format!("#!/bin/sh\ncat <<'EOF'\n{SMI}EOF\n"))
            .expect("write fake nvidia-smi");
        chmod_x(&smi);
        let socket = d.join("docker.sock");
        serve(&socket, containers, inspects);
        let cg = d.join("cg/ds01.slice");
        let events = d.join("events.jsonl");
        Env {
            f,
            record,
            fake_docker,
            socket,
            cg,
            events,
        }
    }

    fn set_usage(&self, memory: u64, pids: u64) {
        let dir = self.cg.join("ds01-student.slice/ds01-student-alice.slice");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("memory.current"), format!("{memory}\n")).expect("write");
        std::fs::write(dir.join("pids.current"), format!("{pids}\n")).expect("write");
    }

    fn cmd(&self, user: Option<&str>, args: &[&str]) -> assert_cmd::Command {
        let mut c = self.f.ds01(&["docker"]);
        c.args(args)
            .env("DS01_REAL_DOCKER", &self.fake_docker)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DS01_CGROUP_ROOT", &self.cg)
            .env("DS01_EVENTS_LOG", &self.events)
            .env("DS01_NVIDIA_SMI", self.f.path().join("nvidia-smi"))
            .env("DS01_STATE_DIR", self.f.path().join("state"))
            .env_remove("DS01_WRAPPER_BYPASS");
        match user {
            Some(u) => c.env("DS01_WRAPPER_USER", u),
            None => c.env_remove("DS01_WRAPPER_USER"),
        };
        c
    }

    /// What the fake docker was called with; `None` if it was not called.
    fn argv(&self) -> Option<Vec<String>> {
        std::fs::read_to_string(&self.record)
            .ok()
            .map(|t| t.lines().map(String::from).collect())
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("event json"))
            .collect()
    }
}

fn v(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn gpu_container(id: &str, name: &str, devices: &[&str]) -> (Value, (String, Value)) {
    (
        json!({"Id": id, "Names": [format!("/{name}")], "Labels": {"ds01.user": "alice"}}),
        (
            id.to_string(),
            json!({"Id": id, "HostConfig": {"DeviceRequests": [{"Driver": "", "Count": 0, "DeviceIDs": devices, "Capabilities": [["gpu"]]}]}}),
        ),
    )
}

#[test]
fn other_commands_pass_through_untouched_with_their_exit_code() {
    let e = Env::new(json!([]), vec![]);
    for (args, code) in [
        ("ps -a", 0),
        ("exec -it box sh -c exit", 3),
        ("logs --tail 5 box", 0),
        ("--context x image ls", 0),
    ] {
        let a = v(args);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        e.cmd(Some("alice"), &refs)
            .env("FAKE_EXIT", code.to_string())
            .assert()
            .code(code);
        assert_eq!(e.argv(), Some(a), "{args}");
    }
    assert!(e.events().is_empty(), "pass-through logs nothing");
}

#[test]
fn run_is_placed_labelled_and_given_defaults() {
    let e = Env::new(json!([]), vec![]);
    e.set_usage(1 << 30, 10);
    e.cmd(
        Some("alice"),
        &[
            "run",
            "-itd",
            "--name",
            "job",
            "busybox",
            "sh",
            "-c",
            "echo --memory 99g",
        ],
    )
    .assert()
    .success();
    let argv = e.argv().expect("docker called");
    assert_eq!(
        argv,
        [
            "run",
            "-itd",
            "--name",
            "job",
            "--cgroup-parent=ds01-student-alice.slice",
            "--label",
            "ds01.user=alice",
            "--label",
            "ds01.managed=true",
            "--label",
            "ds01.container_type=docker",
            "--cpus=8",
            "--memory=16g",
            "--memory-swap=16g",
            "--shm-size=4g",
            "--pids-limit=4096",
            "busybox",
            "sh",
            "-c",
            "echo --memory 99g",
        ]
    );
    let ev = e
        .events()
        .into_iter()
        .find(|v| v["event_type"] == "docker.cgroup_inject")
        .expect("inject event");
    assert_eq!(ev["user"], "alice");
    assert_eq!(ev["details"]["container"], "job");
    assert_eq!(ev["details"]["slice"], "ds01-student-alice.slice");
}

#[test]
fn given_values_are_kept_in_every_form() {
    let e = Env::new(json!([]), vec![]);
    for args in [
        "run -m 2g img",
        "run --memory=2g img",
        "run -m2g img",
        "container run --memory 2g img",
        "create -m=2g img",
    ] {
        let a = v(args);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        e.cmd(Some("alice"), &refs).assert().success();
        let argv = e.argv().expect("called");
        assert!(
            !argv.iter().any(|x| x == "--memory=16g"),
            "{args}: default not added over a given value: {argv:?}"
        );
        assert_eq!(argv.last().map(String::as_str), Some("img"));
        assert!(argv.contains(&"--cpus=8".to_string()));
    }
}

#[test]
fn memory_over_the_aggregate_is_refused_with_a_box_and_an_event() {
    let e = Env::new(json!([]), vec![]);
    e.set_usage(40 << 30, 10);
    e.cmd(Some("alice"), &["run", "--memory", "12g", "pytorch"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("ds01: container not started"))
        .stderr(predicate::str::contains(
            "12 GiB of memory for this container",
        ))
        .stderr(predicate::str::contains(
            "40 GiB by your running containers",
        ))
        .stderr(predicate::str::contains("48 GiB in total"))
        .stderr(predicate::str::contains("docker stop NAME"));
    assert_eq!(e.argv(), None, "docker never called");
    let ev = e
        .events()
        .into_iter()
        .find(|v| v["event_type"] == "quota.memory_exceeded")
        .expect("event");
    assert_eq!(ev["user"], "alice");
    assert_eq!(ev["details"]["image"], "pytorch");
    // Within quota: allowed.
    e.cmd(Some("alice"), &["run", "--memory", "8g", "pytorch"])
        .assert()
        .success();
}

#[test]
fn a_stopped_containers_gpus_stay_held_for_gpu_hold_after_stop_h() {
    let (c1, i1) = gpu_container("c1", "alice-train", &["0"]);
    let stopped = |id: &str, name: &str, ago_min: i64| {
        let (mut c, (id, mut i)) = gpu_container(id, name, &["1"]);
        c["State"] = json!("exited");
        let at = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(ago_min);
        i["Name"] = json!(format!("/{name}"));
        i["State"] = json!({"Status": "exited", "FinishedAt": at.to_string()});
        (c, (id, i))
    };
    // Stopped 5 minutes ago: within the 15-minute hold, its GPU still counts.
    let (c2, i2) = stopped("c2", "alice-old", 5);
    let e = Env::new(json!([c1, c2]), vec![i1, i2]);
    e.set_usage(1 << 30, 10);
    e.cmd(Some("alice"), &["run", "--gpus", "device=2", "img"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "1 by your running containers, 1 held for stopped ones (alice-old; gpu_hold_after_stop_h)",
        ));
    // Stopped an hour ago: the hold is over.
    let (c1, i1) = gpu_container("c1", "alice-train", &["0"]);
    let (c3, i3) = stopped("c3", "alice-older", 60);
    let e = Env::new(json!([c1, c3]), vec![i1, i3]);
    e.set_usage(1 << 30, 10);
    e.cmd(Some("alice"), &["run", "--gpus", "device=2", "img"])
        .assert()
        .success();
}

#[test]
fn gpus_over_the_aggregate_are_refused() {
    let (c1, i1) = gpu_container("c1", "alice-train", &["0"]);
    let e = Env::new(json!([c1]), vec![i1]);
    e.set_usage(1 << 30, 10);
    e.cmd(Some("alice"), &["run", "--gpus", "2", "img"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("2 GPU-equivalents"))
        .stderr(predicate::str::contains(
            "1 GPU-equivalents by your running containers",
        ));
    assert!(
        e.events()
            .iter()
            .any(|v| v["event_type"] == "quota.gpu_exceeded")
    );
    e.cmd(Some("alice"), &["run", "--gpus", "device=3", "img"])
        .assert()
        .success();
    // --gpus all = every GPU on the host (4) — above the per-container cap of 2.
    e.cmd(Some("alice"), &["run", "--gpus", "all", "img"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("2 GPU device(s) per container"));
}

#[test]
fn container_count_is_enforced() {
    let list: Vec<Value> = (0..3)
        .map(|i| json!({"Id": format!("c{i}"), "Names": [format!("/alice-{i}")]}))
        .collect();
    let inspects = (0..3)
        .map(|i| (format!("c{i}"), json!({"HostConfig": {}})))
        .collect();
    let e = Env::new(Value::Array(list), inspects);
    e.set_usage(1 << 30, 10);
    e.cmd(Some("alice"), &["run", "img"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "3 running: alice-0, alice-1, alice-2",
        ))
        .stderr(predicate::str::contains("3 containers at once"));
    assert!(
        e.events()
            .iter()
            .any(|v| v["event_type"] == "quota.containers_exceeded")
    );
}

#[test]
fn per_container_maxima_name_the_limit() {
    let e = Env::new(json!([]), vec![]);
    e.set_usage(0, 0);
    e.cmd(Some("alice"), &["run", "--cpus", "64", "img"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("8 CPUs per container"));
    e.cmd(Some("alice"), &["run", "-m", "100g", "img"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("16 GiB memory per container"));
    e.cmd(Some("alice"), &["run", "--gpus", "3", "img"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("2 GPU device(s) per container"));
    e.cmd(Some("alice"), &["run", "--gpus", "lots", "img"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not a GPU request"));
    assert_eq!(e.argv(), None);
}

#[test]
fn tasks_near_the_limit_warn_but_run() {
    let e = Env::new(json!([]), vec![]);
    e.set_usage(1 << 30, 950);
    e.cmd(Some("alice"), &["run", "img"])
        .assert()
        .success()
        .stderr(predicate::str::contains("950 of 1000 tasks"));
}

#[test]
fn cgroup_parent_is_for_admins_only() {
    let e = Env::new(json!([]), vec![]);
    e.set_usage(0, 0);
    e.cmd(
        Some("alice"),
        &["run", "--cgroup-parent=other.slice", "img"],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains(
        "your containers always run in ds01-student-alice.slice",
    ));
    // A config admin chooses their own and is not quota-checked.
    e.cmd(
        Some("boss"),
        &["run", "--cgroup-parent=other.slice", "--cpus", "500", "img"],
    )
    .assert()
    .success();
    let argv = e.argv().expect("called");
    assert!(argv.contains(&"--cgroup-parent=other.slice".to_string()));
    assert!(!argv.iter().any(|a| a.starts_with("--cgroup-parent=ds01")));
    // Root (no impersonation) is an admin too.
    e.cmd(None, &["run", "--cgroup-parent=x.slice", "img"])
        .assert()
        .success();
}

#[test]
fn container_type_from_labels() {
    let e = Env::new(json!([]), vec![]);
    e.cmd(
        Some("alice"),
        &["run", "-l", "devcontainer.local_folder=/x", "img"],
    )
    .assert()
    .success();
    assert!(
        e.argv()
            .expect("called")
            .contains(&"ds01.container_type=devcontainer".to_string())
    );
    e.cmd(
        Some("alice"),
        &["create", "--label", "com.docker.compose.project=p", "img"],
    )
    .assert()
    .success();
    assert!(
        e.argv()
            .expect("called")
            .contains(&"ds01.container_type=compose".to_string())
    );
}

#[test]
fn fail_open_loudly_when_config_or_api_cannot_be_read() {
    let e = Env::new(json!([]), vec![]);
    std::fs::write(e.f.config(), "groups: [broken\n").expect("break config");
    e.cmd(Some("alice"), &["run", "img"])
        .assert()
        .success()
        .stderr(predicate::str::contains("warning: cannot use the config"));
    assert_eq!(e.argv(), Some(v("run img")), "allowed, untouched");
    assert!(
        e.events()
            .iter()
            .any(|v| v["event_type"] == "docker.fail_open")
    );

    let e = Env::new(json!([]), vec![]);
    e.set_usage(0, 0);
    let mut c = e.cmd(Some("alice"), &["run", "img"]);
    c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    c.assert()
        .success()
        .stderr(predicate::str::contains("cannot reach the Docker daemon"))
        .stderr(predicate::str::contains("not checked"));
    assert!(
        e.argv()
            .expect("called")
            .contains(&"--cgroup-parent=ds01-student-alice.slice".to_string())
    );
    assert!(
        e.events()
            .iter()
            .any(|v| v["event_type"] == "docker.fail_open")
    );
}

#[test]
fn a_broken_config_enforces_the_last_good_one() {
    let e = Env::new(json!([]), vec![]);
    e.set_usage(0, 0);
    // A clean load saves the snapshot.
    e.cmd(Some("alice"), &["run", "img"]).assert().success();
    assert!(e.f.path().join("state/last-good-config.json").exists());
    // One inconsistent group breaks the file.
    let good = std::fs::read_to_string(e.f.config()).expect("read");
    let broken = good.replace("  student:\n", "  student:\n    memory_swap: 1g\n");
    assert_ne!(good, broken);
    std::fs::write(e.f.config(), broken).expect("break config");
    e.cmd(Some("alice"), &["run", "img"])
        .assert()
        .success()
        .stderr(predicate::str::contains("the config is broken ("))
        .stderr(predicate::str::contains(
            "enforcing the last config that loaded cleanly",
        ));
    let argv = e.argv().expect("called");
    assert!(
        argv.contains(&"--cgroup-parent=ds01-student-alice.slice".to_string()),
        "{argv:?}"
    );
    assert!(
        argv.contains(&"--memory=16g".to_string()),
        "the defaults, from the snapshot: {argv:?}"
    );
    assert!(
        e.events()
            .iter()
            .any(|v| v["event_type"] == "config.invalid" && v["user"] == "alice")
    );
    // And a non-admin's own cgroup parent is refused, as with a good config.
    e.cmd(
        Some("alice"),
        &["run", "--cgroup-parent=system.slice", "img"],
    )
    .assert()
    .code(1);
}

#[test]
fn bypass_is_for_admins_only() {
    let e = Env::new(json!([]), vec![]);
    e.set_usage(0, 0);
    e.cmd(Some("boss"), &["run", "img"])
        .env("DS01_WRAPPER_BYPASS", "1")
        .assert()
        .success();
    assert_eq!(e.argv(), Some(v("run img")));
    e.cmd(Some("alice"), &["run", "img"])
        .env("DS01_WRAPPER_BYPASS", "1")
        .assert()
        .success()
        .stderr(predicate::str::contains("for admins only; ignored"));
    assert!(
        e.argv()
            .expect("called")
            .contains(&"--cgroup-parent=ds01-student-alice.slice".to_string())
    );
}

#[test]
fn recursion_guard() {
    let e = Env::new(json!([]), vec![]);
    let mut c = e.cmd(Some("alice"), &["ps"]);
    c.env("DS01_REAL_DOCKER", assert_cmd::cargo::cargo_bin("ds01"));
    c.assert()
        .code(1)
        .stderr(predicate::str::contains("is ds01 itself"));
}

#[test]
fn invoked_through_a_link_named_docker() {
    let e = Env::new(json!([]), vec![]);
    e.set_usage(0, 0);
    let link = e.f.path().join("bin/docker");
    std::fs::create_dir_all(link.parent().expect("dir")).expect("mkdir");
    std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("ds01"), &link).expect("symlink");
    let status = std::process::Command::new(&link)
        .args(["run", "--help-me-not", "img"])
        .env("DS01_CONFIG", e.f.config())
        .env("DS01_REAL_DOCKER", &e.fake_docker)
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("DS01_CGROUP_ROOT", &e.cg)
        .env("DS01_EVENTS_LOG", &e.events)
        .env("DS01_WRAPPER_USER", "alice")
        .status()
        .expect("run link");
    assert!(status.success());
    let argv = e.argv().expect("called");
    assert_eq!(argv.first().map(String::as_str), Some("run"));
    assert!(argv.contains(&"--cgroup-parent=ds01-student-alice.slice".to_string()));
    assert!(argv.contains(&"--help-me-not".to_string()));
    // --help goes to docker, not to ds01.
    let status = std::process::Command::new(&link)
        .args(["--help"])
        .env("DS01_REAL_DOCKER", &e.fake_docker)
        .status()
        .expect("run link");
    assert!(status.success());
    assert_eq!(e.argv(), Some(v("--help")));
}
