//! Container lifecycle: idle and runtime limits that act, warnings first.
//!
//! The rules are pure ([`look`], [`look_stopped`], [`limits_for`]): a container as
//! the Engine describes it, one sample of its signals (CPU time from its scope's
//! `cpu.stat`, bytes through its network namespace, the utilisation of the GPUs it
//! holds), the limits that apply and the clock go in; what to say and what to do
//! come out, and the per-container [`Track`] (idle streak, warnings sent, last
//! sample) is updated. [`pass`] gathers (the [`Docker`] and [`Probe`] traits, real
//! in `source`, fakes in tests), decides, acts and persists the tracks. Shared by
//! `ds01 monitor` (a thread of its own, so a slow `docker stop` never delays an OOM
//! event) and `ds01 lifecycle` (one pass, `--dry-run`).
//!
//! **Precedence** of the idle timeout and max runtime (each key on its own): the
//! user's override (`user_overrides` / `user-overrides.yaml`) if it sets the key;
//! else `container_types.<type>` (type from the `ds01.container_type` label,
//! `unknown` when absent) if it sets it; else the user's group, then `defaults`.
//! `null` at the level that decides = exempt. The type describes the workload (a
//! dev container is exempt from idle stops, a job has a day), an override is an
//! admin's decision about one person, and the group is the fallback.

pub mod notify;
pub mod source;

use crate::config::lifecycle::LifecyclePolicy;
use crate::config::{Config, Resolved};
use crate::units::{Limit, format_number};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Idle warning at this share of the idle timeout.
pub const IDLE_WARN_AT: f64 = 0.8;
/// Runtime warnings at these shares of the max runtime.
pub const RUNTIME_WARN_AT: [f64; 2] = [0.75, 0.9];

#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Running,
    Exited,
    Created,
    Other(String),
}

/// A container as lifecycle sees it (from the Engine list + one inspect).
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The `ds01.user` label.
    pub user: String,
    /// The `ds01.container_type` label, `unknown` when absent.
    pub ctype: String,
    pub state: RunState,
    pub created: Timestamp,
    pub started: Option<Timestamp>,
    pub finished: Option<Timestamp>,
    /// The init process (its network namespace is the container's).
    pub pid: Option<u32>,
    /// GPU device ids the container holds (`all` for every GPU).
    pub gpus: Vec<String>,
    /// The `ds01.protected=true` label.
    pub protected_label: bool,
}

/// The GPU signal of one look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GpuSignal {
    /// The container holds no GPU: the signal does not apply.
    NoGpu,
    /// It holds GPUs but their utilisation could not be read: counts as busy.
    Unknown,
    /// The busiest of its GPUs, in %.
    Util(f64),
}

/// One look at a running container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    /// `usage_usec` of the container's scope; `None` = unreadable (busy).
    pub cpu_usec: Option<u64>,
    /// Bytes received + sent on its non-loopback interfaces; `None` = unreadable.
    pub net_bytes: Option<u64>,
    pub gpu: GpuSignal,
}

/// One limit and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// `None` = exempt (null, or configured nowhere).
    pub hours: Option<f64>,
    /// The config key that decided, e.g. `container_types.docker.idle_timeout_h`.
    pub from: String,
}

impl Rule {
    pub fn secs(&self) -> Option<f64> {
        self.hours.map(|h| h * 3600.0)
    }

    pub fn text(&self) -> String {
        match self.hours {
            Some(h) => format!("{} h from {}", format_number(round3(h)), self.from),
            None => format!("none: {}", self.from),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The limits that apply to one container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub idle: Rule,
    pub runtime: Rule,
    /// `container_hold_after_stop_h`: removal after a stop.
    pub remove_after: Rule,
    /// `sigterm_grace_s` of the type (else `policies.sigterm_grace_s`).
    pub grace_s: u64,
    /// The idle timeout was shortened because the host's GPUs are in high demand.
    pub high_demand: bool,
}

/// What lifecycle remembers about a container between looks (and restarts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// The start (ms since the epoch) this track belongs to; a restart resets it.
    pub started_ms: Option<i64>,
    pub last_ms: Option<i64>,
    pub last_cpu_usec: Option<u64>,
    pub last_net: Option<u64>,
    /// Consecutive idle looks.
    pub idle_looks: u32,
    /// Start of the first idle look's interval.
    pub idle_since_ms: Option<i64>,
    /// Warnings sent for this start: `idle`, `runtime75`, `runtime90` → when (ms).
    pub warned: BTreeMap<String, i64>,
    /// Set when lifecycle stopped it: (ms, `idle` | `runtime`).
    pub stopped: Option<(i64, String)>,
    /// The last look's CPU (% of one core) and network bytes, for the report.
    pub cpu_pct: Option<f64>,
    pub net_delta: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Why {
    Idle,
    Runtime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Tell the user (terminals, alerts file, event); `key` is recorded in the track.
    Warn {
        why: Why,
        key: String,
        message: String,
        /// When the stop is due if nothing changes.
        due: Timestamp,
    },
    Stop {
        why: Why,
        /// Idle time or runtime, in seconds.
        measured_s: f64,
        limit: Rule,
        grace_s: u64,
    },
    Remove {
        /// Seconds since it stopped (or since it was created, never started).
        stopped_s: f64,
        reason: String,
    },
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn from_ms(m: i64) -> Timestamp {
    Timestamp::from_millisecond(m).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The limits for `c`, owned by `r`, per the precedence in the module docs.
pub fn limits_for(cfg: &Config, r: &Resolved, ctype: &str, high_demand: bool) -> Applied {
    let pol = &cfg.lifecycle;
    let ov = r
        .override_key
        .as_ref()
        .and_then(|k| cfg.overrides.get(k))
        .map(|o| &o.limits);
    let ty = pol.types.get(ctype);
    let group = cfg.group(&r.group).map(|g| &g.limits);
    let pick = |key: &str,
                get: &dyn Fn(&crate::config::ContainerLimits) -> Option<Limit<f64>>,
                from_type: Option<Option<Limit<f64>>>|
     -> Rule {
        let as_rule = |v: Limit<f64>, from: String| Rule {
            hours: v.value(),
            from,
        };
        if let Some(v) = ov.and_then(get) {
            return as_rule(v, format!("user_overrides.{}.{key}", r.user));
        }
        if let Some(Some(v)) = from_type {
            return as_rule(v, format!("container_types.{ctype}.{key}"));
        }
        if let Some(v) = group.and_then(get) {
            return as_rule(v, format!("groups.{}.{key}", r.group));
        }
        if let Some(v) = get(&cfg.defaults) {
            return as_rule(v, format!("defaults.{key}"));
        }
        Rule {
            hours: None,
            from: format!("{key} not configured"),
        }
    };
    let mut idle = pick(
        "idle_timeout_h",
        &|l| l.idle_timeout_h,
        ty.map(|t| t.idle_timeout_h),
    );
    let runtime = pick(
        "max_runtime_h",
        &|l| l.max_runtime_h,
        ty.map(|t| t.max_runtime_h),
    );
    let remove_after = pick(
        "container_hold_after_stop_h",
        &|l| l.container_hold_after_stop_h,
        None,
    );
    let reduce = high_demand && idle.hours.is_some() && pol.high_demand_reduction > 0.0;
    if reduce {
        idle.hours = idle.hours.map(|h| h * (1.0 - pol.high_demand_reduction));
        idle.from = format!(
            "{}, shortened by policies.high_demand_idle_reduction {}",
            idle.from,
            format_number(pol.high_demand_reduction)
        );
    }
    Applied {
        idle,
        runtime,
        remove_after,
        grace_s: ty
            .and_then(|t| t.sigterm_grace_s)
            .unwrap_or(pol.sigterm_grace_s),
        high_demand: reduce,
    }
}

/// Is the host in high demand: allocated GPU devices / all devices above the
/// threshold (never, on a host without GPUs).
pub fn high_demand(allocated: usize, total: usize, pol: &LifecyclePolicy) -> bool {
    total > 0 && allocated as f64 / total as f64 > pol.high_demand_threshold
}

/// Is this look idle? `None` when it cannot be judged (first look, a counter
/// that went backwards, a clock step): never idle.
fn idle_look(t: &Track, s: &Sample, pol: &LifecyclePolicy) -> Option<(bool, f64, u64)> {
    let last = t.last_ms?;
    let dt_us = (ms(s.at) - last) * 1000;
    if dt_us <= 0 {
        return None;
    }
    let cpu = match (t.last_cpu_usec, s.cpu_usec) {
        (Some(a), Some(b)) if b >= a => (b - a) as f64 * 100.0 / dt_us as f64,
        _ => return None,
    };
    let net = match (t.last_net, s.net_bytes) {
        (Some(a), Some(b)) if b >= a => b - a,
        _ => return None,
    };
    let gpu_idle = match s.gpu {
        GpuSignal::NoGpu => true,
        GpuSignal::Unknown => false,
        GpuSignal::Util(u) => u < pol.gpu_idle_pct,
    };
    Some((
        cpu < pol.cpu_idle_pct && net < pol.network_idle_bytes && gpu_idle,
        cpu,
        net,
    ))
}

/// A human duration: `45s`, `12m`, `1h05m`, `2d03h`.
pub fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as i64;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn clock(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// One look at a running container: update the track with `s` and say what to do.
/// A stop always follows its warning by at least the lead the schedule promises
/// (20 % of the idle timeout, 10 % of the max runtime), even when the monitor was
/// not running when the warning was due.
pub fn look(
    t: &mut Track,
    c: &Container,
    s: &Sample,
    lim: &Applied,
    pol: &LifecyclePolicy,
) -> Vec<Action> {
    let now = s.at;
    let started = c.started.unwrap_or(c.created);
    if t.started_ms != Some(ms(started)) {
        *t = Track {
            started_ms: Some(ms(started)),
            ..Track::default()
        };
    }
    t.stopped = None;
    // The idle streak. Looks whose interval began within the grace period after
    // the start do not count.
    let judged = idle_look(t, s, pol);
    let interval_start = t.last_ms.map(from_ms);
    match judged {
        Some((idle, cpu, net)) => {
            t.cpu_pct = Some(cpu);
            t.net_delta = Some(net);
            let in_grace = interval_start.is_some_and(|st| {
                st < started + jiff::SignedDuration::from_secs(pol.grace_s as i64)
            });
            if idle && !in_grace {
                t.idle_looks += 1;
                if t.idle_since_ms.is_none() {
                    t.idle_since_ms = t.last_ms;
                }
            } else {
                t.idle_looks = 0;
                t.idle_since_ms = None;
                t.warned.remove("idle");
            }
        }
        None => {
            t.idle_looks = 0;
            t.idle_since_ms = None;
            t.cpu_pct = None;
            t.net_delta = None;
        }
    }
    t.last_ms = Some(ms(now));
    t.last_cpu_usec = s.cpu_usec;
    t.last_net = s.net_bytes;

    let mut out = Vec::new();
    // Runtime first: a container past both limits is stopped once, for runtime.
    if let Some(max) = lim.runtime.secs() {
        let rt = (now - started).as_secs_f64();
        let due = started + jiff::SignedDuration::from_secs_f64(max);
        // The highest threshold crossed and not yet warned about; lower ones are
        // then moot and marked as sent.
        let crossed: Vec<f64> = RUNTIME_WARN_AT
            .iter()
            .copied()
            .filter(|f| rt >= f * max)
            .collect();
        if let Some(top) = crossed.last() {
            let key = format!("runtime{}", (top * 100.0).round());
            if !t.warned.contains_key(&key) {
                for f in &crossed {
                    t.warned
                        .insert(format!("runtime{}", (f * 100.0).round()), ms(now));
                }
                // The stop is never sooner than the promised lead after this warning.
                let lead = (1.0 - top) * max;
                let due = due.max(now + jiff::SignedDuration::from_secs_f64(lead));
                out.push(Action::Warn {
                    why: Why::Runtime,
                    key,
                    message: format!(
                        "ds01: your container {} has run for {} of its {} limit ({}); it will be stopped at {} (docker stop, {} s to shut down). Save your work.",
                        c.name,
                        human_secs(rt),
                        human_secs(max),
                        lim.runtime.from,
                        clock(due),
                        lim.grace_s
                    ),
                    due,
                });
            }
        }
        let last_key = format!("runtime{}", (RUNTIME_WARN_AT[1] * 100.0).round());
        if rt >= max
            && let Some(w) = t.warned.get(&last_key)
            && ms(now) - w >= ((1.0 - RUNTIME_WARN_AT[1]) * max * 1000.0) as i64
        {
            out.push(Action::Stop {
                why: Why::Runtime,
                measured_s: rt,
                limit: lim.runtime.clone(),
                grace_s: lim.grace_s,
            });
            return out;
        }
    }
    if let (Some(timeout), Some(since)) = (lim.idle.secs(), t.idle_since_ms)
        && t.idle_looks >= pol.window
    {
        let idle_for = (ms(now) - since) as f64 / 1000.0;
        if idle_for >= IDLE_WARN_AT * timeout && !t.warned.contains_key("idle") {
            t.warned.insert("idle".into(), ms(now));
            let lead = (1.0 - IDLE_WARN_AT) * timeout;
            let due = (from_ms(since) + jiff::SignedDuration::from_secs_f64(timeout))
                .max(now + jiff::SignedDuration::from_secs_f64(lead));
            let signals = if matches!(s.gpu, GpuSignal::NoGpu) {
                "CPU and network"
            } else {
                "CPU, network and GPU"
            };
            out.push(Action::Warn {
                why: Why::Idle,
                key: "idle".into(),
                message: format!(
                    "ds01: your container {} has been idle for {} (no {signals} use); it will be stopped at {} unless it does some work (idle limit {}).",
                    c.name,
                    human_secs(idle_for),
                    clock(due),
                    lim.idle.text()
                ),
                due,
            });
        }
        if idle_for >= timeout
            && let Some(w) = t.warned.get("idle")
            && ms(now) - w >= ((1.0 - IDLE_WARN_AT) * timeout * 1000.0) as i64
        {
            out.push(Action::Stop {
                why: Why::Idle,
                measured_s: idle_for,
                limit: lim.idle.clone(),
                grace_s: lim.grace_s,
            });
        }
    }
    out
}

/// A container that is not running: remove it once its hold is over (or, never
/// started, after `created_container_timeout_m`).
pub fn look_stopped(
    c: &Container,
    lim: &Applied,
    pol: &LifecyclePolicy,
    now: Timestamp,
) -> Option<Action> {
    match c.state {
        RunState::Exited => {
            let hold = lim.remove_after.secs()?;
            let since = (now - c.finished?).as_secs_f64();
            (since >= hold).then(|| Action::Remove {
                stopped_s: since,
                reason: format!(
                    "stopped for {}, longer than {}",
                    human_secs(since),
                    lim.remove_after.text()
                ),
            })
        }
        RunState::Created if c.started.is_none() => {
            let limit = pol.created_timeout_s? as f64;
            let since = (now - c.created).as_secs_f64();
            (since >= limit).then(|| Action::Remove {
                stopped_s: since,
                reason: format!(
                    "created {} ago and never started (policies.created_container_timeout_m {})",
                    human_secs(since),
                    format_number(limit / 60.0)
                ),
            })
        }
        _ => None,
    }
}

/// What the dry-run says will happen next, if nothing changes.
pub fn next_step(
    t: &Track,
    c: &Container,
    lim: &Applied,
    pol: &LifecyclePolicy,
    now: Timestamp,
) -> String {
    match c.state {
        RunState::Running => {}
        RunState::Exited => {
            return match (lim.remove_after.secs(), c.finished) {
                (Some(h), Some(f)) => format!(
                    "removed at {} ({})",
                    clock(f + jiff::SignedDuration::from_secs_f64(h)),
                    lim.remove_after.text()
                ),
                _ => "kept (no removal limit)".into(),
            };
        }
        RunState::Created => {
            return match pol.created_timeout_s {
                Some(s) => format!(
                    "removed at {} if never started",
                    clock(c.created + jiff::SignedDuration::from_secs(s as i64))
                ),
                None => "kept".into(),
            };
        }
        RunState::Other(ref s) => return format!("nothing while {s}"),
    }
    let started = c.started.unwrap_or(c.created);
    let runtime_due = lim
        .runtime
        .secs()
        .map(|m| started + jiff::SignedDuration::from_secs_f64(m));
    let idle_due = match (lim.idle.secs(), t.idle_since_ms) {
        (Some(s), Some(since)) if t.idle_looks >= pol.window => {
            Some(from_ms(since) + jiff::SignedDuration::from_secs_f64(s))
        }
        _ => None,
    };
    if let Some(i) = idle_due
        && runtime_due.is_none_or(|r| i < r)
    {
        return format!("idle stop at {} if still idle", clock(i.max(now)));
    }
    if let Some(r) = runtime_due {
        return format!("runtime stop at {}", clock(r.max(now)));
    }
    if lim.idle.hours.is_some() {
        "idle stop once idle long enough; no runtime limit".into()
    } else {
        "nothing: exempt from both limits".into()
    }
}

/// Everything lifecycle remembers, in `/var/lib/ds01/lifecycle.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// By container id.
    pub tracks: BTreeMap<String, Track>,
}

pub const STATE_FILE: &str = "lifecycle.json";

impl State {
    /// The saved state; a missing file is a fresh start, an unreadable one too
    /// (said on stderr): losing streaks only delays a stop, never hastens one.
    pub fn load(dir: &std::path::Path) -> State {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                eprintln!(
                    "warning: {} is unreadable ({e}); idle streaks start again",
                    path.display()
                );
                State::default()
            }),
            Err(_) => State::default(),
        }
    }

    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&dir.join(STATE_FILE), &text, 0o644)
    }
}

/// Why a container is left alone (`infra`: `monitoring.infrastructure_containers`).
fn exemption(infra: &[String], c: &Container, owner_is_admin: bool) -> Option<String> {
    if let Some(p) = infra
        .iter()
        .find(|p| !p.is_empty() && c.name.starts_with(p.as_str()))
    {
        return Some(format!(
            "infrastructure (monitoring.infrastructure_containers: {p})"
        ));
    }
    // An image can carry the label and containers inherit image labels, so it is
    // honoured only on an admin's containers.
    if c.protected_label && owner_is_admin {
        return Some("protected (ds01.protected=true on an admin's container)".into());
    }
    None
}

/// One container in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub container: String,
    pub id: String,
    pub user: String,
    #[serde(rename = "type")]
    pub ctype: String,
    pub state: String,
    pub runtime_s: Option<f64>,
    pub idle_looks: u32,
    pub idle_s: Option<f64>,
    pub cpu_pct: Option<f64>,
    pub net_bytes: Option<u64>,
    pub gpu: Option<String>,
    pub limits: Applied,
    /// Why it is never touched, if it is not.
    pub exempt: Option<String>,
    /// What this pass did (or would do, in a dry run).
    pub actions: Vec<String>,
    pub next: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub warned: usize,
    pub stopped: usize,
    pub removed: usize,
    pub high_demand: bool,
    pub errors: Vec<String>,
}

/// How a pass runs.
pub struct PassCtx<'a> {
    pub cfg: &'a Config,
    pub docker: &'a mut dyn source::Docker,
    pub probe: &'a mut dyn source::Probe,
    pub notify: &'a mut dyn notify::Notify,
    pub events: &'a crate::events::EventLog,
    /// Decide and report only: no warning sent, nothing stopped or removed, the
    /// state not changed.
    pub dry_run: bool,
    /// Is this user an admin (for `ds01.protected`)?
    pub is_admin: &'a dyn Fn(&str) -> bool,
}

fn state_text(s: &RunState) -> String {
    match s {
        RunState::Running => "running".into(),
        RunState::Exited => "exited".into(),
        RunState::Created => "created".into(),
        RunState::Other(o) => o.clone(),
    }
}

/// One lifecycle pass at `now`: look at every ds01 container, warn, stop, remove,
/// log, and update `state`.
pub fn pass(ctx: &mut PassCtx, state: &mut State, now: Timestamp) -> Outcome {
    let mut out = Outcome::default();
    let saved = ctx.dry_run.then(|| state.clone());
    let containers = match ctx.docker.containers() {
        Ok(c) => c,
        Err(e) => {
            out.errors.push(format!("cannot list containers: {e}"));
            return out;
        }
    };
    let pol = &ctx.cfg.lifecycle;
    let running: Vec<&Container> = containers
        .iter()
        .filter(|c| c.state == RunState::Running)
        .collect();
    let total = ctx.docker.gpu_devices();
    let allocated: usize = running
        .iter()
        .map(|c| {
            if c.gpus.iter().any(|g| g == "all") {
                total
            } else {
                c.gpus.len()
            }
        })
        .sum::<usize>()
        .min(total);
    out.high_demand = high_demand(allocated, total, pol);
    ctx.probe.prepare(&running);
    let mut tracks = std::mem::take(&mut state.tracks);
    let mut next_tracks = BTreeMap::new();
    let mut stops: Vec<(usize, Action)> = Vec::new();
    let infra = ctx.cfg.infrastructure_containers();
    // Limits and admin status per (user, type) and per user: resolved once a pass.
    let mut limits: std::collections::HashMap<(&str, &str), Applied> =
        std::collections::HashMap::new();
    let mut admins: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
    // The owner's slice, relative to the ds01.slice root: where the scope is.
    let mut slices: std::collections::HashMap<&str, std::path::PathBuf> =
        std::collections::HashMap::new();
    for c in &containers {
        let lim = limits
            .entry((c.user.as_str(), c.ctype.as_str()))
            .or_insert_with(|| {
                limits_for(
                    ctx.cfg,
                    &ctx.cfg.resolve(&c.user),
                    &c.ctype,
                    out.high_demand,
                )
            })
            .clone();
        let mut t = tracks.remove(&c.id).unwrap_or_default();
        // Only a protected container needs to know (an NSS lookup per owner).
        let owner_is_admin = c.protected_label
            && *admins
                .entry(c.user.as_str())
                .or_insert_with(|| (ctx.is_admin)(&c.user));
        let exempt = exemption(&infra, c, owner_is_admin);
        let mut row = Row {
            container: c.name.clone(),
            id: c.id.chars().take(12).collect(),
            user: c.user.clone(),
            ctype: c.ctype.clone(),
            state: state_text(&c.state),
            runtime_s: None,
            idle_looks: 0,
            idle_s: None,
            cpu_pct: None,
            net_bytes: None,
            gpu: None,
            limits: lim.clone(),
            exempt: exempt.clone(),
            actions: Vec::new(),
            next: String::new(),
        };
        let actions = if c.state == RunState::Running {
            let slice = slices.entry(c.user.as_str()).or_insert_with(|| {
                let r = ctx.cfg.resolve(&c.user);
                std::path::Path::new(&crate::naming::group_slice(&r.group)).join(r.slice())
            });
            let s = ctx.probe.sample(c, slice, now);
            row.gpu = match s.gpu {
                GpuSignal::NoGpu => None,
                GpuSignal::Unknown => Some("unknown".into()),
                GpuSignal::Util(u) => Some(format!("{u:.0}%")),
            };
            let acts = look(&mut t, c, &s, &lim, pol);
            row.runtime_s = Some((now - c.started.unwrap_or(c.created)).as_secs_f64());
            row.idle_looks = t.idle_looks;
            row.idle_s = t
                .idle_since_ms
                .map(|since| (ms(now) - since) as f64 / 1000.0);
            row.cpu_pct = t.cpu_pct;
            row.net_bytes = t.net_delta;
            acts
        } else {
            // Not running: no streak; a stop we made is remembered for the report.
            let stopped = t.stopped.take();
            t = Track {
                stopped,
                ..Track::default()
            };
            look_stopped(c, &lim, pol, now).into_iter().collect()
        };
        row.next = if exempt.is_some() {
            "nothing: never touched".into()
        } else {
            next_step(&t, c, &lim, pol, now)
        };
        let i = out.rows.len();
        if exempt.is_none() {
            for a in actions {
                match a {
                    Action::Warn {
                        why,
                        key,
                        message,
                        due,
                    } => {
                        row.actions.push(format!("warn ({key}): {message}"));
                        if ctx.dry_run {
                            continue;
                        }
                        out.warned += 1;
                        let ttys = ctx.notify.terminals(&c.user, &message);
                        ctx.notify.alert(
                            &c.user,
                            &c.name,
                            &message,
                            due + jiff::SignedDuration::from_hours(1),
                        );
                        let ev = crate::events::Event::new(match why {
                            Why::Idle => "maintenance.idle_warning",
                            Why::Runtime => "maintenance.runtime_warning",
                        })
                        .user(&c.user)
                        .source("lifecycle")
                        .detail("container", c.name.clone())
                        .detail("warning", key)
                        .detail("due", crate::timespec::format_event_time(due))
                        .detail("terminals", ttys as u64);
                        log(ctx.events, &ev);
                    }
                    Action::Stop { .. } | Action::Remove { .. } => stops.push((i, a)),
                }
            }
        }
        next_tracks.insert(c.id.clone(), t);
        out.rows.push(row);
    }
    // Stops, all at once (each with its own grace), then removals.
    let stop_list: Vec<(usize, Action)> = stops
        .iter()
        .filter(|(_, a)| matches!(a, Action::Stop { .. }))
        .cloned()
        .collect();
    for (i, a) in &stop_list {
        if let Action::Stop { why, grace_s, .. } = a {
            out.rows[*i].actions.push(format!(
                "stop ({}, {grace_s} s to shut down)",
                match why {
                    Why::Idle => "idle",
                    Why::Runtime => "runtime",
                }
            ));
        }
    }
    if !ctx.dry_run && !stop_list.is_empty() && pol.enforce {
        let req: Vec<(String, u64)> = stop_list
            .iter()
            .filter_map(|(i, a)| match a {
                Action::Stop { grace_s, .. } => Some((containers[*i].id.clone(), *grace_s)),
                _ => None,
            })
            .collect();
        let results = ctx.docker.stop_all(&req);
        for ((i, a), res) in stop_list.iter().zip(results) {
            let c = &containers[*i];
            let Action::Stop {
                why,
                measured_s,
                limit,
                grace_s,
            } = a
            else {
                continue;
            };
            match res {
                Ok(()) => {
                    out.stopped += 1;
                    let (ty, measured_key) = match why {
                        Why::Idle => ("maintenance.idle_kill", "idle_s"),
                        Why::Runtime => ("maintenance.runtime_kill", "runtime_s"),
                    };
                    let why_text = match why {
                        Why::Idle => format!(
                            "idle for {}, limit {}",
                            human_secs(*measured_s),
                            limit.text()
                        ),
                        Why::Runtime => format!(
                            "ran for {}, limit {}",
                            human_secs(*measured_s),
                            limit.text()
                        ),
                    };
                    let ev = crate::events::Event::new(ty)
                        .user(&c.user)
                        .source("lifecycle")
                        .detail("container", c.name.clone())
                        .detail("why", why_text)
                        .detail(measured_key, measured_s.round() as u64)
                        .detail("limit_h", limit.hours.unwrap_or(0.0))
                        .detail("limit_from", limit.from.clone())
                        .detail("grace_s", *grace_s);
                    log(ctx.events, &ev);
                    if let Some(t) = next_tracks.get_mut(&c.id) {
                        t.stopped = Some((
                            ms(now),
                            match why {
                                Why::Idle => "idle".into(),
                                Why::Runtime => "runtime".into(),
                            },
                        ));
                    }
                }
                Err(e) => out
                    .errors
                    .push(format!("cannot stop {} ({}): {e}", c.name, c.user)),
            }
        }
    }
    for (i, a) in &stops {
        let Action::Remove { stopped_s, reason } = a else {
            continue;
        };
        let c = &containers[*i];
        out.rows[*i].actions.push(format!("remove: {reason}"));
        if ctx.dry_run || !pol.enforce {
            continue;
        }
        match ctx.docker.remove(&c.id) {
            Ok(()) => {
                out.removed += 1;
                next_tracks.remove(&c.id);
                let ev = crate::events::Event::new("maintenance.container_removed")
                    .user(&c.user)
                    .source("lifecycle")
                    .detail("container", c.name.clone())
                    .detail("why", reason.clone())
                    .detail("stopped_s", stopped_s.round() as u64);
                log(ctx.events, &ev);
            }
            Err(e) => out
                .errors
                .push(format!("cannot remove {} ({}): {e}", c.name, c.user)),
        }
    }
    state.tracks = next_tracks;
    if let Some(before) = saved {
        // Nothing changes in a dry run.
        *state = before;
    }
    out
}

/// Where a real pass reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    pub cgroup_root: std::path::PathBuf,
    pub proc_root: std::path::PathBuf,
    pub state_dir: std::path::PathBuf,
    pub alerts_dir: std::path::PathBuf,
    pub events: crate::events::EventLog,
}

/// The real sources, kept between passes (the inspect cache lives here).
pub struct Runner {
    pub paths: Paths,
    docker: source::EngineDocker,
    probe: source::RealProbe,
    notify: notify::Real,
    state: State,
}

impl Runner {
    /// `sockets`: where the Docker daemon may be, in order ([`source::default_sockets`]).
    pub fn new(paths: Paths, sockets: Vec<std::path::PathBuf>) -> Runner {
        Runner {
            docker: source::EngineDocker::new(
                sockets,
                crate::docker::gpu::inventory(),
                paths.proc_root.clone(),
            ),
            probe: source::RealProbe::new(paths.cgroup_root.clone(), paths.proc_root.clone()),
            notify: notify::Real {
                alerts_dir: paths.alerts_dir.clone(),
            },
            state: State::load(&paths.state_dir),
            paths,
        }
    }

    /// One pass; the state is saved unless it is a dry run.
    pub fn run(&mut self, cfg: &Config, dry_run: bool, now: Timestamp) -> Outcome {
        let admin = |u: &str| {
            let uid = crate::docker::identity::user_uid(u);
            let groups = match (uid, crate::docker::identity::user_gid(u)) {
                (Some(_), Some(gid)) => crate::docker::identity::group_names(u, gid),
                _ => Vec::new(),
            };
            crate::docker::is_admin(Some(cfg), uid.unwrap_or(u32::MAX), u, &groups)
        };
        let mut ctx = PassCtx {
            cfg,
            docker: &mut self.docker,
            probe: &mut self.probe,
            notify: &mut self.notify,
            events: &self.paths.events,
            dry_run,
            is_admin: &admin,
        };
        let mut out = pass(&mut ctx, &mut self.state, now);
        if !dry_run && let Err(e) = self.state.save(&self.paths.state_dir) {
            out.errors.push(format!(
                "cannot save {}: {e}",
                self.paths.state_dir.join(STATE_FILE).display()
            ));
        }
        out
    }
}

/// The report: one block per container, for `ds01 lifecycle`.
pub fn render(o: &Outcome, dry_run: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if o.rows.is_empty() {
        s.push_str("No ds01 containers (none labelled ds01.user).\n");
    }
    for r in &o.rows {
        let run = r
            .runtime_s
            .map(|x| format!(" {}", human_secs(x)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{}  ({}, {}, {}{run})",
            r.container, r.user, r.ctype, r.state
        );
        if let Some(e) = &r.exempt {
            let _ = writeln!(s, "  exempt    {e}");
        } else if r.state == "running" {
            let idle = match r.idle_s {
                Some(x) => format!("{} ({} idle looks)", human_secs(x), r.idle_looks),
                None => "not idle".into(),
            };
            let mut seen = Vec::new();
            if let Some(c) = r.cpu_pct {
                seen.push(format!("cpu {c:.1}%"));
            }
            if let Some(n) = r.net_bytes {
                seen.push(format!("net {}", crate::units::format_human_bytes(n)));
            }
            if let Some(g) = &r.gpu {
                seen.push(format!("gpu {g}"));
            }
            let seen = if seen.is_empty() {
                "first look".to_string()
            } else {
                seen.join(", ")
            };
            let _ = writeln!(s, "  idle      {idle}; last look: {seen}");
            let _ = writeln!(s, "  limits    idle {}", r.limits.idle.text());
            let _ = writeln!(s, "            runtime {}", r.limits.runtime.text());
        } else {
            let _ = writeln!(s, "  limits    removal {}", r.limits.remove_after.text());
        }
        let _ = writeln!(s, "  next      {}", r.next);
        for a in &r.actions {
            let verb = if dry_run { "would" } else { "did" };
            let _ = writeln!(s, "  {verb:<9} {a}");
        }
    }
    let _ = writeln!(
        s,
        "{} container(s){}: {} warned, {} stopped, {} removed{}",
        o.rows.len(),
        if o.high_demand {
            ", GPUs in high demand (idle limits shortened)"
        } else {
            ""
        },
        o.warned,
        o.stopped,
        o.removed,
        if dry_run {
            " (dry run: nothing done)"
        } else {
            ""
        }
    );
    for e in &o.errors {
        let _ = writeln!(s, "error: {e}");
    }
    s
}

fn log(events: &crate::events::EventLog, ev: &crate::events::Event) {
    if let Err(e) = events.append(ev) {
        eprintln!("error: cannot log {}: {e}", ev.event_type);
    }
}

#[cfg(test)]
mod tests;
