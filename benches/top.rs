//! One `ds01 top` frame with 1,000 users: the tree read (memory, limits, tasks,
//! CPU and throttling from cpu.stat, three PSI files, container scopes) and the
//! text render. Fixture tree (regular files: on a real cgroupfs the files are also
//! kept open between frames). Results in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use ds01::top::{Reader, Sources, View, Viewer, render_plain};
use std::hint::black_box;
use std::time::Instant;

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("ds01.slice");
    ds01::demo::write_fake_tree(&root, 1000).expect("tree");
    let mut reader = Reader::new(Sources {
        cgroup_root: root.clone(),
        events_log: tmp.path().join("events.jsonl"),
        docker_root: tmp.path().join("docker"),
        proc_root: "/proc".into(),
        systemctl: None,
    });
    let view = View::new(Viewer {
        admin: true,
        user: "root".into(),
    });
    let f = reader.read(Instant::now());
    assert_eq!(f.rows.len(), 1000);
    c.bench_function("top_frame_read_1000_users", |b| {
        b.iter(|| black_box(reader.read(Instant::now())))
    });
    c.bench_function("top_frame_render_1000_users", |b| {
        b.iter(|| black_box(render_plain(black_box(&f), &view, 120)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
