//! One collection pass: read every user slice, write one stats line per slice (one
//! append for the whole pass), detect OOM kills against the saved state and log one
//! `resource.oom_kill` event per user whose count rose.
//!
//! OOM state lives in the state dir:
//! * `oom-counts.json` — `{"<user>": <last oom_kill count seen>}`, the COMPAT.md
//!   format, readable by other tools;
//! * `oom-tracking.json` — ds01's extra: each slice's cgroup inode (a re-created
//!   slice counts from 0 again) and each container scope's `oom_kill` count, for
//!   attribution. Losing it loses only inode-change detection and attribution for
//!   one pass.
//!
//! Both are replaced atomically while holding `oom-counts.lock` (flock), so two
//! overlapping passes (cron and the monitor, or a slow pass and the next) never log
//! the same kill twice.

use crate::cgroup::parse::Psi;
use crate::cgroup::{CgroupDir, CgroupError, MemoryEvents, UserSlice, walk};
use crate::events::{Event, EventLog};
use crate::units::Limit;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_STATS_LOG: &str = "/var/log/ds01/resource-stats.log";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ds01/resource-stats";
pub const DEFAULT_DOCKER_ROOT: &str = "/var/lib/docker";
const COUNTS_FILE: &str = "oom-counts.json";
const TRACKING_FILE: &str = "oom-tracking.json";
const LOCK_FILE: &str = "oom-counts.lock";

/// Where a pass reads and writes.
#[derive(Debug, Clone)]
pub struct CollectPaths {
    /// The `ds01.slice` directory of the cgroup v2 tree.
    pub cgroup_root: PathBuf,
    pub stats_log: PathBuf,
    pub state_dir: PathBuf,
    pub events: EventLog,
    /// For container names (`containers/<id>/config.v2.json`).
    pub docker_root: PathBuf,
}

/// What the kernel shows for one user slice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceStats {
    pub group: String,
    pub user: String,
    pub memory_current: Option<u64>,
    pub memory_max: Option<Limit<u64>>,
    pub memory_high: Option<Limit<u64>>,
    pub pids_current: Option<u64>,
    pub pids_max: Option<Limit<u64>>,
    pub psi_memory: Option<Psi>,
    pub psi_cpu: Option<Psi>,
    pub psi_io: Option<Psi>,
    pub events: Option<MemoryEvents>,
    pub cpu_usage_usec: Option<u64>,
    pub inode: Option<u64>,
    /// `(container id, oom_kill)` of each `docker-<id>.scope` below the slice.
    pub containers: Vec<(String, u64)>,
    /// The user's GPUs, on a host with GPUs (from the GPU report, not the slice).
    pub gpu: Option<crate::gpu::report::UserGpu>,
}

/// Read one slice. Any unreadable or garbled file fails the slice (with its path).
pub fn read_slice(s: &UserSlice) -> Result<SliceStats, CgroupError> {
    read_slice_with(s, true)
}

/// Read one slice without its container scopes' OOM counters (`containers` is
/// empty): what `/metrics` needs, one directory listing per slice cheaper.
pub fn read_slice_usage(s: &UserSlice) -> Result<SliceStats, CgroupError> {
    read_slice_with(s, false)
}

fn read_slice_with(s: &UserSlice, with_containers: bool) -> Result<SliceStats, CgroupError> {
    let d: &CgroupDir = &s.dir;
    // The slice's counters before its containers': a kill between the two reads
    // is then in a container's count and not yet in the slice's, which the next
    // read settles (track_ooms_as keeps the containers' old counts until the slice
    // rises). Read the other way round, the container's count was taken before the
    // kill and the slice's after, and the kill could not be given to a container.
    let events = d.memory_events()?;
    let mut containers = Vec::new();
    let scopes = if with_containers {
        d.scopes()
    } else {
        Vec::new()
    };
    for (id, mut scope) in scopes {
        // Read by path: a container's files are not worth keeping open (and a
        // kept fd would pin its cgroup after the container is gone).
        scope.open_files = crate::cgroup::Shared::default();
        // A container that exits mid-pass takes its cgroup with it: not an error.
        if let Ok(Some(ev)) = scope.memory_events() {
            containers.push((id, ev.oom_kill.unwrap_or(0)));
        }
    }
    Ok(SliceStats {
        group: s.group.clone(),
        user: s.user.clone(),
        memory_current: d.memory_current()?,
        memory_max: d.memory_max()?,
        memory_high: d.memory_high()?,
        pids_current: d.pids_current()?,
        pids_max: d.pids_max()?,
        psi_memory: d.psi("memory")?,
        psi_cpu: d.psi("cpu")?,
        psi_io: d.psi("io")?,
        events,
        cpu_usage_usec: d.cpu_usage_usec()?,
        inode: d.inode(),
        containers,
        gpu: None,
    })
}

fn limit_json(l: Option<Limit<u64>>) -> Value {
    match l {
        Some(Limit::Value(v)) => json!(v),
        _ => Value::Null,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The stats line (COMPAT.md field order, extra fields after), with its newline.
pub fn stats_line(ts: &str, s: &SliceStats) -> String {
    let mut m = Map::new();
    m.insert("timestamp".into(), json!(ts));
    m.insert("user".into(), json!(s.user));
    m.insert("group".into(), json!(s.group));
    m.insert(
        "memory_current_bytes".into(),
        json!(s.memory_current.unwrap_or(0)),
    );
    m.insert("memory_max_bytes".into(), limit_json(s.memory_max));
    let pct = match (s.memory_current, s.memory_max) {
        (Some(cur), Some(Limit::Value(max))) if max > 0 => round2(cur as f64 * 100.0 / max as f64),
        _ => 0.0,
    };
    m.insert("memory_pct".into(), json!(pct));
    m.insert("pids_current".into(), json!(s.pids_current.unwrap_or(0)));
    m.insert("pids_max".into(), limit_json(s.pids_max));
    if let Some(p) = s.psi_memory {
        m.insert("psi_memory_some_avg10".into(), json!(p.some.avg10));
        m.insert(
            "psi_memory_full_avg10".into(),
            json!(p.full.map_or(0.0, |f| f.avg10)),
        );
    }
    if let Some(p) = s.psi_cpu {
        m.insert("psi_cpu_some_avg10".into(), json!(p.some.avg10));
        m.insert(
            "psi_cpu_full_avg10".into(),
            json!(p.full.map_or(0.0, |f| f.avg10)),
        );
    }
    let ev = s.events.unwrap_or_default();
    m.insert("oom_count".into(), json!(ev.oom.unwrap_or(0)));
    m.insert("oom_kill_count".into(), json!(ev.oom_kill.unwrap_or(0)));
    // Additions after the contract's fields.
    m.insert("memory_high_bytes".into(), limit_json(s.memory_high));
    if let Some(u) = s.cpu_usage_usec {
        m.insert("cpu_usage_usec".into(), json!(u));
    }
    if let Some(p) = s.psi_io {
        m.insert("psi_io_some_avg10".into(), json!(p.some.avg10));
        m.insert(
            "psi_io_full_avg10".into(),
            json!(p.full.map_or(0.0, |f| f.avg10)),
        );
    }
    if let Some(p) = s.psi_memory {
        m.insert("psi_memory_some_avg60".into(), json!(p.some.avg60));
    }
    if let Some(p) = s.psi_cpu {
        m.insert("psi_cpu_some_avg60".into(), json!(p.some.avg60));
    }
    m.insert("memory_events_high".into(), json!(ev.high.unwrap_or(0)));
    m.insert("memory_events_max".into(), json!(ev.max.unwrap_or(0)));
    if let Some(g) = &s.gpu {
        m.insert("gpus_allocated".into(), json!(g.allocated));
        m.insert("gpus_in_use".into(), json!(g.in_use));
        m.insert("gpu_memory_bytes".into(), json!(g.memory_bytes));
        if let Some(u) = g.util_pct {
            m.insert("gpu_util_pct".into(), json!(round2(u)));
        }
    }
    let mut line = Value::Object(m).to_string();
    line.push('\n');
    line
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Tracking {
    pub inode: Option<u64>,
    #[serde(default)]
    pub containers: BTreeMap<String, u64>,
}

/// The saved OOM state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OomState {
    pub counts: BTreeMap<String, u64>,
    pub tracking: BTreeMap<String, Tracking>,
}

/// Load the state. `Err(reason)` when it must be rebuilt (missing, empty, corrupt):
/// the caller then takes the current counts as the baseline and logs nothing.
pub fn load_state(dir: &Path) -> Result<OomState, String> {
    let counts_path = dir.join(COUNTS_FILE);
    let text = match std::fs::read_to_string(&counts_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{} does not exist yet", counts_path.display()));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", counts_path.display())),
    };
    if text.trim().is_empty() {
        return Err(format!("{} is empty", counts_path.display()));
    }
    let counts: BTreeMap<String, u64> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is corrupt ({e})", counts_path.display()))?;
    // The tracking file is an optional extra: unreadable = no inode/attribution data.
    let tracking = std::fs::read_to_string(dir.join(TRACKING_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    Ok(OomState { counts, tracking })
}

pub fn save_state(dir: &Path, st: &OomState) -> std::io::Result<()> {
    let counts = serde_json::to_vec_pretty(&st.counts).map_err(std::io::Error::other)?;
    let tracking = serde_json::to_vec(&st.tracking).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&dir.join(TRACKING_FILE), &tracking, 0o644)?;
    crate::fault::point("oom-state-half");
    crate::fsutil::write_atomic(&dir.join(COUNTS_FILE), &counts, 0o644)
}

/// New OOM kills of one slice since the saved state, and the containers they
/// happened in (`(id, kills)`).
#[derive(Debug, Clone, PartialEq)]
pub struct OomRise {
    pub new_kills: u64,
    pub total: u64,
    pub reset: bool,
    /// A lower count than the state's from the same cgroup: the kernel's counter
    /// never goes down in one cgroup, so this read is older than the state (another
    /// pass read later and got the lock first). Nothing to log, nothing to save.
    pub stale: bool,
    pub containers: Vec<(String, u64)>,
    /// The one container named went away before this read (named by
    /// elimination: no container here counted the kill).
    pub container_gone: bool,
}

/// Compare a slice with the state. A new cgroup inode is a reset: every kill
/// counted now is new. A lower count than last seen is a reset when the inode
/// cannot tell (no tracking yet), and a stale read when it is the same cgroup.
pub fn oom_rise(prev_count: Option<u64>, prev: Option<&Tracking>, s: &SliceStats) -> OomRise {
    let total = s.events.and_then(|e| e.oom_kill).unwrap_or(0);
    let (prev_inode, inode) = (prev.and_then(|t| t.inode), s.inode);
    let inode_changed = matches!((prev_inode, inode), (Some(a), Some(b)) if a != b);
    let same_cgroup = matches!((prev_inode, inode), (Some(a), Some(b)) if a == b);
    let lower = prev_count.is_some_and(|p| total < p);
    if lower && same_cgroup {
        return OomRise {
            new_kills: 0,
            total,
            reset: false,
            stale: true,
            containers: Vec::new(),
            container_gone: false,
        };
    }
    let reset = inode_changed || lower;
    let new_kills = match prev_count {
        _ if reset => total,
        Some(p) => total - p,
        None => total,
    };
    let mut containers = Vec::new();
    if new_kills > 0 {
        for (id, count) in &s.containers {
            let before = if reset {
                0
            } else {
                prev.and_then(|t| t.containers.get(id))
                    .copied()
                    .unwrap_or(0)
            };
            if *count > before {
                containers.push((id.clone(), count - before));
            }
        }
        containers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    // No container here counted the kill, and exactly one container of this same
    // cgroup went away since the last read: the kill of a container's main process
    // ends the container, and its scope can be removed before the kill is read.
    let gone = match prev {
        Some(t) if new_kills > 0 && containers.is_empty() && same_cgroup => {
            let mut gone = t
                .containers
                .keys()
                .filter(|id| !s.containers.iter().any(|(c, _)| c == *id));
            match (gone.next(), gone.next()) {
                (Some(id), None) => Some(id.clone()),
                _ => None,
            }
        }
        _ => None,
    };
    let container_gone = gone.is_some();
    containers.extend(gone.map(|id| (id, new_kills)));
    OomRise {
        new_kills,
        total,
        reset,
        stale: false,
        containers,
        container_gone,
    }
}

/// The container's name from Docker's own state, if readable (root only).
pub fn container_name(docker_root: &Path, id: &str) -> Option<String> {
    let text = std::fs::read_to_string(
        docker_root
            .join("containers")
            .join(id)
            .join("config.v2.json"),
    )
    .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("Name")?
        .as_str()
        .map(|n| n.trim_start_matches('/').to_string())
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub slices: usize,
    pub skipped: Vec<PathBuf>,
    pub oom_events: Vec<Event>,
    /// Problems that make the pass exit 1 (each already says which file).
    pub errors: Vec<String>,
    /// Things reported but not failures (state rebuilt).
    pub notes: Vec<String>,
}

impl PassReport {
    /// OOM kills on stdout (when `ooms`), notes and errors on stderr — the same for
    /// `ds01 collect` and `ds01 monitor`.
    pub fn print(&self, ooms: bool) {
        for ev in self.oom_events.iter().filter(|_| ooms) {
            println!(
                "OOM kill: {} +{} ({})",
                ev.user.as_deref().unwrap_or("?"),
                ev.details
                    .get("oom_count")
                    .map_or("?".into(), Value::to_string),
                ev.details
                    .get("container")
                    .and_then(Value::as_str)
                    .unwrap_or("container unknown")
            );
        }
        for n in &self.notes {
            eprintln!("note: {n}");
        }
        for e in &self.errors {
            eprintln!("error: {e}");
        }
    }
}

fn lock_state(dir: &Path, wait: Duration) -> Result<crate::fsutil::FileLock, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    crate::fsutil::lock(&dir.join(LOCK_FILE), wait)
}

/// One pass at time `now`.
pub fn run_pass(p: &CollectPaths, now: jiff::Timestamp) -> PassReport {
    run_pass_with_stats(p, now, None).0
}

/// One pass, also returning what was read of each slice (the monitor derives the
/// users' alerts from it). With a GPU report (a host with GPUs), each line gets
/// the user's GPU fields.
pub fn run_pass_with_stats(
    p: &CollectPaths,
    now: jiff::Timestamp,
    gpu: Option<&crate::gpu::report::Report>,
) -> (PassReport, Vec<SliceStats>) {
    let mut rep = PassReport::default();
    let w = match walk(&p.cgroup_root) {
        Ok(w) => w,
        Err(e) => {
            rep.errors.push(e.to_string());
            return (rep, Vec::new());
        }
    };
    rep.skipped = w.skipped;
    let ts = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut stats = Vec::with_capacity(w.slices.len());
    let mut lines = String::new();
    for s in &w.slices {
        match read_slice(s) {
            Ok(mut st) => {
                if let Some(r) = gpu {
                    st.gpu = Some(r.users.get(&st.user).cloned().unwrap_or_default());
                }
                lines.push_str(&stats_line(&ts, &st));
                stats.push(st);
            }
            Err(e) => rep
                .errors
                .push(format!("slice {}: {e}", s.dir.path.display())),
        }
    }
    rep.slices = stats.len();
    if !lines.is_empty()
        && let Err(e) = crate::fsutil::append_once(&p.stats_log, lines.as_bytes(), 0o644)
    {
        rep.errors
            .push(format!("cannot write {}: {e}", p.stats_log.display()));
    }
    track_ooms(p, &stats, now, &mut rep);
    (rep, stats)
}

/// Compare `stats` with the OOM state and log new kills (as `source`). Slices not in
/// `stats` keep their state, so the monitor can call this for one slice.
pub fn track_ooms(
    p: &CollectPaths,
    stats: &[SliceStats],
    now: jiff::Timestamp,
    rep: &mut PassReport,
) {
    track_ooms_as(p, stats, now, rep, "collector");
}

pub fn track_ooms_as(
    p: &CollectPaths,
    stats: &[SliceStats],
    now: jiff::Timestamp,
    rep: &mut PassReport,
    source: &str,
) {
    let _lock = match lock_state(&p.state_dir, Duration::from_secs(10)) {
        Ok(l) => l,
        Err(e) => {
            rep.errors
                .push(format!("OOM tracking skipped this pass: {e}"));
            return;
        }
    };
    let (mut state, baseline) = match load_state(&p.state_dir) {
        Ok(s) => (s, false),
        Err(why) => {
            rep.notes.push(format!(
                "OOM state rebuilt: {why}; current counts are the baseline (no events for kills before now)"
            ));
            (OomState::default(), true)
        }
    };
    // A pass that crashed between logging its kills and saving the state left its
    // intent behind: kills whose event is in the log are moved forward now, so
    // they are not logged twice; the others are logged below, so none is lost.
    let intent_path = p.state_dir.join(INTENT_FILE);
    let intent: Vec<Intent> = std::fs::read(&intent_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if !intent.is_empty() {
        let logged = recent_oom_totals(&p.events.path);
        for i in &intent {
            if logged.contains(&(i.user.clone(), i.total)) {
                state.counts.insert(i.user.clone(), i.total);
                state.tracking.insert(i.user.clone(), i.tracking.clone());
            }
        }
    }
    let mut events = Vec::new();
    let mut pending: Vec<(String, u64, Tracking)> = Vec::new();
    for s in stats {
        let Some(total) = s.events.and_then(|e| e.oom_kill) else {
            continue;
        };
        let prev_tracking = state.tracking.get(&s.user);
        let rise = oom_rise(
            state.counts.get(&s.user).copied(),
            state.tracking.get(&s.user),
            s,
        );
        if rise.stale {
            continue;
        }
        // A container's counter moves a moment before its slice's (the kernel counts
        // up the hierarchy): when the slice has not risen yet, keep the containers'
        // old counts so the kill is still attributed when the slice's count follows.
        let settled = rise.new_kills > 0 || rise.reset;
        let tracking = Tracking {
            inode: s.inode,
            containers: s
                .containers
                .iter()
                .map(|(id, n)| {
                    let old = prev_tracking.and_then(|t| t.containers.get(id)).copied();
                    // A container not seen before counts from 0: its kill may be
                    // the one the slice has not counted yet.
                    (id.clone(), if settled { *n } else { old.unwrap_or(0) })
                })
                .collect(),
        };
        if !baseline && rise.new_kills > 0 {
            let mut ev = Event::new("resource.oom_kill")
                .user(&s.user)
                .source(source)
                .detail("group", s.group.as_str())
                .detail("oom_count", rise.new_kills)
                .detail("total_oom_kills", rise.total);
            if rise.reset {
                ev = ev.detail("counter_reset", true);
            }
            if rise.container_gone {
                ev = ev.detail("container_gone", true);
            }
            if let Some((id, _)) = rise.containers.first() {
                ev = ev.detail("container_id", id.as_str());
                let name = container_name(&p.docker_root, id);
                ev = ev.detail(
                    "container",
                    name.unwrap_or_else(|| id.chars().take(12).collect()),
                );
            }
            if rise.containers.len() > 1 {
                let list: Vec<Value> = rise
                    .containers
                    .iter()
                    .map(|(id, n)| json!({"container_id": id, "oom_kills": n}))
                    .collect();
                ev = ev.detail("containers", list);
            }
            events.push(ev);
        }
        pending.push((s.user.clone(), total, tracking));
    }
    // Log first; only then move the state forward, so a kill whose event could not
    // be written is logged by the next pass instead of being lost.
    let mut logged = true;
    if !events.is_empty() {
        let intent: Vec<Intent> = pending
            .iter()
            .filter(|(u, _, _)| events.iter().any(|e| e.user.as_deref() == Some(u.as_str())))
            .map(|(user, total, tracking)| Intent {
                user: user.clone(),
                total: *total,
                tracking: tracking.clone(),
            })
            .collect();
        if let Ok(b) = serde_json::to_vec(&intent)
            && let Err(e) = crate::fsutil::write_atomic(&intent_path, &b, 0o644)
        {
            rep.errors.push(format!(
                "cannot write {} (a crash now could log a kill twice): {e}",
                intent_path.display()
            ));
        }
        crate::fault::point("oom-intent");
        let mut buf = String::new();
        for ev in &events {
            match ev.to_line(now) {
                Ok(l) => buf.push_str(&l),
                Err(e) => rep.errors.push(e.to_string()),
            }
        }
        if let Err(e) = p.events.append_raw(buf.as_bytes()) {
            rep.errors
                .push(format!("OOM events not logged (will retry next pass): {e}"));
            logged = false;
        }
    }
    for (user, total, tracking) in pending {
        let rose = events
            .iter()
            .any(|e| e.user.as_deref() == Some(user.as_str()));
        if rose && !logged {
            continue;
        }
        state.counts.insert(user.clone(), total);
        state.tracking.insert(user, tracking);
    }
    crate::fault::point("oom-logged");
    match save_state(&p.state_dir, &state) {
        Ok(()) => {
            let _ = std::fs::remove_file(&intent_path);
        }
        Err(e) => rep.errors.push(format!(
            "cannot save the OOM state in {}: {e}",
            p.state_dir.display()
        )),
    }
    if logged {
        rep.oom_events = events;
    }
}

/// Kills about to be logged, saved before the append (`oom-intent.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Intent {
    user: String,
    total: u64,
    tracking: Tracking,
}

const INTENT_FILE: &str = "oom-intent.json";

/// `(user, total_oom_kills)` of the `resource.oom_kill` events in the last 1 MiB
/// of the event log: enough for the lines one crashed pass can have written.
fn recent_oom_totals(log: &Path) -> std::collections::HashSet<(String, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = std::collections::HashSet::new();
    let Ok(mut f) = std::fs::File::open(log) else {
        return out;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(1 << 20)));
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return out;
    }
    for line in String::from_utf8_lossy(&buf).lines() {
        if !line.contains("resource.oom_kill") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some(u), Some(t)) = (v["user"].as_str(), v["details"]["total_oom_kills"].as_u64()) {
            out.insert((u.to_string(), t));
        }
    }
    out
}
