//! One sample joined with the containers' GPU requests and the processes' owners:
//! per device who holds it and what runs on it, per user what they hold and use.
//! Every view reads a [`Report`]; the monitor keeps the newest in `gpu.json` with
//! the devices' idle history ([`IdleState`]).

use super::Snapshot;
use super::attribute::{Owner, owner_of};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The monitor's newest report, in the state dir.
pub const REPORT_FILE: &str = "gpu.json";

/// A report older than this is not shown as current (the monitor is down).
pub const FRESH_S: i64 = 300;

/// A running container and the GPU device ids it asked for (`0`, `0:1`, a UUID,
/// `all`; empty = none).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub user: String,
    pub gpus: Vec<String>,
}

impl ContainerInfo {
    /// The running containers of a lifecycle listing.
    pub fn running(list: &[crate::lifecycle::Container]) -> Vec<ContainerInfo> {
        list.iter()
            .filter(|c| c.state == crate::lifecycle::RunState::Running)
            .map(|c| ContainerInfo {
                id: c.id.clone(),
                name: c.name.clone(),
                user: c.user.clone(),
                gpus: c.gpus.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Holder {
    pub user: String,
    pub container: String,
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcRow {
    pub pid: u32,
    /// The device's label (`0`, `0:1`).
    pub device: String,
    /// `container`, `bare_metal` or `gone` (ended before it was looked up).
    pub kind: String,
    pub user: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
    /// A container outside `ds01.slice` (not placed by ds01).
    #[serde(default)]
    pub unplaced: bool,
    /// Bare metal by a user `bare_metal_access.exempt_users` allows.
    #[serde(default)]
    pub exempt: bool,
    pub memory_bytes: Option<u64>,
    pub sm_util_pct: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceRow {
    /// `0` for a GPU, `0:1` for MIG instance 1 of GPU 0.
    pub label: String,
    pub uuid: String,
    pub name: String,
    /// A MIG instance (its GPU's row comes first).
    pub mig: bool,
    /// A GPU in MIG mode: containers get its instances, not it.
    pub mig_enabled: bool,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    /// The GPU's utilisation, or for a MIG instance the sum of its processes'.
    pub utilization_pct: Option<f64>,
    pub holders: Vec<Holder>,
    pub processes: Vec<ProcRow>,
    /// Seconds since it was last busy (`None`: no history yet).
    pub idle_s: Option<u64>,
    pub busy: bool,
    pub error: Option<String>,
}

/// One user's GPUs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserGpu {
    /// Devices their running containers hold.
    pub allocated: u32,
    /// Of those, busy now.
    pub in_use: u32,
    /// GPU memory of their processes (containers and bare metal).
    pub memory_bytes: u64,
    /// Mean utilisation of the devices they hold (where known).
    pub util_pct: Option<f64>,
    pub processes: u32,
    pub bare_metal_processes: u32,
    pub bare_metal_memory_bytes: u64,
    /// Held devices idle for a while: `(label, container, idle seconds)`.
    pub idle: Vec<(String, String, u64)>,
}

/// When each device was last busy (unix seconds), kept between samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdleState {
    pub busy_at: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub taken_at: String,
    pub driver_version: Option<String>,
    /// What answered: `NVML …` or `replay of …`.
    pub source: String,
    pub devices: Vec<DeviceRow>,
    pub users: BTreeMap<String, UserGpu>,
    /// Errors of single GPUs, and why holders are unknown (Docker unreachable).
    pub errors: Vec<String>,
    /// Whether Docker said which containers hold which devices.
    #[serde(default)]
    pub holders_known: bool,
    #[serde(default)]
    pub idle_state: IdleState,
}

/// What [`build`] needs besides the sample.
pub struct Inputs<'a> {
    /// Running containers; `None` when Docker could not be asked (holders unknown).
    pub containers: Option<&'a [ContainerInfo]>,
    pub proc_root: &'a Path,
    pub exempt_users: &'a [String],
    /// A device at or above this utilisation (%) is busy.
    pub busy_pct: f64,
    /// The previous idle history (the last report's).
    pub idle: &'a IdleState,
    pub now: jiff::Timestamp,
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Join a sample with its owners and holders.
pub fn build(s: &Snapshot, source: &str, inp: &Inputs) -> Report {
    let mut rep = Report {
        taken_at: inp.now.to_string(),
        driver_version: s.driver_version.clone(),
        source: source.to_string(),
        ..Report::default()
    };
    // Device rows, and where each UUID's row is.
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    for g in &s.gpus {
        if let Some(e) = &g.error {
            rep.errors.push(format!("GPU {}: {e}", g.index));
        }
        at.insert(g.uuid.clone(), rep.devices.len());
        rep.devices.push(DeviceRow {
            label: g.index.to_string(),
            uuid: g.uuid.clone(),
            name: g.name.clone(),
            mig_enabled: g.mig_enabled,
            memory_used_bytes: g.memory_used_bytes,
            memory_total_bytes: g.memory_total_bytes,
            utilization_pct: g.utilization_pct.map(f64::from),
            error: g.error.clone(),
            ..DeviceRow::default()
        });
        for m in &g.migs {
            at.insert(m.uuid.clone(), rep.devices.len());
            rep.devices.push(DeviceRow {
                label: format!("{}:{}", g.index, m.index),
                uuid: m.uuid.clone(),
                name: m.name.clone(),
                mig: true,
                memory_used_bytes: m.memory_used_bytes,
                memory_total_bytes: m.memory_total_bytes,
                utilization_pct: s.mig_utilisation(&m.uuid),
                ..DeviceRow::default()
            });
        }
    }
    // Holders.
    let by_id: BTreeMap<&str, &ContainerInfo> = inp
        .containers
        .unwrap_or_default()
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    for c in inp.containers.unwrap_or_default() {
        let mut uuids: Vec<String> = c.gpus.iter().flat_map(|id| s.resolve(id)).collect();
        uuids.sort();
        uuids.dedup();
        for u in uuids {
            if let Some(&i) = at.get(&u) {
                rep.devices[i].holders.push(Holder {
                    user: c.user.clone(),
                    container: c.name.clone(),
                    id: c.id.clone(),
                });
            }
        }
    }
    // Processes.
    for p in &s.processes {
        let Some(&i) = at.get(&p.device) else {
            rep.errors.push(format!(
                "pid {} runs on {}, which the GPU list does not show",
                p.pid, p.device
            ));
            continue;
        };
        let mut row = ProcRow {
            pid: p.pid,
            device: rep.devices[i].label.clone(),
            memory_bytes: p.used_memory_bytes,
            sm_util_pct: p.sm_util_pct,
            ..ProcRow::default()
        };
        match owner_of(p, inp.proc_root) {
            Owner::Container {
                id, user, placed, ..
            } => {
                let known = by_id.get(id.as_str());
                row.kind = "container".into();
                row.user = user.or_else(|| known.map(|c| c.user.clone()));
                row.container = Some(known.map_or_else(|| short(&id), |c| c.name.clone()));
                row.container_id = Some(id);
                row.unplaced = !placed;
            }
            Owner::BareMetal { user, .. } => {
                row.kind = "bare_metal".into();
                row.exempt = inp.exempt_users.contains(&user);
                row.user = Some(user);
            }
            Owner::Gone => row.kind = "gone".into(),
        }
        rep.devices[i].processes.push(row);
    }
    rep.holders_known = inp.containers.is_some();
    if inp.containers.is_none() {
        rep.errors
            .push("Docker did not answer: which containers hold which GPUs is unknown".into());
    }
    let now_s = inp.now.as_second();
    for d in &mut rep.devices {
        // A GPU in MIG mode is busy through its instances; it is never held whole.
        if d.mig_enabled || d.error.is_some() {
            continue;
        }
        d.busy = match d.utilization_pct {
            Some(u) => u >= inp.busy_pct,
            // Unknown utilisation: busy while anything runs on it (never call
            // idle what cannot be seen).
            None => !d.processes.is_empty(),
        };
        match inp.idle.busy_at.get(&d.uuid) {
            _ if d.busy => {
                rep.idle_state.busy_at.insert(d.uuid.clone(), now_s);
                d.idle_s = Some(0);
            }
            Some(&t) => {
                rep.idle_state.busy_at.insert(d.uuid.clone(), t);
                d.idle_s = Some(now_s.saturating_sub(t).max(0) as u64);
            }
            // First seen idle: the history starts now.
            None => {
                rep.idle_state.busy_at.insert(d.uuid.clone(), now_s);
            }
        }
    }
    rep.users = per_user(&rep.devices);
    rep
}

/// Users' totals from the device rows.
fn per_user(devices: &[DeviceRow]) -> BTreeMap<String, UserGpu> {
    let mut users: BTreeMap<String, UserGpu> = BTreeMap::new();
    let mut utils: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for d in devices {
        let mut holders: Vec<&str> = d.holders.iter().map(|h| h.user.as_str()).collect();
        holders.sort_unstable();
        holders.dedup();
        for user in holders {
            let u = users.entry(user.to_string()).or_default();
            u.allocated += 1;
            if d.busy {
                u.in_use += 1;
            }
            if let Some(x) = d.utilization_pct {
                utils.entry(user.to_string()).or_default().push(x);
            }
            if let Some(idle) = d.idle_s.filter(|_| !d.busy) {
                let names: Vec<&str> = d
                    .holders
                    .iter()
                    .filter(|h| h.user == user)
                    .map(|h| h.container.as_str())
                    .collect();
                u.idle.push((d.label.clone(), names.join(","), idle));
            }
        }
        for p in &d.processes {
            let Some(user) = &p.user else { continue };
            let u = users.entry(user.clone()).or_default();
            let mem = p.memory_bytes.unwrap_or(0);
            u.memory_bytes += mem;
            u.processes += 1;
            if p.kind == "bare_metal" {
                u.bare_metal_processes += 1;
                u.bare_metal_memory_bytes += mem;
            }
        }
    }
    for (user, v) in utils {
        if let Some(u) = users.get_mut(&user)
            && !v.is_empty()
        {
            u.util_pct = Some(v.iter().sum::<f64>() / v.len() as f64);
        }
    }
    users
}

impl Report {
    /// What a non-admin may see: every device, but other users' holders and
    /// processes as `other` with no container names, and only their own totals.
    pub fn for_viewer(&self, me: &str) -> Report {
        let mut r = self.clone();
        for d in &mut r.devices {
            for h in &mut d.holders {
                if h.user != me {
                    *h = Holder {
                        user: "other".into(),
                        container: String::new(),
                        id: String::new(),
                    };
                }
            }
            for p in &mut d.processes {
                if p.user.as_deref() != Some(me) {
                    *p = ProcRow {
                        pid: 0,
                        device: p.device.clone(),
                        kind: p.kind.clone(),
                        user: Some("other".into()),
                        memory_bytes: p.memory_bytes,
                        ..ProcRow::default()
                    };
                }
            }
        }
        r.users.retain(|u, _| u == me);
        r
    }

    /// Seconds since the report was taken (`None`: unreadable time).
    pub fn age_s(&self, now: jiff::Timestamp) -> Option<i64> {
        let t: jiff::Timestamp = self.taken_at.parse().ok()?;
        Some(now.as_second() - t.as_second())
    }
}

/// The monitor's report file.
pub fn report_path(state_dir: &Path) -> PathBuf {
    state_dir.join(REPORT_FILE)
}

/// Read the last report (`None`: none, unreadable or garbled — only history is lost).
pub fn load(state_dir: &Path) -> Option<Report> {
    let text = std::fs::read_to_string(report_path(state_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The last report if it is at most [`FRESH_S`] old at `now` (an older one says
/// nothing about now: the monitor is down).
pub fn load_fresh(state_dir: &Path, now: jiff::Timestamp) -> Option<Report> {
    load(state_dir).filter(|r| r.age_s(now).is_some_and(|s| s <= FRESH_S))
}

/// Replace the report file atomically (readable by everyone: the greeting reads it).
pub fn save(state_dir: &Path, r: &Report) -> std::io::Result<()> {
    let text = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&report_path(state_dir), &text, 0o644)
}

/// `1 h 12 min`, `25 min`, `40 s`.
pub fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

pub fn gib(b: u64) -> String {
    let g = b as f64 / (1u64 << 30) as f64;
    if g >= 10.0 {
        format!("{g:.0} GiB")
    } else {
        format!("{g:.1} GiB")
    }
}

/// A held GPU idle this long is mentioned in the greeting.
pub const GREET_IDLE_S: u64 = 30 * 60;

/// The greeting's GPU lines for `user`: `GPU: 1 of 2 in use, 38 GiB, 92 %` and one
/// line per held device idle for half an hour. Nothing when they hold no GPU.
pub fn greeting(r: &Report, user: &str) -> Vec<String> {
    let Some(u) = r.users.get(user).filter(|u| u.allocated > 0) else {
        return Vec::new();
    };
    let mut line = format!(
        "GPU: {} of {} in use, {}",
        u.in_use,
        u.allocated,
        gib(u.memory_bytes)
    );
    if let Some(p) = u.util_pct {
        line.push_str(&format!(", {p:.0} %"));
    }
    let mut out = vec![line];
    for (label, container, idle) in &u.idle {
        if *idle >= GREET_IDLE_S {
            out.push(format!(
                "GPU {label} ({container}) has been idle for {}: stop the container when you are done, so others can use it",
                human_secs(*idle)
            ));
        }
    }
    out
}

fn cell(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// The `ds01 gpu` table.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    if r.devices.is_empty() {
        out.push_str("no GPUs\n");
    } else {
        out.push_str(&format!(
            "{:<6} {:<26} {:>17} {:>5} {:>11}  {:<12} {:<20} {:>5}\n",
            "GPU", "NAME", "MEMORY", "UTIL", "IDLE", "HOLDER", "CONTAINER", "PROCS"
        ));
        for d in &r.devices {
            let mem = match (d.memory_used_bytes, d.memory_total_bytes) {
                (Some(u), Some(t)) => format!(
                    "{:.1}/{:.1} GiB",
                    u as f64 / (1u64 << 30) as f64,
                    t as f64 / (1u64 << 30) as f64
                ),
                _ => "-".into(),
            };
            let label = if d.mig {
                format!(" {}", d.label)
            } else {
                d.label.clone()
            };
            let (holder, container) = if let Some(e) = &d.error {
                ("ERROR".to_string(), e.clone())
            } else if d.mig_enabled {
                ("(MIG mode)".to_string(), String::new())
            } else if d.holders.is_empty() && !r.holders_known {
                ("?".to_string(), String::new())
            } else if d.holders.is_empty() {
                ("free".to_string(), String::new())
            } else {
                let mut users: Vec<&str> = d.holders.iter().map(|h| h.user.as_str()).collect();
                users.sort_unstable();
                users.dedup();
                let names: Vec<&str> = d
                    .holders
                    .iter()
                    .map(|h| h.container.as_str())
                    .filter(|n| !n.is_empty())
                    .collect();
                (users.join(","), names.join(","))
            };
            let idle = match (d.busy, d.idle_s) {
                (true, _) => "busy".to_string(),
                (false, Some(s)) => human_secs(s),
                (false, None) => "-".into(),
            };
            // A MIG instance by its profile (`MIG 3g.20gb`), not its GPU's name.
            let name = match d.name.find("MIG ") {
                Some(i) if d.mig => &d.name[i..],
                _ => d.name.as_str(),
            };
            let name: String = name.chars().take(26).collect();
            out.push_str(&format!(
                "{:<6} {:<26} {:>17} {:>5} {:>11}  {:<12} {:<20} {:>5}\n",
                label,
                name,
                mem,
                cell(d.utilization_pct.map(|u| format!("{u:.0}%"))),
                if d.mig_enabled || d.error.is_some() {
                    String::new()
                } else {
                    idle
                },
                holder,
                container,
                d.processes.len()
            ));
        }
    }
    let procs: Vec<&ProcRow> = r
        .devices
        .iter()
        .flat_map(|d| &d.processes)
        .filter(|p| p.pid != 0)
        .collect();
    if !procs.is_empty() {
        out.push_str(&format!(
            "\n{:>8} {:<6} {:<12} {:<20} {:>10} {:>4}  {}\n",
            "PID", "GPU", "USER", "CONTAINER", "MEMORY", "SM", "NOTE"
        ));
        for p in procs {
            let note = match p.kind.as_str() {
                "bare_metal" if p.exempt => "bare metal (exempt)",
                "bare_metal" => "bare metal",
                "gone" => "exited",
                _ if p.unplaced => "container outside ds01.slice",
                _ => "",
            };
            out.push_str(&format!(
                "{:>8} {:<6} {:<12} {:<20} {:>10} {:>4}  {note}\n",
                p.pid,
                p.device,
                cell(p.user.clone()),
                cell(p.container.clone()),
                cell(p.memory_bytes.map(gib)),
                cell(p.sm_util_pct.map(|u| format!("{u}%"))),
            ));
        }
    }
    let hidden = r
        .devices
        .iter()
        .flat_map(|d| &d.processes)
        .filter(|p| p.pid == 0)
        .count();
    if hidden > 0 {
        out.push_str(&format!("\n{hidden} process(es) of other users\n"));
    }
    for e in &r.errors {
        out.push_str(&format!("warning: {e}\n"));
    }
    out
}

impl Report {
    /// Devices this report shows without holders take the holders `other` saw
    /// (the monitor's report: a non-admin's Docker lists only their own
    /// containers), and the users' totals are made again.
    pub fn merge_holders(&mut self, other: &Report) {
        for d in &mut self.devices {
            if !d.holders.is_empty() {
                continue;
            }
            if let Some(o) = other.devices.iter().find(|o| o.uuid == d.uuid) {
                d.holders.clone_from(&o.holders);
            }
        }
        self.holders_known |= other.holders_known;
        self.users = per_user(&self.devices);
    }
}
