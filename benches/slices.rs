//! Config load + resolution and `slices plan/apply` on 1,000 generated users.
//! Whole-command timings (hyperfine) are in scripts/bench.sh; results in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use ds01::{config, demo, slices};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg_path = demo::write_generated(tmp.path(), 1000).expect("generate");
    let cfg = config::load(&cfg_path).config.expect("config loads");
    assert_eq!(
        cfg.all_users().len(),
        1002,
        "1,000 generated + the demo admin and override user"
    );

    c.bench_function("config_load_1000_users", |b| {
        b.iter(|| black_box(config::load(black_box(&cfg_path))))
    });
    c.bench_function("resolve_all_1000_users", |b| {
        b.iter(|| black_box(cfg.all_users()))
    });

    let empty = tmp.path().join("empty-systemd");
    let desired = slices::desired_all(&cfg);
    c.bench_function("slices_plan_1000_users_fresh", |b| {
        b.iter(|| black_box(slices::plan(&empty, &desired).expect("plan")))
    });

    let applied = tmp.path().join("applied-systemd");
    let p = slices::plan(&applied, &desired).expect("plan");
    slices::apply(&applied, &p).expect("apply");
    c.bench_function("slices_plan_1000_users_unchanged", |b| {
        b.iter(|| black_box(slices::plan(&applied, &desired).expect("plan")))
    });

    let mut n = 0u32;
    c.bench_function("slices_apply_1000_users_fresh", |b| {
        b.iter(|| {
            n += 1;
            let dir = tmp.path().join(format!("apply-{n}"));
            let p = slices::plan(&dir, &desired).expect("plan");
            black_box(slices::apply(&dir, &p).expect("apply"))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
