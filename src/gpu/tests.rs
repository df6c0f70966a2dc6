use super::attribute::parse_cgroup;
use super::report::{self, ContainerInfo, IdleState, Inputs, Report};
use super::*;
use std::path::PathBuf;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";
const C: &str = "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc3";
const G: u64 = 1 << 30;

fn demo(which: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("demo/gpu")
        .join(which)
}

fn snap(which: &str) -> Snapshot {
    read_snapshot(&demo(which).join("snapshot.json")).expect("fixture")
}

fn c(id: &str, name: &str, user: &str, gpus: &[&str]) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: name.into(),
        user: user.into(),
        gpus: gpus.iter().map(|g| g.to_string()).collect(),
    }
}

fn now() -> jiff::Timestamp {
    "2026-12-01T10:00:00Z".parse().expect("time")
}

fn plain(containers: Option<&[ContainerInfo]>, idle: &IdleState) -> Report {
    let s = snap("plain");
    report::build(
        &s,
        "replay",
        &Inputs {
            containers,
            proc_root: &demo("plain").join("proc"),
            exempt_users: &["datasciencelab".to_string()],
            busy_pct: 5.0,
            idle,
            now: now(),
        },
    )
}

fn plain_containers() -> Vec<ContainerInfo> {
    vec![
        c(A, "alice-train", "alice", &["0"]),
        c(
            B,
            "bob-notebook",
            "bob",
            &["GPU-11111111-bbbb-0000-0000-000000000000"],
        ),
        c(C, "carol-cpu", "carol", &[]),
    ]
}

#[test]
fn processes_are_attributed_to_containers_bare_metal_and_gone() {
    let cs = plain_containers();
    let r = plain(Some(&cs), &IdleState::default());
    let procs: Vec<_> = r.devices.iter().flat_map(|d| &d.processes).collect();
    let by_pid = |pid: u32| procs.iter().find(|p| p.pid == pid).expect("pid");
    let a = by_pid(4101);
    assert_eq!(
        (a.kind.as_str(), a.user.as_deref(), a.container.as_deref()),
        ("container", Some("alice"), Some("alice-train"))
    );
    assert_eq!(a.device, "0");
    // A hybrid host's v1 lines name the same scope.
    let b = by_pid(4201);
    assert_eq!((b.user.as_deref(), b.device.as_str()), (Some("bob"), "1"));
    let d = by_pid(4301);
    assert_eq!(
        (d.kind.as_str(), d.user.as_deref(), d.exempt),
        ("bare_metal", Some("datasciencelab"), true)
    );
    let m = by_pid(4302);
    assert_eq!((m.kind.as_str(), m.exempt), ("bare_metal", false));
    // No /proc entry: ended between the NVML call and the lookup.
    let g = by_pid(4999);
    assert_eq!((g.kind.as_str(), g.user.as_deref()), ("gone", None));
    // The GPU that fell off the bus is an error row and a warning, not a crash.
    let lost = &r.devices[3];
    assert!(
        lost.error
            .as_deref()
            .is_some_and(|e| e.contains("fallen off the bus"))
    );
    assert!(
        r.errors.iter().any(|e| e.starts_with("GPU 3:")),
        "{:?}",
        r.errors
    );
}

#[test]
fn users_get_allocations_memory_and_utilisation() {
    let cs = plain_containers();
    let r = plain(Some(&cs), &IdleState::default());
    let alice = &r.users["alice"];
    assert_eq!((alice.allocated, alice.in_use, alice.processes), (1, 1, 2));
    assert_eq!(alice.memory_bytes, 38 * G);
    assert_eq!(alice.util_pct, Some(92.0));
    let bob = &r.users["bob"];
    assert_eq!((bob.allocated, bob.in_use), (1, 0));
    assert_eq!(bob.util_pct, Some(0.0));
    let dsl = &r.users["datasciencelab"];
    assert_eq!((dsl.allocated, dsl.bare_metal_processes), (0, 1));
    assert_eq!(dsl.bare_metal_memory_bytes, 6 * G);
    assert!(!r.users.contains_key("carol"), "no GPU, no row");
    // GPU 2 is held by nobody: free, but busy through bare-metal work.
    assert!(r.devices[2].holders.is_empty());
    assert!(r.devices[2].busy);
    assert_eq!(
        report::greeting(&r, "alice"),
        ["GPU: 1 of 1 in use, 38 GiB, 92 %"]
    );
    assert!(report::greeting(&r, "carol").is_empty());
}

#[test]
fn idle_time_runs_from_the_last_busy_sample() {
    let cs = plain_containers();
    let first = plain(Some(&cs), &IdleState::default());
    // First look: bob's idle GPU has no history yet; alice's is busy.
    assert_eq!(first.devices[1].idle_s, None);
    assert_eq!(first.devices[0].idle_s, Some(0));
    let mut earlier = first.idle_state.clone();
    earlier.busy_at.insert(
        "GPU-11111111-bbbb-0000-0000-000000000000".into(),
        now().as_second() - 3700,
    );
    let r = plain(Some(&cs), &earlier);
    assert_eq!(r.devices[1].idle_s, Some(3700));
    assert_eq!(
        r.users["bob"].idle,
        [("1".to_string(), "bob-notebook".to_string(), 3700)]
    );
    let g = report::greeting(&r, "bob");
    assert_eq!(g[0], "GPU: 0 of 1 in use, 2.0 GiB, 0 %");
    assert!(
        g[1].starts_with("GPU 1 (bob-notebook) has been idle for 1 h 1 min"),
        "{g:?}"
    );
    // A busy device's history restarts.
    assert_eq!(
        r.idle_state.busy_at["GPU-00000000-aaaa-0000-0000-000000000000"],
        now().as_second()
    );
}

#[test]
fn without_docker_holders_are_unknown_and_said_so() {
    let r = plain(None, &IdleState::default());
    assert!(r.devices.iter().all(|d| d.holders.is_empty()));
    assert!(r.errors.iter().any(|e| e.contains("Docker did not answer")));
    // Processes are still attributed through /proc.
    assert_eq!(r.users["alice"].memory_bytes, 38 * G);
}

#[test]
fn mig_instances_are_devices_of_their_own() {
    let s = snap("mig");
    let cs = vec![
        c(C, "carol-mig", "carol", &["0:0"]),
        c(
            A,
            "alice-two",
            "alice",
            &["MIG-11111111-0000-0000-0000-000000000000", "1"],
        ),
    ];
    let r = report::build(
        &s,
        "replay",
        &Inputs {
            containers: Some(&cs),
            proc_root: std::path::Path::new("/nonexistent"),
            exempt_users: &[],
            busy_pct: 5.0,
            idle: &IdleState::default(),
            now: now(),
        },
    );
    let labels: Vec<&str> = r.devices.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(labels, ["0", "0:0", "0:1", "0:2", "1"]);
    assert!(r.devices[0].mig_enabled && r.devices[0].holders.is_empty());
    assert_eq!(r.devices[1].holders[0].container, "carol-mig");
    // Recorded /proc facts: carol's process in her slice; no utilisation on MIG,
    // so a device with a process counts as busy.
    let p = &r.devices[1].processes[0];
    assert_eq!(
        (p.user.as_deref(), p.container.as_deref()),
        (Some("carol"), Some("carol-mig"))
    );
    assert!(r.devices[1].busy);
    // A container outside ds01.slice: flagged, its user from Docker when known.
    let q = &r.devices[2].processes[0];
    assert!(q.unplaced);
    assert_eq!(q.container.as_deref(), Some("dddddddddddd"));
    assert_eq!(r.users["alice"].allocated, 2);
    assert_eq!(r.users["carol"].memory_bytes, 10 * G);
    assert_eq!(s.resolve("all").len(), 4);
    assert_eq!(s.resolve("0").len(), 3);
    assert_eq!(s.resolve("7"), Vec::<String>::new());
    let inv = s.inventory();
    assert!((inv.weight("MIG-00000000-0000-0000-0000-000000000000") - 3.0 / 7.0).abs() < 1e-9);
}

#[test]
fn a_non_admin_sees_every_gpu_but_only_their_own_names() {
    let cs = plain_containers();
    let r = plain(Some(&cs), &IdleState::default()).for_viewer("bob");
    assert_eq!(r.devices.len(), 4);
    assert_eq!(r.devices[0].holders[0].user, "other");
    assert_eq!(r.devices[0].holders[0].container, "");
    assert!(
        r.devices[0]
            .processes
            .iter()
            .all(|p| p.pid == 0 && p.container.is_none())
    );
    assert_eq!(r.devices[1].holders[0].container, "bob-notebook");
    assert_eq!(r.users.keys().collect::<Vec<_>>(), ["bob"]);
    let text = report::render(&r);
    assert!(!text.contains("alice"), "{text}");
    assert!(text.contains("bob-notebook"), "{text}");
}

#[test]
fn the_table_shows_holders_idle_and_errors() {
    let cs = plain_containers();
    let r = plain(Some(&cs), &IdleState::default());
    let text = report::render(&r);
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} line in\n{text}"))
            .to_string()
    };
    let g0 = line("0 ");
    assert!(
        g0.contains("alice")
            && g0.contains("alice-train")
            && g0.contains("busy")
            && g0.contains("92%"),
        "{g0}"
    );
    assert!(line("2 ").contains("free"));
    assert!(line("3 ").contains("ERROR"));
    assert!(text.contains("bare metal (exempt)"));
    assert!(text.contains("exited"));
}

#[test]
fn cgroup_lines_name_the_container_and_slice() {
    let (id, slice, placed) = parse_cgroup(&format!(
        "0::/ds01.slice/ds01-student.slice/ds01-student-alice.slice/docker-{A}.scope\n"
    ))
    .expect("container");
    assert_eq!(id, A);
    assert_eq!(slice, Some(("student".into(), "alice".into())));
    assert!(placed);
    // The cgroupfs driver and an unplaced container.
    assert_eq!(
        parse_cgroup(&format!("0::/docker/{B}\n")).map(|x| x.0),
        Some(B.to_string())
    );
    let (_, s, p) = parse_cgroup(&format!("0::/system.slice/docker-{B}.scope\n")).expect("x");
    assert_eq!((s, p), (None, false));
    assert_eq!(
        parse_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n"),
        None
    );
    assert_eq!(parse_cgroup("garbage"), None);
    assert_eq!(parse_cgroup("0::/docker-short.scope"), None);
}

#[test]
fn snapshots_are_checked() {
    assert!(parse_snapshot("{").is_err());
    let e = parse_snapshot(r#"{"version": 9, "gpus": []}"#).expect_err("newer");
    assert!(e.contains("newer"), "{e}");
    let s = parse_snapshot(r#"{"gpus": [{"index": 0}]}"#).expect("minimal");
    assert_eq!(s.version, SNAPSHOT_VERSION);
    assert_eq!(mig_slices("NVIDIA A100-SXM4-40GB MIG 3g.20gb"), 3);
    assert_eq!(mig_slices("1g.5gb+me"), 1);
    assert_eq!(mig_slices("Tesla T4"), 1);
    // A snapshot round-trips.
    let p = snap("plain");
    let again = parse_snapshot(&serde_json::to_string(&p).expect("json")).expect("parse");
    assert_eq!(again, p);
}

#[test]
fn merge_fills_holders_a_limited_docker_view_misses() {
    let cs = plain_containers();
    let full = plain(Some(&cs), &IdleState::default());
    let mine = vec![c(B, "bob-notebook", "bob", &["1"])];
    let mut r = plain(Some(&mine), &IdleState::default());
    assert!(r.devices[0].holders.is_empty());
    r.merge_holders(&full);
    assert_eq!(r.devices[0].holders[0].user, "alice");
    assert_eq!(r.users["alice"].allocated, 1);
}

#[test]
fn utilisation_by_every_device_name_lifecycle_uses() {
    let m = utilisation_map(&snap("plain"));
    assert_eq!(m.get("0"), Some(&92.0));
    assert_eq!(
        m.get("GPU-11111111-bbbb-0000-0000-000000000000"),
        Some(&0.0)
    );
    assert_eq!(m.get("3"), None, "a lost GPU is unknown, not idle");
    let mut mig = snap("mig");
    let m = utilisation_map(&mig);
    assert_eq!(
        m.get("0"),
        None,
        "a GPU in MIG mode has no utilisation of its own"
    );
    assert_eq!(m.get("0:0"), None, "no process samples: unknown");
    assert_eq!(m.get("1"), Some(&0.0));
    mig.processes[0].sm_util_pct = Some(40);
    let m = utilisation_map(&mig);
    assert_eq!(m.get("0:0"), Some(&40.0));
    assert_eq!(
        m.get("MIG-00000000-0000-0000-0000-000000000000"),
        Some(&40.0)
    );
}
