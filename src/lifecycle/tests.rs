//! The lifecycle rules against an injected clock, fake containers, fake samples and
//! a fake Engine.

use super::notify::Notify;
use super::source::{Docker, Probe};
use super::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const CFG: &str = "\
defaults:
  max_runtime_h: 24
  idle_timeout_h: 0.5
  container_hold_after_stop_h: 0.5
groups:
  student:
    members: [alice, bob]
  researcher:
    members: [rita]
    idle_timeout_h: 1
    max_runtime_h: 48
  admin:
    members: [boss]
user_overrides:
  bob:
    max_runtime_h: null
policies:
  cpu_idle_threshold: 2.0
  network_idle_threshold: 1048576
  gpu_idle_threshold: 5
  idle_detection_window: 3
  grace_period_m: 10
  high_demand_threshold: 0.5
  high_demand_idle_reduction: 0.5
  sigterm_grace_s: 60
container_types:
  devcontainer:
    idle_timeout_h: null
    max_runtime_h: 168
    sigterm_grace_s: 30
  docker:
    idle_timeout_h: 1
    max_runtime_h: 2
    sigterm_grace_s: 45
monitoring:
  infrastructure_containers: [ds01-prometheus]
";

fn config(yaml: &str) -> Config {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("resource-limits.yaml");
    std::fs::write(&p, yaml).expect("write");
    let l = crate::config::load(&p);
    assert!(
        !l.diagnostics.has_errors(),
        "{:?}",
        l.diagnostics.first_error()
    );
    l.config.expect("config")
}

fn t0() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().expect("time")
}

fn at(mins: f64) -> Timestamp {
    t0() + jiff::SignedDuration::from_secs_f64(mins * 60.0)
}

fn container(name: &str, user: &str, ctype: &str) -> Container {
    Container {
        id: format!("id-{name}"),
        name: name.into(),
        user: user.into(),
        ctype: ctype.into(),
        state: RunState::Running,
        created: t0(),
        started: Some(t0()),
        finished: None,
        pid: Some(100),
        gpus: vec![],
        protected_label: false,
    }
}

/// A sample at `mins` with cumulative CPU µs and network bytes.
fn sample(mins: f64, cpu: u64, net: u64) -> Sample {
    Sample {
        at: at(mins),
        cpu_usec: Some(cpu),
        net_bytes: Some(net),
        gpu: GpuSignal::NoGpu,
    }
}

fn lim(cfg: &Config, user: &str, ctype: &str) -> Applied {
    limits_for(cfg, &cfg.resolve(user), ctype, false)
}

#[test]
fn precedence_override_then_type_then_group_then_defaults() {
    let cfg = config(CFG);
    // Type decides over the group and defaults.
    let l = lim(&cfg, "alice", "docker");
    assert_eq!(l.idle.hours, Some(1.0));
    assert_eq!(l.idle.from, "container_types.docker.idle_timeout_h");
    assert_eq!(l.runtime.hours, Some(2.0));
    assert_eq!(l.grace_s, 45);
    // A type without the key falls to the group, then the defaults.
    let l = lim(&cfg, "rita", "compose");
    assert_eq!(l.idle.hours, Some(1.0));
    assert_eq!(l.idle.from, "groups.researcher.idle_timeout_h");
    let l = lim(&cfg, "alice", "compose");
    assert_eq!(l.runtime.from, "defaults.max_runtime_h");
    assert_eq!(
        l.grace_s, 60,
        "policies.sigterm_grace_s when the type sets none"
    );
    // null in the type exempts.
    let l = lim(&cfg, "alice", "devcontainer");
    assert_eq!(l.idle.hours, None);
    assert_eq!(l.idle.from, "container_types.devcontainer.idle_timeout_h");
    // The override wins over the type, and null exempts.
    let l = lim(&cfg, "bob", "docker");
    assert_eq!(l.runtime.hours, None);
    assert_eq!(l.runtime.from, "user_overrides.bob.max_runtime_h");
    assert_eq!(l.idle.hours, Some(1.0), "the override sets no idle key");
    // High demand halves the idle timeout, and says so.
    let l = limits_for(&cfg, &cfg.resolve("alice"), "docker", true);
    assert_eq!(l.idle.hours, Some(0.5));
    assert!(l.high_demand && l.idle.from.contains("high_demand_idle_reduction"));
    // Nothing configured anywhere: exempt.
    let bare = config("groups:\n  student:\n    members: [alice]\n");
    let l = lim(&bare, "alice", "docker");
    assert_eq!((l.idle.hours, l.runtime.hours), (None, None));
}

#[test]
fn high_demand_is_a_share_of_the_gpus() {
    let cfg = config(CFG);
    assert!(!high_demand(1, 2, &cfg.lifecycle), "0.5 is not above 0.5");
    assert!(high_demand(2, 3, &cfg.lifecycle));
    assert!(!high_demand(0, 0, &cfg.lifecycle), "no GPUs, never");
}

/// Feed idle looks every `step` minutes from `from` to `to`; return the actions per look.
#[allow(clippy::too_many_arguments)]
fn run_looks(
    t: &mut Track,
    c: &Container,
    l: &Applied,
    pol: &LifecyclePolicy,
    from: f64,
    to: f64,
    step: f64,
    cpu_per_min: u64,
) -> Vec<(f64, Vec<Action>)> {
    let mut out = Vec::new();
    let mut m = from;
    while m <= to + 1e-9 {
        let cpu = (m * cpu_per_min as f64) as u64;
        let a = look(t, c, &sample(m, cpu, 0), l, pol);
        // A stop ends the container's run (a failed stop is asked for again).
        let stop = a.iter().any(|x| matches!(x, Action::Stop { .. }));
        out.push((m, a));
        if stop {
            break;
        }
        m += step;
    }
    out
}

fn kinds(acts: &[(f64, Vec<Action>)]) -> Vec<(f64, &'static str)> {
    acts.iter()
        .flat_map(|(m, a)| {
            a.iter().map(move |x| {
                (
                    *m,
                    match x {
                        Action::Warn { why: Why::Idle, .. } => "warn-idle",
                        Action::Warn { .. } => "warn-runtime",
                        Action::Stop { why: Why::Idle, .. } => "stop-idle",
                        Action::Stop { .. } => "stop-runtime",
                        Action::Remove { .. } => "remove",
                    },
                )
            })
        })
        .collect()
}

#[test]
fn idle_warns_once_at_80_percent_then_stops_at_the_timeout() {
    let cfg = config(CFG);
    let c = container("c", "alice", "docker"); // idle 1 h, runtime 2 h
    let mut l = lim(&cfg, "alice", "docker");
    l.runtime.hours = None;
    let mut t = Track::default();
    // 1% of a core: under the 2% threshold. Grace is 10 min: the streak starts at
    // the look whose interval begins at 10 min.
    let cpu_1pct = 600_000; // µs per minute = 1% of one core
    let acts = run_looks(&mut t, &c, &l, &cfg.lifecycle, 0.0, 75.0, 1.0, cpu_1pct);
    // Idle since minute 10 → 80% of 60 min = minute 58; stop at minute 70.
    assert_eq!(kinds(&acts), [(58.0, "warn-idle"), (70.0, "stop-idle")]);
    let stop = acts.iter().find(|(m, _)| *m == 70.0).expect("stop look");
    match &stop.1[0] {
        Action::Stop {
            measured_s,
            grace_s,
            limit,
            ..
        } => {
            assert_eq!(*measured_s, 3600.0);
            assert_eq!(*grace_s, 45);
            assert_eq!(limit.from, "container_types.docker.idle_timeout_h");
        }
        other => panic!("{other:?}"),
    }
    let warn = acts.iter().find(|(m, _)| *m == 58.0).expect("warn look");
    match &warn.1[0] {
        Action::Warn { message, due, .. } => {
            assert!(message.contains("idle for 48m"), "{message}");
            assert!(message.contains("2026-12-01 11:10 UTC"), "{message}");
            assert_eq!(*due, at(70.0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_busy_signal_resets_the_streak_and_the_warning() {
    let cfg = config(CFG);
    let pol = &cfg.lifecycle;
    let c = container("c", "alice", "docker");
    let mut l = lim(&cfg, "alice", "docker");
    l.runtime.hours = None;
    let mut t = Track::default();
    let idle = 600_000;
    run_looks(&mut t, &c, &l, pol, 0.0, 60.0, 1.0, idle);
    assert!(t.warned.contains_key("idle"));
    // One look at 3% of a core (above the 2% threshold): the streak is over.
    let cpu = t.last_cpu_usec.expect("cpu") + 1_800_000;
    let a = look(&mut t, &c, &sample(61.0, cpu, 0), &l, pol);
    assert!(a.is_empty());
    assert_eq!((t.idle_looks, t.idle_since_ms), (0, None));
    assert!(!t.warned.contains_key("idle"), "a new streak warns again");
    // Network: 2 MiB in one minute is busy, whatever the CPU.
    let mut t2 = Track::default();
    look(&mut t2, &c, &sample(20.0, 0, 0), &l, pol);
    look(&mut t2, &c, &sample(21.0, 0, 2 << 20), &l, pol);
    assert_eq!(t2.idle_looks, 0);
    look(&mut t2, &c, &sample(22.0, 0, (2 << 20) + 1000), &l, pol);
    assert_eq!(t2.idle_looks, 1);
    // GPU: 50% is busy, 1% is idle, unreadable is busy.
    for (g, idle) in [
        (GpuSignal::Util(50.0), false),
        (GpuSignal::Util(1.0), true),
        (GpuSignal::Unknown, false),
    ] {
        let mut t3 = Track::default();
        let mut s = sample(20.0, 0, 0);
        s.gpu = g;
        look(&mut t3, &c, &s, &l, pol);
        s.at = at(21.0);
        look(&mut t3, &c, &s, &l, pol);
        assert_eq!(t3.idle_looks == 1, idle, "{g:?}");
    }
}

#[test]
fn window_and_grace_hold_back_idle_detection() {
    let cfg = config(CFG);
    let pol = &cfg.lifecycle;
    let c = container("c", "alice", "docker");
    let l = lim(&cfg, "alice", "docker");
    let mut t = Track::default();
    // Looks within the first 10 minutes never count.
    run_looks(&mut t, &c, &l, pol, 0.0, 10.0, 1.0, 0);
    assert_eq!(t.idle_looks, 0);
    look(&mut t, &c, &sample(11.0, 0, 0), &l, pol);
    assert_eq!(t.idle_looks, 1);
    assert_eq!(t.idle_since_ms, Some(at(10.0).as_millisecond()));
    // A counter that goes backwards (scope recreated) is not a measurement.
    look(&mut t, &c, &sample(12.0, 0, 0), &l, pol);
    let mut s = sample(13.0, 0, 0);
    s.cpu_usec = None;
    look(&mut t, &c, &s, &l, pol);
    assert_eq!(t.idle_looks, 0, "an unreadable CPU counter is busy");
    // A window of 3: no warning can come before 3 idle looks, even past 80%.
    let mut short = l.clone();
    short.idle.hours = Some(1.0 / 60.0); // one minute
    short.runtime.hours = None;
    let mut t = Track::default();
    let acts = run_looks(&mut t, &c, &short, pol, 10.0, 16.0, 1.0, 0);
    let k = kinds(&acts);
    assert_eq!(k.first(), Some(&(13.0, "warn-idle")), "{k:?}");
}

#[test]
fn runtime_warns_at_75_and_90_percent_then_stops() {
    let cfg = config(CFG);
    let pol = &cfg.lifecycle;
    let c = container("c", "alice", "docker"); // 2 h
    let mut l = lim(&cfg, "alice", "docker");
    l.idle.hours = None;
    let mut t = Track::default();
    // Busy all along: 50% of a core.
    let acts = run_looks(&mut t, &c, &l, pol, 0.0, 125.0, 1.0, 30_000_000);
    assert_eq!(
        kinds(&acts),
        [
            (90.0, "warn-runtime"),
            (108.0, "warn-runtime"),
            (120.0, "stop-runtime")
        ]
    );
}

#[test]
fn a_late_first_look_still_warns_before_stopping() {
    // The monitor was down: the first look is already past the max runtime. Only
    // the 90% warning goes out (75% is moot), and the stop waits the promised 10%.
    let cfg = config(CFG);
    let pol = &cfg.lifecycle;
    let c = container("c", "alice", "docker");
    let mut l = lim(&cfg, "alice", "docker");
    l.idle.hours = None;
    let mut t = Track::default();
    let a = look(&mut t, &c, &sample(130.0, 0, 0), &l, pol);
    assert_eq!(a.len(), 1);
    match &a[0] {
        Action::Warn { key, due, .. } => {
            assert_eq!(key, "runtime90");
            assert_eq!(*due, at(142.0), "12 min = 10% of 2 h after the warning");
        }
        other => panic!("{other:?}"),
    }
    assert!(t.warned.contains_key("runtime75"));
    let a = look(&mut t, &c, &sample(141.0, 0, 0), &l, pol);
    assert!(a.is_empty(), "{a:?}");
    let a = look(&mut t, &c, &sample(142.0, 0, 0), &l, pol);
    assert!(matches!(
        a[..],
        [Action::Stop {
            why: Why::Runtime,
            ..
        }]
    ));
}

#[test]
fn a_restarted_container_starts_a_new_track() {
    let cfg = config(CFG);
    let pol = &cfg.lifecycle;
    let mut c = container("c", "alice", "docker");
    let l = lim(&cfg, "alice", "docker");
    let mut t = Track::default();
    run_looks(&mut t, &c, &l, pol, 0.0, 100.0, 1.0, 30_000_000);
    assert!(t.warned.contains_key("runtime75"));
    c.started = Some(at(101.0));
    look(&mut t, &c, &sample(102.0, 0, 0), &l, pol);
    assert!(t.warned.is_empty() && t.idle_looks == 0);
    assert_eq!(t.started_ms, Some(at(101.0).as_millisecond()));
}

#[test]
fn stopped_containers_are_removed_after_their_hold() {
    let cfg = config(CFG);
    let pol = &cfg.lifecycle;
    let mut c = container("c", "alice", "docker");
    c.state = RunState::Exited;
    c.finished = Some(at(0.0));
    let l = lim(&cfg, "alice", "docker");
    assert_eq!(l.remove_after.hours, Some(0.5));
    assert!(look_stopped(&c, &l, pol, at(29.0)).is_none());
    assert!(matches!(
        look_stopped(&c, &l, pol, at(30.0)),
        Some(Action::Remove { .. })
    ));
    // Created and never started: policies.created_container_timeout_m (30 by default).
    let mut n = container("n", "alice", "docker");
    n.state = RunState::Created;
    n.started = None;
    assert!(look_stopped(&n, &l, pol, at(29.0)).is_none());
    match look_stopped(&n, &l, pol, at(31.0)) {
        Some(Action::Remove { reason, .. }) => assert!(reason.contains("never started")),
        other => panic!("{other:?}"),
    }
}

// ---- whole passes against fakes ----

#[derive(Default)]
struct World {
    containers: Vec<Container>,
    cpu: HashMap<String, u64>,
    stopped: Vec<(String, u64)>,
    removed: Vec<String>,
    terminals: Vec<(String, String)>,
    alerts: Vec<(String, String, String)>,
}

#[derive(Clone, Default)]
struct Fake(Rc<RefCell<World>>);

impl Docker for Fake {
    fn containers(&mut self) -> Result<Vec<Container>, String> {
        Ok(self.0.borrow().containers.clone())
    }
    fn stop_all(&mut self, stops: &[(String, u64)]) -> Vec<Result<(), String>> {
        let mut w = self.0.borrow_mut();
        for (id, g) in stops {
            w.stopped.push((id.clone(), *g));
            if let Some(c) = w.containers.iter_mut().find(|c| &c.id == id) {
                c.state = RunState::Exited;
            }
        }
        stops.iter().map(|_| Ok(())).collect()
    }
    fn remove(&mut self, id: &str) -> Result<(), String> {
        let mut w = self.0.borrow_mut();
        w.removed.push(id.to_string());
        w.containers.retain(|c| c.id != id);
        Ok(())
    }
    fn gpu_devices(&self) -> usize {
        0
    }
}

impl Probe for Fake {
    fn prepare(&mut self, _running: &[&Container]) {}
    fn sample(&self, c: &Container, _slice: &std::path::Path, now: Timestamp) -> Sample {
        Sample {
            at: now,
            cpu_usec: self.0.borrow().cpu.get(&c.id).copied().or(Some(0)),
            net_bytes: Some(0),
            gpu: GpuSignal::NoGpu,
        }
    }
}

impl Notify for Fake {
    fn terminals(&mut self, user: &str, message: &str) -> usize {
        self.0
            .borrow_mut()
            .terminals
            .push((user.into(), message.into()));
        1
    }
    fn alert(&mut self, user: &str, container: &str, message: &str, _e: Timestamp) {
        self.0
            .borrow_mut()
            .alerts
            .push((user.into(), container.into(), message.into()));
    }
}

struct Run {
    cfg: Config,
    fake: Fake,
    events: crate::events::EventLog,
    _dir: tempfile::TempDir,
}

impl Run {
    fn new(containers: Vec<Container>) -> Run {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = Fake::default();
        fake.0.borrow_mut().containers = containers;
        Run {
            cfg: config(CFG),
            fake,
            events: crate::events::EventLog::new(dir.path().join("events.jsonl")),
            _dir: dir,
        }
    }

    fn pass(&self, state: &mut State, mins: f64, dry_run: bool) -> Outcome {
        let (mut d, mut p, mut n) = (self.fake.clone(), self.fake.clone(), self.fake.clone());
        let admin = |u: &str| u == "boss";
        let mut ctx = PassCtx {
            cfg: &self.cfg,
            docker: &mut d,
            probe: &mut p,
            notify: &mut n,
            events: &self.events,
            dry_run,
            is_admin: &admin,
        };
        pass(&mut ctx, state, at(mins))
    }

    fn event_types(&self) -> Vec<String> {
        std::fs::read_to_string(&self.events.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["event_type"].as_str().map(str::to_string))
            .collect()
    }
}

#[test]
fn a_pass_warns_stops_with_the_type_grace_logs_and_later_removes() {
    let mut prot = container("boss-keep", "boss", "docker");
    prot.protected_label = true;
    let mut fake_prot = container("alice-keep", "alice", "docker");
    fake_prot.protected_label = true; // inherited from an image: not honoured
    let infra = container("ds01-prometheus", "boss", "docker");
    let dev = container("alice-dev", "alice", "devcontainer");
    let r = Run::new(vec![
        container("alice-idle", "alice", "docker"),
        prot,
        fake_prot,
        infra,
        dev,
    ]);
    let mut st = State::default();
    let mut m = 0.0;
    while m <= 70.0 {
        r.pass(&mut st, m, false);
        m += 1.0;
    }
    let w = r.fake.0.borrow();
    let stopped: Vec<&str> = w.stopped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(stopped, ["id-alice-idle", "id-alice-keep"]);
    assert!(w.stopped.iter().all(|(_, g)| *g == 45), "docker type grace");
    assert_eq!(w.terminals.len(), 2, "one warning each, once");
    assert!(
        w.terminals
            .iter()
            .all(|(u, m)| u == "alice" && m.contains("idle for 48m"))
    );
    assert_eq!(w.alerts.len(), 2);
    drop(w);
    let types = r.event_types();
    assert_eq!(
        types,
        [
            "maintenance.idle_warning",
            "maintenance.idle_warning",
            "maintenance.idle_kill",
            "maintenance.idle_kill"
        ]
    );
    let kill: serde_json::Value = std::fs::read_to_string(&r.events.path)
        .expect("events")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["event_type"] == "maintenance.idle_kill")
        .expect("kill");
    assert_eq!(kill["user"], "alice");
    assert_eq!(kill["details"]["container"], "alice-idle");
    assert_eq!(kill["details"]["idle_s"], 3600);
    assert_eq!(kill["details"]["grace_s"], 45);
    // Stopped at minute 70; the fake marks them exited with FinishedAt = 70.
    for c in r.fake.0.borrow_mut().containers.iter_mut() {
        if c.state == RunState::Exited {
            c.finished = Some(at(70.0));
        }
    }
    r.pass(&mut st, 99.0, false);
    assert!(r.fake.0.borrow().removed.is_empty());
    r.pass(&mut st, 100.0, false);
    assert_eq!(r.fake.0.borrow().removed.len(), 2);
    assert_eq!(
        r.event_types()
            .iter()
            .filter(|t| *t == "maintenance.container_removed")
            .count(),
        2
    );
    let names: Vec<String> = r
        .fake
        .0
        .borrow()
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["boss-keep", "ds01-prometheus", "alice-dev"]);
}

#[test]
fn the_state_survives_a_restart_mid_streak_and_a_dry_run_changes_nothing() {
    let r = Run::new(vec![container("alice-idle", "alice", "docker")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut st = State::default();
    for m in 0..=40 {
        r.pass(&mut st, f64::from(m), false);
    }
    st.save(dir.path()).expect("save");
    // A new process: the streak goes on from the saved state.
    let mut st2 = State::load(dir.path());
    assert_eq!(st2, st);
    let before = st2.clone();
    let o = r.pass(&mut st2, 60.0, true);
    assert_eq!(st2, before, "a dry run leaves the state alone");
    assert!(r.fake.0.borrow().terminals.is_empty(), "and tells nobody");
    assert!(r.event_types().is_empty());
    assert!(
        o.rows[0].actions[0].starts_with("warn (idle)"),
        "{:?}",
        o.rows[0].actions
    );
    for m in 41..=70 {
        r.pass(&mut st2, f64::from(m), false);
    }
    assert_eq!(r.fake.0.borrow().stopped.len(), 1);
    // A corrupt state file is a fresh start, not a stop.
    std::fs::write(dir.path().join(STATE_FILE), "{not json").expect("write");
    assert_eq!(State::load(dir.path()), State::default());
}

#[test]
fn lifecycle_enforcement_false_reports_but_never_acts() {
    let mut r = Run::new(vec![container("alice-idle", "alice", "docker")]);
    r.cfg.lifecycle.enforce = false;
    let mut st = State::default();
    for m in 0..=80 {
        r.pass(&mut st, f64::from(m), false);
    }
    assert!(r.fake.0.borrow().stopped.is_empty());
    assert_eq!(
        r.fake.0.borrow().terminals.len(),
        1,
        "the warning still goes out"
    );
}

#[test]
fn dry_run_report() {
    let mut exited = container("alice-old", "alice", "compose");
    exited.state = RunState::Exited;
    exited.finished = Some(at(50.0));
    let mut prot = container("boss-keep", "boss", "docker");
    prot.protected_label = true;
    let r = Run::new(vec![
        container("alice-idle", "alice", "docker"),
        container("alice-dev", "alice", "devcontainer"),
        exited,
        prot,
    ]);
    let mut st = State::default();
    for m in 0..=59 {
        r.pass(&mut st, f64::from(m), false);
    }
    let o = r.pass(&mut st, 60.0, true);
    insta::assert_snapshot!(render(&o, true));
    let j = serde_json::to_value(&o).expect("json");
    assert_eq!(j["rows"][0]["limits"]["idle"]["hours"], 1.0);
    assert_eq!(
        j["rows"][3]["exempt"],
        "protected (ds01.protected=true on an admin's container)"
    );
}

#[test]
fn config_errors_have_lines_and_suggestions() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("resource-limits.yaml");
    std::fs::write(
        &p,
        "policies:\n  cpu_idle_treshold: 2\n  idle_detection_window: 0\n  high_demand_threshold: 1.5\ncontainer_types:\n  docker:\n    idle_timeout_h: 0\n    max_runtime: 3\n",
    )
    .expect("write");
    let l = crate::config::load(&p);
    let all: Vec<String> = l.diagnostics.items.iter().map(|d| d.to_string()).collect();
    let text = all.join("\n");
    assert!(
        text.contains(":2:") && text.contains("did you mean \"cpu_idle_threshold\""),
        "{text}"
    );
    assert!(
        text.contains(":3:") && text.contains("idle_detection_window"),
        "{text}"
    );
    assert!(
        text.contains(":4:") && text.contains("from 0 to 1"),
        "{text}"
    );
    assert!(
        text.contains(":7:") && text.contains("use null for no limit"),
        "{text}"
    );
    assert!(
        text.contains(":8:") && text.contains("did you mean \"max_runtime_h\""),
        "{text}"
    );
    assert!(l.diagnostics.has_errors());
}
