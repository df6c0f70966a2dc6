//! The frame reader on fixture trees and the view rules (sort, filter, what a
//! non-admin sees), and the plain frame (insta).

use super::*;
use crate::demo::FakeSlice;

fn reader(root: &Path, dir: &Path) -> Reader {
    Reader::new(Sources {
        cgroup_root: root.to_path_buf(),
        events_log: dir.join("events.jsonl"),
        docker_root: dir.join("docker"),
        proc_root: dir.join("proc"),
        systemctl: None,
    })
}

fn row(user: &str, group: &str, mem: u64, cpu: f64) -> UserRow {
    UserRow {
        user: user.into(),
        group: group.into(),
        memory: Some(mem << 30),
        memory_max: Some(8 << 30),
        memory_high: Some(7 << 30),
        cpu_pct: Some(cpu),
        cpu_quota: Some(2.0),
        throttled_pct: Some(0.0),
        psi_mem_some: Some(0.5),
        psi_mem_full: Some(0.0),
        psi_cpu_some: Some(cpu / 10.0),
        psi_io_some: Some(0.0),
        tasks: Some(10),
        tasks_max: Some(100),
        containers: vec![ContainerRow {
            id: format!("{user}-id"),
            name: format!("{user}-train"),
            memory: Some(mem << 30),
            cpu_pct: Some(cpu),
        }],
        ctrs: 1,
        ooms_24h: 0,
        others: None,
        gpu: None,
        partial: false,
    }
}

fn frame() -> Frame {
    Frame {
        rows: vec![
            row("alice", "student", 3, 150.0),
            row("bob", "student", 6, 10.0),
            row("rita", "researcher", 1, 90.0),
        ],
        host: Host {
            memory_total: Some(64 << 30),
            memory_available: Some(50 << 30),
            cpus: 16,
            load1: Some(2.5),
            services: vec![("ds01-monitor.service".into(), "active".into())],
        },
        errors: 0,
        gpus: None,
    }
}

fn admin() -> View {
    View::new(Viewer {
        admin: true,
        user: "root".into(),
    })
}

#[test]
fn sort_and_filter() {
    let f = frame();
    let mut v = admin();
    let users = |v: &View| -> Vec<String> { v.rows(&f).into_iter().map(|r| r.user).collect() };
    assert_eq!(users(&v), ["bob", "alice", "rita"], "memory, largest first");
    v.sort = SortKey::Cpu;
    assert_eq!(users(&v), ["alice", "rita", "bob"]);
    v.sort = SortKey::User;
    assert_eq!(users(&v), ["alice", "bob", "rita"]);
    v.filter = "research".into();
    assert_eq!(users(&v), ["rita"], "filter by group");
    v.filter = "li".into();
    assert_eq!(users(&v), ["alice"], "filter by user");
}

#[test]
fn a_non_admin_sees_their_row_and_a_sum_of_the_others() {
    let f = frame();
    let v = View::new(Viewer {
        admin: false,
        user: "alice".into(),
    });
    let rows = v.rows(&f);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].user, "alice");
    assert!(v.expanded.contains("alice"), "their own row is expanded");
    assert_eq!(rows[1].user, "(2 others)");
    assert_eq!(rows[1].memory, Some(7 << 30));
    assert_eq!(rows[1].cpu_pct, Some(100.0));
    assert!(rows[1].containers.is_empty(), "no one else's containers");
    let text = render_plain(&f, &v, 120);
    assert!(!text.contains("bob") && !text.contains("rita"), "{text}");
    assert!(text.contains("alice-train"), "{text}");
}

#[test]
fn plain_frame() {
    let f = frame();
    let mut v = admin();
    v.expanded.insert("bob".into());
    insta::assert_snapshot!(render_plain(&f, &v, 120));
    // 80 columns: every line fits.
    assert!(
        render_plain(&f, &v, 80)
            .lines()
            .all(|l| l.chars().count() <= 80)
    );
}

#[test]
fn cpu_from_deltas_containers_and_a_slice_that_goes_away() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("ds01.slice");
    let mut a = FakeSlice::new("student", "alice");
    a.containers = vec![("c1".into(), 0)];
    let dir = a.write(&root).expect("slice");
    let b = FakeSlice::new("student", "bob");
    let bdir = b.write(&root).expect("slice");
    std::fs::write(
        dir.join("cpu.stat"),
        "usage_usec 1000000\nthrottled_usec 0\n",
    )
    .expect("w");
    std::fs::write(dir.join("cpu.max"), "200000 100000\n").expect("w");
    let mut r = reader(&root, d.path());
    let t0 = Instant::now();
    let f0 = r.read(t0);
    assert_eq!(f0.rows.len(), 2);
    assert_eq!(f0.rows[0].cpu_pct, None, "no delta on the first frame");
    // One second later: 1.5 s of CPU time used, 0.25 s throttled.
    std::fs::write(
        dir.join("cpu.stat"),
        "usage_usec 2500000\nthrottled_usec 250000\n",
    )
    .expect("w");
    std::fs::remove_dir_all(&bdir).expect("bob's slice goes away");
    let f1 = r.read(t0 + Duration::from_secs(1));
    assert_eq!(f1.rows.len(), 1, "bob's row is gone, no error");
    let alice = &f1.rows[0];
    assert_eq!(alice.cpu_pct.map(|c| c.round()), Some(150.0));
    assert_eq!(alice.throttled_pct.map(|c| c.round()), Some(25.0));
    assert_eq!(alice.cpu_quota, Some(2.0));
    assert_eq!(alice.memory_max, Some(48 << 30));
    assert_eq!(alice.containers.len(), 1);
    assert_eq!(alice.containers[0].name, "c1");
    // A garbled file makes the slice unreadable: counted, not fatal.
    std::fs::write(dir.join("memory.current"), "garbage\n").expect("w");
    let f2 = r.read(t0 + Duration::from_secs(2));
    assert_eq!((f2.rows.len(), f2.errors), (0, 1));
}

#[test]
fn oom_kills_of_the_last_day_per_user() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("ds01.slice");
    FakeSlice::new("student", "alice")
        .write(&root)
        .expect("slice");
    let now = jiff::Timestamp::now();
    let line = |ago_h: i64, user: &str, n: u64| {
        format!(
            "{{\"timestamp\":\"{}\",\"event_type\":\"resource.oom_kill\",\"schema_version\":\"1\",\"user\":\"{user}\",\"details\":{{\"oom_count\":{n}}}}}\n",
            crate::timespec::format_event_time(now - jiff::SignedDuration::from_hours(ago_h))
        )
    };
    std::fs::write(
        d.path().join("events.jsonl"),
        [
            line(30, "alice", 5),
            line(2, "alice", 2),
            line(1, "bob", 1),
            line(1, "alice", 1),
        ]
        .concat(),
    )
    .expect("w");
    let f = reader(&root, d.path()).read(Instant::now());
    assert_eq!(f.rows[0].ooms_24h, 3, "the kill 30 h ago is not counted");
}

#[test]
fn the_gpu_column_shows_only_on_a_gpu_host() {
    let mut f = frame();
    let plain = render_plain(&f, &admin(), 200);
    assert!(!plain.contains("GPU"), "{plain}");
    f.gpus = Some((4, 2));
    f.rows[0].gpu = Some(GpuCell {
        allocated: 2,
        memory: 38 << 30,
        util_pct: Some(92.0),
    });
    f.rows[1].gpu = Some(GpuCell::default());
    let mut v = admin();
    v.sort = SortKey::Gpu;
    let text = render_plain(&f, &v, 200);
    assert!(
        text.lines()
            .next()
            .is_some_and(|h| h.contains("GPUs 2/4 held")),
        "{text}"
    );
    let alice = text
        .lines()
        .find(|l| l.starts_with("alice"))
        .expect("alice");
    assert!(alice.trim_end().ends_with("2 38G 92%"), "{alice}");
    let bob = text.lines().find(|l| l.starts_with("bob")).expect("bob");
    assert!(bob.trim_end().ends_with('-'), "{bob}");
    // Sorted by GPU memory: alice first.
    assert!(text.find("alice").unwrap_or(usize::MAX) < text.find("bob").unwrap_or(0));
    // A non-admin's "others" row sums the others' GPUs.
    let me = View::new(Viewer {
        admin: false,
        user: "rita".into(),
    });
    let rows = me.rows(&f);
    assert_eq!(
        rows[1].gpu.map(|g| (g.allocated, g.memory)),
        Some((2, 38 << 30))
    );
}

#[test]
fn limits_are_read_again_every_ten_seconds_not_every_frame() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("ds01.slice");
    let s = FakeSlice::new("student", "alice");
    s.write(&root).expect("slice");
    let mut r = reader(&root, d.path());
    let t0 = Instant::now();
    let max = |f: &Frame| f.rows[0].memory_max;
    let before = max(&r.read(t0));
    assert_eq!(before, Some(48 << 30));
    std::fs::write(s.dir(&root).join("memory.max"), format!("{}\n", 8u64 << 30)).expect("write");
    assert_eq!(
        max(&r.read(t0 + Duration::from_secs(1))),
        before,
        "cached between refreshes"
    );
    assert_eq!(
        max(&r.read(t0 + Duration::from_secs(11))),
        Some(8 << 30),
        "read again after ten seconds"
    );
    // A slice that appears is read whole at once.
    let b = FakeSlice::new("student", "bob");
    b.write(&root).expect("slice");
    let f = r.read(t0 + Duration::from_secs(12));
    let bob = f.rows.iter().find(|x| x.user == "bob").expect("bob");
    assert_eq!(bob.memory_max, Some(48 << 30));
}

#[test]
fn one_other_user_is_said_in_the_singular() {
    let mut f = frame();
    f.rows.truncate(2);
    let me = View::new(Viewer {
        admin: false,
        user: "alice".into(),
    });
    assert_eq!(me.rows(&f)[1].user, "(1 other)");
}

/// A hybrid host (cgroup v2 `unified` + v1 memory and pids): memory and tasks of a
/// slice and its containers come from the v1 hierarchies, as `ds01 collect` reads
/// them (before, top showed "-" for both on such a host).
#[test]
fn a_hybrid_host_reads_memory_and_tasks_from_v1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let rel = Path::new("ds01-student.slice/ds01-student-alice.slice");
    let scope = "docker-abc.scope";
    let v2 = base.join("unified/ds01.slice").join(rel);
    std::fs::create_dir_all(v2.join(scope)).expect("mkdir");
    std::fs::write(v2.join("cpu.stat"), "usage_usec 10\n").expect("w");
    let mem = base.join("memory/ds01.slice").join(rel);
    std::fs::create_dir_all(mem.join(scope)).expect("mkdir");
    std::fs::write(mem.join("memory.usage_in_bytes"), "2147483648\n").expect("w");
    std::fs::write(mem.join("memory.limit_in_bytes"), "4294967296\n").expect("w");
    std::fs::write(
        mem.join(scope).join("memory.usage_in_bytes"),
        "1073741824\n",
    )
    .expect("w");
    let pids = base.join("pids/ds01.slice").join(rel);
    std::fs::create_dir_all(&pids).expect("mkdir");
    std::fs::write(pids.join("pids.current"), "7\n").expect("w");
    std::fs::write(pids.join("pids.max"), "100\n").expect("w");
    let mut r = reader(&base.join("unified/ds01.slice"), base);
    let f = r.read(Instant::now());
    assert_eq!(f.errors, 0);
    let a = &f.rows[0];
    assert_eq!(a.memory, Some(2 << 30));
    assert_eq!(a.memory_max, Some(4 << 30));
    assert_eq!((a.tasks, a.tasks_max), (Some(7), Some(100)));
    assert_eq!(a.containers.len(), 1);
    assert_eq!(a.containers[0].memory, Some(1 << 30));
    // The second frame reads the same v1 files again.
    std::fs::write(mem.join("memory.usage_in_bytes"), "3221225472\n").expect("w");
    assert_eq!(r.read(Instant::now()).rows[0].memory, Some(3 << 30));
}

/// The header is cut by characters, not bytes: a filter of non-ASCII letters at a
/// width that falls inside one of them (a byte cut would panic).
#[test]
fn a_narrow_frame_cuts_a_non_ascii_filter_by_characters() {
    let f = frame();
    let mut v = admin();
    v.filter = "ääääääääääääää".into();
    for width in 20..140 {
        let out = render_plain(&f, &v, width);
        let head = out.lines().next().expect("header");
        assert!(head.chars().count() <= width.max(20), "{width}: {head}");
    }
}

/// Containers are read for the users in `detail` only; everyone's are counted.
#[test]
fn containers_are_read_for_expanded_users_and_counted_for_all() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("ds01.slice");
    for user in ["alice", "bob"] {
        let mut s = FakeSlice::new("student", user);
        s.containers = vec![(format!("{user}1"), 0), (format!("{user}2"), 0)];
        s.write(&root).expect("slice");
    }
    let mut r = reader(&root, d.path());
    r.detail = Some(HashSet::from(["alice".to_string()]));
    let f = r.read(Instant::now());
    let by = |u: &str| f.rows.iter().find(|r| r.user == u).expect("row").clone();
    assert_eq!(by("alice").containers.len(), 2);
    assert_eq!(by("bob").containers.len(), 0, "not expanded: not read");
    assert_eq!((by("alice").ctrs, by("bob").ctrs), (2, 2), "both counted");
    r.detail = None;
    assert_eq!(
        r.read(Instant::now())
            .rows
            .iter()
            .map(|r| r.containers.len())
            .sum::<usize>(),
        4
    );
}

/// Pressure and limits are read for the users on screen (`shown`) only; a row
/// that comes on screen is completed at once, from the kernel's files.
#[test]
fn rows_off_screen_skip_pressure_and_limits_until_completed() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("ds01.slice");
    for user in ["alice", "bob"] {
        let mut s = FakeSlice::new("student", user);
        s.containers = vec![(format!("{user}1"), 0)];
        s.write(&root).expect("slice");
    }
    let mut r = reader(&root, d.path());
    r.shown = Some(HashSet::from(["alice".to_string()]));
    r.tasks_of_all = false;
    r.detail = Some(HashSet::new());
    let t0 = Instant::now();
    let mut f = r.read(t0);
    let by = |f: &Frame, u: &str| f.rows.iter().find(|r| r.user == u).expect("row").clone();
    let (alice, bob) = (by(&f, "alice"), by(&f, "bob"));
    assert!(!alice.partial);
    assert_eq!(
        (alice.psi_mem_some, alice.memory_max),
        (Some(1.25), Some(48 << 30))
    );
    assert!(bob.partial, "off screen");
    assert_eq!(
        (
            bob.psi_mem_some,
            bob.memory_max,
            bob.tasks_max,
            bob.tasks,
            bob.ctrs
        ),
        (None, None, None, None, 0)
    );
    assert!(bob.memory.is_some(), "what sorting needs: read");
    // Bob scrolls on screen: completed now, from the files.
    let b = FakeSlice::new("student", "bob");
    std::fs::write(b.dir(&root).join("memory.max"), format!("{}\n", 8u64 << 30)).expect("write");
    let bob_only = HashSet::from(["bob".to_string()]);
    assert!(r.complete(&mut f, &bob_only, t0));
    let bob = by(&f, "bob");
    assert!(!bob.partial);
    assert_eq!(
        (bob.psi_mem_some, bob.memory_max),
        (Some(1.25), Some(8 << 30))
    );
    assert!(bob.tasks.is_some());
    assert_eq!(bob.ctrs, 1, "containers counted");
    assert!(
        !r.complete(&mut f, &bob_only, t0),
        "nothing left to complete"
    );
    // Completed values are cached like a full read's: not read again within 10 s.
    std::fs::write(b.dir(&root).join("memory.max"), format!("{}\n", 4u64 << 30)).expect("write");
    r.shown = Some(bob_only);
    let f = r.read(t0 + Duration::from_secs(1));
    assert_eq!(by(&f, "bob").memory_max, Some(8 << 30));
    assert!(by(&f, "alice").partial, "alice went off screen");
    assert!(by(&f, "alice").tasks.is_none());
    // Sorting by tasks (or a non-admin's "(N others)" row) reads everyone's.
    r.tasks_of_all = true;
    let f = r.read(t0 + Duration::from_secs(2));
    assert!(by(&f, "alice").tasks.is_some());
}
