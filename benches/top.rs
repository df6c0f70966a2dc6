//! One `ds01 top` frame with 1,000 users: the tree read (memory, limits, tasks,
//! CPU and throttling from cpu.stat, three PSI files, container scopes) and the
//! text render. Two trees: the fixture (regular files, opened anew each frame) and,
//! when run as root on a host whose cgroup file systems can be written, 1,000 real
//! user slices with a container scope each in the kernel's cgroupfs (pure v2, or
//! hybrid: v2 `unified` + v1 memory and pids), where the files stay open between
//! frames. Results in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use ds01::top::{Reader, Sources, View, Viewer, render_plain};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Frames one second apart, as `ds01 top` refreshes: what is read every frame,
/// every 2 s (PSI) and every 10 s (limits) then comes in its real proportion,
/// however fast the frames are read back to back here.
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }
    fn tick(&mut self) -> Instant {
        self.0 += Duration::from_secs(1);
        self.0
    }
}

fn reader(root: &Path, tmp: &Path) -> Reader {
    Reader::new(Sources {
        cgroup_root: root.to_path_buf(),
        events_log: tmp.join("events.jsonl"),
        docker_root: tmp.join("docker"),
        proc_root: "/proc".into(),
        systemctl: None,
    })
}

/// 1,000 real user slices with one container scope each, removed on drop.
struct RealTree {
    /// `ds01.slice` in the v2 hierarchy (what `--cgroup-root` names).
    root: PathBuf,
    /// Every directory made, in creation order.
    made: Vec<PathBuf>,
}

impl RealTree {
    /// `None` (and why, printed) when this host cannot have one.
    fn new(users: usize) -> Option<RealTree> {
        let base = Path::new("/sys/fs/cgroup");
        let hybrid = base.join("unified/cgroup.procs").exists();
        let v2 = if hybrid {
            base.join("unified")
        } else {
            base.to_path_buf()
        };
        if !rustix::process::geteuid().is_root() || !v2.join("cgroup.procs").exists() {
            eprintln!("SKIPPED: the real-cgroupfs frame (needs root and a cgroup2 tree)");
            return None;
        }
        let mut hierarchies = vec![v2.clone()];
        if hybrid {
            hierarchies.extend(["memory", "pids"].map(|h| base.join(h)));
        }
        let mut t = RealTree {
            root: v2.join("ds01.slice"),
            made: Vec::new(),
        };
        for i in 0..users {
            let rel = PathBuf::from(format!(
                "ds01.slice/ds01-bench.slice/ds01-bench-user{i:04}.slice/docker-{i:064x}.scope"
            ));
            for h in &hierarchies {
                // Parents first, so each directory made is remembered.
                let mut chain: Vec<&Path> = rel.ancestors().collect();
                chain.reverse();
                for d in chain.into_iter().filter(|a| !a.as_os_str().is_empty()) {
                    let p = h.join(d);
                    if p.exists() {
                        continue;
                    }
                    if let Err(e) = std::fs::create_dir(&p) {
                        eprintln!(
                            "SKIPPED: the real-cgroupfs frame: mkdir {}: {e}",
                            p.display()
                        );
                        return None;
                    }
                    t.made.push(p);
                }
            }
        }
        Some(t)
    }
}

impl Drop for RealTree {
    fn drop(&mut self) {
        // Children before parents; a parent can be busy for a moment after its
        // last child went (the kernel takes the child offline asynchronously).
        self.made
            .sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let start = Instant::now();
        while !self.made.is_empty() && start.elapsed().as_secs() < 30 {
            self.made
                .retain(|d| std::fs::remove_dir(d).is_err() && d.exists());
            if !self.made.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        for d in &self.made {
            eprintln!("note: could not remove {}", d.display());
        }
    }
}

/// CPU time (user + system, every thread) per frame over `n` frames: what a
/// refresh costs a core, which the wall time above (frames read on a few threads)
/// does not say.
fn cpu_per_frame(name: &str, r: &mut Reader, n: u32) {
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    };
    let (c0, w0) = (cpu(), Instant::now());
    let mut clock = Clock::new();
    for _ in 0..n {
        black_box(r.read(clock.tick()));
    }
    let (c, w) = (cpu() - c0, w0.elapsed().as_secs_f64());
    eprintln!(
        "{name}: {:.1} ms CPU per frame ({:.1} ms wall), {n} frames",
        c * 1e3 / f64::from(n),
        w * 1e3 / f64::from(n)
    );
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("ds01.slice");
    ds01::demo::write_fake_tree(&root, 1000).expect("tree");
    let mut fixture = reader(&root, tmp.path());
    let view = View::new(Viewer {
        admin: true,
        user: "root".into(),
    });
    let f = fixture.read(Instant::now());
    assert_eq!(f.rows.len(), 1000);
    fixture.detail = Some(Default::default());
    let mut clock = Clock::new();
    c.bench_function("top_frame_read_1000_users", |b| {
        b.iter(|| black_box(fixture.read(clock.tick())))
    });
    cpu_per_frame("top_frame_read_1000_users", &mut fixture, 100);
    c.bench_function("top_frame_render_1000_users", |b| {
        b.iter(|| black_box(render_plain(black_box(&f), &view, 120)))
    });
    if let Some(real) = RealTree::new(1000) {
        let mut r = reader(&real.root, tmp.path());
        let f = r.read(Instant::now());
        let bench_rows = f.rows.iter().filter(|r| r.group == "bench").count();
        assert_eq!(bench_rows, 1000, "every real slice read");
        assert!(
            f.rows
                .iter()
                .all(|r| r.group != "bench" || r.memory.is_some()),
            "memory read from the real tree"
        );
        // Every user's containers read, as if all were expanded.
        let mut clock = Clock::new();
        c.bench_function("top_frame_read_1000_users_cgroupfs_all_expanded", |b| {
            b.iter(|| black_box(r.read(clock.tick())))
        });
        cpu_per_frame(
            "top_frame_read_1000_users_cgroupfs_all_expanded",
            &mut r,
            100,
        );
        // The admin's view as it opens: nothing expanded, containers counted.
        r.detail = Some(Default::default());
        c.bench_function("top_frame_read_1000_users_cgroupfs", |b| {
            b.iter(|| black_box(r.read(clock.tick())))
        });
        cpu_per_frame("top_frame_read_1000_users_cgroupfs", &mut r, 100);
        // The interactive view: 45 rows on screen read whole (pressure, limits),
        // the others only what sorting needs.
        r.shown = Some(f.rows.iter().take(45).map(|r| r.user.clone()).collect());
        c.bench_function("top_frame_read_1000_users_cgroupfs_45_on_screen", |b| {
            b.iter(|| black_box(r.read(clock.tick())))
        });
        cpu_per_frame(
            "top_frame_read_1000_users_cgroupfs_45_on_screen",
            &mut r,
            100,
        );
        drop(r);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
