//! One GPU sample on a generated host of 8 GPUs and 200 GPU processes: the
//! snapshot replay (read + parse, standing in for the NVML calls), the
//! attribution through /proc (a fixture /proc of 200 pids) and the report. The
//! issue's target: under 5 ms of CPU for the whole sample. Results in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use ds01::gpu::report::{self, ContainerInfo, IdleState, Inputs};
use ds01::gpu::{Replay, Source};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let snap = ds01::demo::write_gpu_fixture(tmp.path(), 8, 200).expect("fixture");
    let proc_root = tmp.path().join("proc");
    // 100 users' containers, each holding one GPU.
    let containers: Vec<ContainerInfo> = (0..100u32)
        .map(|u| ContainerInfo {
            id: format!("{u:064x}"),
            name: format!("user{u:04}-c"),
            user: format!("user{u:04}"),
            gpus: vec![(u % 8).to_string()],
        })
        .collect();
    let mut replay = Replay::open(snap).expect("replay");
    let s = replay.sample().expect("sample");
    assert_eq!(s.processes.len(), 200);
    let exempt: Vec<String> = Vec::new();
    let idle = IdleState::default();
    let build = |s: &ds01::gpu::Snapshot| {
        report::build(
            s,
            "replay",
            &Inputs {
                containers: Some(&containers),
                proc_root: &proc_root,
                exempt_users: &exempt,
                busy_pct: 5.0,
                idle: &idle,
                now: jiff::Timestamp::now(),
            },
        )
    };
    let r = build(&s);
    assert_eq!(
        r.devices.iter().map(|d| d.processes.len()).sum::<usize>(),
        200
    );
    assert!(r.users.len() >= 100);
    c.bench_function("gpu_replay_parse_8gpu_200proc", |b| {
        b.iter(|| black_box(replay.sample().expect("sample")))
    });
    c.bench_function("gpu_attribute_report_8gpu_200proc", |b| {
        b.iter(|| black_box(build(black_box(&s))))
    });
    c.bench_function("gpu_sample_total_8gpu_200proc", |b| {
        b.iter(|| {
            let s = replay.sample().expect("sample");
            black_box(build(&s))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
