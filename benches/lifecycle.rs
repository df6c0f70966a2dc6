//! The lifecycle part of a monitor pass with 1,000 running containers (one per
//! user of a generated 1,000-user config): the scope walk, a `cpu.stat` and a
//! `net/dev` read per container from fixture trees, the limits resolved and the
//! rules applied. The Engine list is a fake here (the real one is cached between
//! passes; its cost is the daemon's, one `GET /containers/json`). Results in
//! BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use ds01::lifecycle::source::{Docker, RealProbe};
use ds01::lifecycle::{Container, PassCtx, RunState, State, notify::Notify, pass};
use ds01::{config, demo};
use std::hint::black_box;

struct Fake(Vec<Container>);

impl Docker for Fake {
    fn containers(&mut self) -> Result<Vec<Container>, String> {
        Ok(self.0.clone())
    }
    fn stop_all(&mut self, stops: &[(String, u64)]) -> Vec<Result<(), String>> {
        stops.iter().map(|_| Ok(())).collect()
    }
    fn remove(&mut self, _id: &str) -> Result<(), String> {
        Ok(())
    }
    fn gpu_devices(&self) -> usize {
        0
    }
}

struct Quiet;

impl Notify for Quiet {
    fn terminals(&mut self, _u: &str, _m: &str) -> usize {
        0
    }
    fn alert(&mut self, _u: &str, _c: &str, _m: &str, _e: jiff::Timestamp) {}
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg_path = demo::write_generated(tmp.path(), 1000).expect("generate");
    let cfg = config::load(&cfg_path).config.expect("config loads");
    let root = tmp.path().join("cg");
    let proc_root = tmp.path().join("proc");
    let now = jiff::Timestamp::now();
    let mut containers = Vec::new();
    for (i, u) in cfg.all_users().iter().take(1000).enumerate() {
        let id = format!("{i:064x}");
        let scope = u.cgroup_path(&root).join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&scope).expect("mkdir");
        std::fs::write(
            scope.join("cpu.stat"),
            format!("usage_usec {}\nuser_usec 1\nsystem_usec 1\n", i * 1000),
        )
        .expect("write");
        let pid = 10_000 + i as u32;
        let net = proc_root.join(pid.to_string()).join("net");
        std::fs::create_dir_all(&net).expect("mkdir");
        std::fs::write(
            net.join("dev"),
            "Inter-|   Receive\n face |bytes\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 5000 7 0 0 0 0 0 0 300 3 0 0 0 0 0 0\n",
        )
        .expect("write");
        containers.push(Container {
            id,
            name: format!("{}-job", u.slice_user),
            user: u.slice_user.clone(),
            ctype: "docker".into(),
            state: RunState::Running,
            created: now,
            started: Some(now),
            finished: None,
            pid: Some(pid),
            gpus: vec![],
            protected_label: false,
        });
    }
    assert_eq!(containers.len(), 1000);
    let events = ds01::events::EventLog::new(tmp.path().join("events.jsonl"));
    let mut docker = Fake(containers);
    let mut probe = RealProbe::new(root.clone(), proc_root.clone());
    let mut quiet = Quiet;
    let admin = |_: &str| false;
    let mut state = State::default();
    c.bench_function("lifecycle_scope_walk_1000_slices", |b| {
        b.iter(|| {
            let w = ds01::cgroup::walk(&root).expect("walk");
            let n: usize = w
                .slices
                .iter()
                .map(|s| ds01::cgroup::container_scopes(&s.dir.path).len())
                .sum();
            black_box(n)
        })
    });
    c.bench_function("lifecycle_pass_1000_containers", |b| {
        b.iter(|| {
            let mut ctx = PassCtx {
                cfg: &cfg,
                docker: &mut docker,
                probe: &mut probe,
                notify: &mut quiet,
                events: &events,
                dry_run: false,
                is_admin: &admin,
            };
            let out = pass(&mut ctx, &mut state, jiff::Timestamp::now());
            assert_eq!(out.rows.len(), 1000);
            black_box(out)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
