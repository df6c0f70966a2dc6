//! `ds01 gpu` through the binary, on the recorded snapshots under demo/gpu with a
//! fake Docker daemon; and, where a GPU is present, against the real NVML.

mod common;
use common::Fixture;
use common::engine::{Daemon, inspect, serve};
use predicates::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";

fn demo(which: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("demo/gpu")
        .join(which)
}

fn holding(id: &str, name: &str, user: &str, gpus: &[&str]) -> Value {
    let mut c = inspect(id, name, user, "docker", 600, 0);
    c["HostConfig"]["DeviceRequests"] =
        json!([{"Driver": "", "Count": 0, "DeviceIDs": gpus, "Capabilities": [["gpu"]]}]);
    c
}

/// A config that makes the test runner an admin, exempting datasciencelab.
fn fixture() -> Fixture {
    let me = ds01::docker::identity::current().expect("who am I");
    Fixture::new(&format!(
        "groups:\n  student:\n    members: [alice]\n  researcher:\n    members: [bob]\nbare_metal_access:\n  exempt_users: [datasciencelab]\naccess_control:\n  admin_users: [{:?}]\n",
        me.name
    ))
}

/// `ds01 gpu --json` on this host's own GPUs (no replayed snapshot).
fn host_gpu_json(f: &Fixture) -> Value {
    let out = f
        .ds01(&["gpu", "--json"])
        .env_remove("DS01_GPU_SNAPSHOT")
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).expect("json")
}

fn daemon(dir: &Path) -> PathBuf {
    let socket = dir.join("docker.sock");
    let d = Arc::new(Mutex::new(Daemon::default()));
    {
        let mut st = d.lock().expect("lock");
        st.containers
            .insert(A.into(), holding(A, "alice-train", "alice", &["0"]));
        st.containers.insert(
            B.into(),
            holding(
                B,
                "bob-notebook",
                "bob",
                &["GPU-11111111-bbbb-0000-0000-000000000000"],
            ),
        );
    }
    serve(&socket, d);
    socket
}

fn gpu_cmd(f: &Fixture, which: &str, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = f.ds01(&["gpu"]);
    cmd.args(args)
        .env("DS01_GPU_SNAPSHOT", demo(which).join("snapshot.json"))
        .env("DS01_PROC_ROOT", demo(which).join("proc"))
        .env("DS01_STATE_DIR", f.path().join("state"));
    cmd
}

#[test]
fn the_table_names_holders_processes_and_the_lost_gpu() {
    let f = fixture();
    let sock = daemon(f.path());
    let out = gpu_cmd(
        &f,
        "plain",
        &["--docker-socket", sock.to_str().expect("utf-8")],
    )
    .assert()
    .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let row = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} row in\n{text}"))
            .to_string()
    };
    assert!(row("0 ").contains("alice-train"), "{text}");
    assert!(row("1 ").contains("bob-notebook"), "{text}");
    assert!(row("2 ").contains("free"), "{text}");
    assert!(row("3 ").contains("fallen off the bus"), "{text}");
    let dsl = row("    4301");
    assert!(
        dsl.contains("datasciencelab") && dsl.contains("bare metal (exempt)"),
        "{dsl}"
    );
    assert!(row("    4999").contains("exited"));
    assert!(text.contains("warning: GPU 3:"), "{text}");
}

#[test]
fn json_has_per_user_totals() {
    let f = fixture();
    let sock = daemon(f.path());
    let out = gpu_cmd(
        &f,
        "plain",
        &["--json", "--docker-socket", sock.to_str().expect("utf-8")],
    )
    .assert()
    .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    assert_eq!(v["users"]["alice"]["allocated"], 1);
    assert_eq!(v["users"]["alice"]["memory_bytes"], 38u64 << 30);
    assert_eq!(v["users"]["bob"]["in_use"], 0);
    assert_eq!(v["devices"][0]["holders"][0]["container"], "alice-train");
    assert_eq!(v["users"]["mallory"]["bare_metal_processes"], 1);
}

#[test]
fn an_unreachable_docker_leaves_holders_unknown_and_says_so() {
    let f = fixture();
    let out = gpu_cmd(&f, "mig", &["--docker-socket", "/nonexistent/docker.sock"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("Docker did not answer"), "{text}");
    assert!(text.contains("(MIG mode)"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(" 0:0") && l.contains("MIG 3g.20gb") && l.contains(" ? ")),
        "{text}"
    );
    // carol's process is attributed from the recorded /proc facts.
    assert!(
        text.lines()
            .any(|l| l.contains("5101") && l.contains("carol")),
        "{text}"
    );
}

#[test]
fn a_snapshot_records_proc_facts_and_replays() {
    let f = fixture();
    let out = gpu_cmd(&f, "plain", &["--snapshot"]).assert().success();
    let s: Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    let p0 = &s["processes"][0];
    assert_eq!(p0["pid"], 4101);
    assert!(
        p0["cgroup"]
            .as_str()
            .is_some_and(|c| c.contains("ds01-student-alice.slice"))
    );
    // The vanished pid records nothing.
    let gone = s["processes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["pid"] == 4999))
        .expect("4999");
    assert!(gone.get("cgroup").is_none());
    // The recording replays on its own (no /proc fixture needed).
    let rec = f.path().join("rec.json");
    std::fs::write(&rec, out.get_output().stdout.clone()).expect("write");
    let again = f
        .ds01(&["gpu", "--json", "--docker-socket", "/nonexistent"])
        .env("DS01_GPU_SNAPSHOT", &rec)
        .env("DS01_PROC_ROOT", "/nonexistent")
        .env("DS01_STATE_DIR", f.path().join("state"))
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&again.get_output().stdout).expect("json");
    assert_eq!(v["users"]["alice"]["memory_bytes"], 38u64 << 30);
}

#[test]
fn a_broken_snapshot_is_a_clear_error() {
    let f = fixture();
    let bad = f.path().join("bad.json");
    std::fs::write(&bad, "{\"gpus\": [").expect("write");
    f.ds01(&["gpu"])
        .env("DS01_GPU_SNAPSHOT", &bad)
        .assert()
        .code(1)
        .stderr(
            predicates::str::contains("GPU snapshot").and(predicates::str::contains("bad.json")),
        );
}

#[test]
fn without_a_driver_there_are_no_gpus_not_an_error() {
    if common::nvml_present() {
        eprintln!(
            "SKIP without_a_driver_…: this host has libnvidia-ml (see real_nvml_matches_nvidia_smi)"
        );
        return;
    }
    let f = fixture();
    f.ds01(&["gpu"])
        .env_remove("DS01_GPU_SNAPSHOT")
        .assert()
        .success()
        .stdout(predicates::str::contains("no GPUs: no NVIDIA driver"));
    let v = host_gpu_json(&f);
    assert_eq!(v["devices"], json!([]));
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no NVIDIA driver")),
        "{v}"
    );
}

/// Real hardware: `ds01 gpu --json` against `nvidia-smi`'s view of the same GPUs.
#[test]
fn real_nvml_matches_nvidia_smi() {
    if !common::nvml_present() {
        eprintln!(
            "SKIP real_nvml_matches_nvidia_smi: no NVIDIA driver on this host (libnvidia-ml.so.1 not found); the snapshot tests above stand in"
        );
        return;
    }
    let f = fixture();
    let v = host_gpu_json(&f);
    let smi = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=uuid,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .expect("nvidia-smi");
    let text = String::from_utf8_lossy(&smi.stdout);
    for line in text.lines() {
        let mut parts = line.split(',').map(str::trim);
        let (Some(uuid), Some(total_mib)) = (parts.next(), parts.next()) else {
            continue;
        };
        let d = v["devices"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["uuid"] == uuid))
            .unwrap_or_else(|| panic!("{uuid} missing from ds01 gpu"));
        let mib: u64 = total_mib.parse().expect("MiB");
        assert_eq!(
            d["memory_total_bytes"].as_u64().map(|b| b >> 20),
            Some(mib),
            "{uuid}"
        );
    }
}
