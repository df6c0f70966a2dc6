//! `ds01 top` as a person uses it: tmux runs it against a fixture tree, send-keys
//! sorts, filters and expands, capture-pane is checked for the rows and values; the
//! window is resized to 80×24 and back; a slice disappears between frames.

mod common;
use common::require;
use ds01::demo::FakeSlice;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .output()
        .expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait until the pane shows `what` (or fail with what it shows).
fn wait_for(sock: &Path, what: &dyn Fn(&str) -> bool, label: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pane = tmux(sock, &["capture-pane", "-p", "-t", "top"]);
        if what(&pane) {
            return pane;
        }
        assert!(Instant::now() < deadline, "{label}: the pane shows\n{pane}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// tmux is installed (else the test says why it is skipped).
fn have_tmux() -> bool {
    let have = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    require(have, "tmux (Debian package tmux)")
}

/// `ds01 top <args>` on the fixture `root` in a detached tmux session "top" of
/// `w`×`h`; returns the session's socket.
fn start_top(dir: &Path, root: &Path, args: &str, w: u16, h: u16) -> std::path::PathBuf {
    let sock = dir.join("tmux.sock");
    let cmd = format!(
        "env NO_COLOR=1 DS01_CGROUP_ROOT={} DS01_EVENTS_LOG={} DS01_CONFIG={} DS01_SYSTEMCTL=/nonexistent {} top {args}",
        root.display(),
        dir.join("events.jsonl").display(),
        dir.join("none.yaml").display(),
        assert_cmd::cargo::cargo_bin("ds01").display()
    );
    let (w, h) = (w.to_string(), h.to_string());
    tmux(
        &sock,
        &["new-session", "-d", "-s", "top", "-x", &w, "-y", &h, &cmd],
    );
    sock
}

#[test]
fn sort_filter_expand_resize_and_a_vanishing_slice_in_tmux() {
    if !have_tmux() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("ds01.slice");
    let mut alice = FakeSlice::new("student", "alice");
    alice.memory_current = 1 << 30;
    alice.containers = vec![("c0ffee".into(), 0)];
    alice.write(&root).expect("slice");
    let mut bob = FakeSlice::new("student", "bob");
    bob.memory_current = 5 << 30;
    bob.pids_current = 7;
    let bob_dir = bob.write(&root).expect("slice");
    let mut rita = FakeSlice::new("researcher", "rita");
    rita.memory_current = 2 << 30;
    rita.pids_current = 900;
    rita.write(&root).expect("slice");
    let sock = start_top(d.path(), &root, "--interval 200ms", 120, 30);
    let first = |pane: &str, user: &str| {
        pane.lines()
            .skip(2)
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with(user))
    };
    // Memory first: bob (5 GiB) on top; the keys are on screen.
    let pane = wait_for(
        &sock,
        &|p| first(p, "bob") && p.contains("rita"),
        "sorted by memory",
    );
    assert!(pane.contains("q quit"), "{pane}");
    assert!(pane.contains("5.0G/48G"), "{pane}");
    // 5 = sort by tasks: rita (900) on top.
    tmux(&sock, &["send-keys", "-t", "top", "5"]);
    wait_for(
        &sock,
        &|p| first(p, "rita") && p.contains("sort: tasks"),
        "sorted by tasks",
    );
    // Filter "ali", then expand alice into her container.
    tmux(
        &sock,
        &["send-keys", "-t", "top", "/", "a", "l", "i", "Enter"],
    );
    wait_for(
        &sock,
        &|p| p.contains("filter: ali") && !p.contains("rita") && !p.contains("bob "),
        "filtered",
    );
    tmux(&sock, &["send-keys", "-t", "top", "Enter"]);
    wait_for(&sock, &|p| p.contains("└ c0ffee"), "expanded");
    tmux(&sock, &["send-keys", "-t", "top", "c"]);
    // 80×24: every user still on screen, no line wider than the window.
    tmux(
        &sock,
        &["resize-window", "-t", "top", "-x", "80", "-y", "24"],
    );
    let pane = wait_for(&sock, &|p| p.contains("bob") && p.contains("rita"), "80x24");
    assert!(pane.lines().all(|l| l.chars().count() <= 80), "{pane}");
    tmux(
        &sock,
        &["resize-window", "-t", "top", "-x", "120", "-y", "30"],
    );
    // bob's slice goes away between frames: his row goes, top keeps running.
    std::fs::remove_dir_all(&bob_dir).expect("rm");
    wait_for(
        &sock,
        &|p| !p.contains("bob") && p.contains("rita"),
        "a vanished slice",
    );
    tmux(&sock, &["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tmux(&sock, &["list-sessions"]).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(tmux(&sock, &["list-sessions"]).is_empty(), "q quits");
    let _ = tmux(&sock, &["kill-server"]);
}

#[test]
fn once_plain_prints_one_frame() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("ds01.slice");
    FakeSlice::new("student", "alice")
        .write(&root)
        .expect("slice");
    let out = common::ds01()
        .args([
            "top",
            "--once",
            "--plain",
            "--interval",
            "50ms",
            "--width",
            "100",
        ])
        .env("DS01_CGROUP_ROOT", &root)
        .env("DS01_EVENTS_LOG", d.path().join("events.jsonl"))
        .env("DS01_SYSTEMCTL", "/nonexistent")
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ds01 top — 1 users"), "{text}");
    assert!(
        text.contains("alice") && text.contains("3 GiB / 48 GiB"),
        "{text}"
    );
    let bad = common::ds01()
        .args(["top", "--once", "--sort", "speed"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown sort column"));
}

/// On a GPU host (a replayed snapshot), the GPU column and the header's count.
#[test]
fn once_plain_shows_the_gpu_column_on_a_gpu_host() {
    let me = ds01::docker::identity::current().expect("who am I");
    let f = common::Fixture::new(&format!(
        "groups:\n  student:\n    members: [alice]\naccess_control:\n  admin_users: [{:?}]\n",
        me.name
    ));
    let root = f.path().join("ds01.slice");
    FakeSlice::new("student", "alice")
        .write(&root)
        .expect("slice");
    let sock = f.path().join("docker.sock");
    let d = std::sync::Arc::new(std::sync::Mutex::new(common::engine::Daemon::default()));
    let id = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
    let mut c = common::engine::inspect(id, "alice-train", "alice", "docker", 60, 0);
    c["HostConfig"]["DeviceRequests"] =
        serde_json::json!([{"Count": 0, "DeviceIDs": ["0"], "Capabilities": [["gpu"]]}]);
    d.lock().expect("lock").containers.insert(id.into(), c);
    common::engine::serve(&sock, d);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/gpu/plain");
    let out = f
        .ds01(&[
            "top",
            "--once",
            "--plain",
            "--interval",
            "50ms",
            "--width",
            "160",
        ])
        .env("DS01_CGROUP_ROOT", &root)
        .env("DS01_EVENTS_LOG", f.path().join("events.jsonl"))
        .env("DS01_STATE_DIR", f.path().join("state"))
        .env("DS01_SYSTEMCTL", "/nonexistent")
        .env("DS01_GPU_SNAPSHOT", demo.join("snapshot.json"))
        .env("DS01_PROC_ROOT", demo.join("proc"))
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .next()
            .is_some_and(|h| h.contains("GPUs 1/4 held")),
        "{text}"
    );
    assert!(text.contains("GPU n/mem/util"), "{text}");
    let alice = text
        .lines()
        .find(|l| l.starts_with("alice"))
        .expect("alice row");
    assert!(alice.trim_end().ends_with("1 38G 92%"), "{alice}");
}

/// More users than rows: only the rows on screen are drawn, and the window follows
/// the selection down and back up; rows off screen are read without pressure and
/// limits, and completed when they come on screen; sorting by pressure reads
/// everyone's at once.
#[test]
fn the_table_scrolls_with_the_selection_in_tmux() {
    if !have_tmux() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("ds01.slice");
    for i in 0..60 {
        FakeSlice::new("student", &format!("user{i:04}"))
            .write(&root)
            .expect("slice");
    }
    // A long interval: after the first frame (everyone read) and the second,
    // half a second later (only the rows on screen read whole), no other frame
    // comes while the selection moves.
    let sock = start_top(d.path(), &root, "--interval 60s --sort user", 120, 24);
    let pane = wait_for(&sock, &|p| p.contains("60 users"), "the first frame");
    assert!(
        pane.contains("user0000") && !pane.contains("user0040"),
        "{pane}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for _ in 0..45 {
        tmux(&sock, &["send-keys", "-t", "top", "j"]);
    }
    let pane = wait_for(
        &sock,
        &|p| p.contains("user0045") && !p.contains("user0000"),
        "scrolled down to the selection",
    );
    assert!(pane.contains("q quit"), "the keys line stays: {pane}");
    // Rows off screen are read without pressure and limits; a row scrolled on
    // screen shows them at once (read when it came on screen).
    let row = pane
        .lines()
        .find(|l| l.contains("user0045"))
        .expect("the selected row");
    assert!(row.contains("/48G") && row.contains("1.2/1.2/1.2"), "{row}");
    for _ in 0..45 {
        tmux(&sock, &["send-keys", "-t", "top", "k"]);
    }
    wait_for(
        &sock,
        &|p| p.contains("user0000") && !p.contains("user0045"),
        "back at the top",
    );
    // Sorting by pressure needs everyone's: a frame is read at once, so a user
    // off screen under pressure comes first without waiting for the interval.
    let psi = "some avg10=9.50 avg60=1.00 avg300=0.10 total=1\nfull avg10=4.00 avg60=0.50 avg300=0.05 total=1\n";
    let dir = FakeSlice::new("student", "user0059").dir(&root);
    std::fs::write(dir.join("memory.pressure"), psi).expect("psi");
    tmux(&sock, &["send-keys", "-t", "top", "4"]);
    let pane = wait_for(
        &sock,
        &|p| p.contains("sort: pressure"),
        "sorted by pressure",
    );
    let first = pane
        .lines()
        .find(|l| l.starts_with("user"))
        .expect("a user row");
    assert!(
        first.starts_with("user0059") && first.contains("9.5/"),
        "{pane}"
    );
    tmux(&sock, &["send-keys", "-t", "top", "q"]);
    let _ = tmux(&sock, &["kill-server"]);
}
