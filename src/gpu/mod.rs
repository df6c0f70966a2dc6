//! GPU accounting: what the GPUs are doing and who it is for (docs/gpu.md).
//!
//! One small interface, [`Source`], gives a [`Snapshot`] of the host's GPUs: per GPU
//! (and MIG instance) its memory and utilisation, and every process using one. Two
//! implementations: NVML through `nvml-wrapper` ([`nvml`], the library is loaded at
//! run time, so hosts without NVIDIA drivers get "no GPUs", not a failed start) and
//! a recorded snapshot ([`Replay`], `DS01_GPU_SNAPSHOT=file`) for tests and demos.
//! [`attribute`] maps processes to users and containers through `/proc`, and
//! [`report`] joins it all with the containers' GPU requests into what every view
//! shows (`ds01 gpu`, stats lines, `/metrics`, the greeting, `ds01 top`).

pub mod attribute;
pub mod nvml;
pub mod report;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The snapshot format's version (`ds01 gpu --snapshot`).
pub const SNAPSHOT_VERSION: u32 = 1;

/// What the GPUs reported at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(default = "snapshot_version")]
    pub version: u32,
    /// RFC 3339; when the sample was taken.
    #[serde(default)]
    pub taken_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvml_version: Option<String>,
    #[serde(default)]
    pub gpus: Vec<Device>,
    #[serde(default)]
    pub processes: Vec<Process>,
}

fn snapshot_version() -> u32 {
    SNAPSHOT_VERSION
}

/// One physical GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub index: u32,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    /// GPU (SM) utilisation in % over the driver's last sample period; `None`
    /// where the driver does not give it (MIG mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_pct: Option<u32>,
    #[serde(default)]
    pub mig_enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migs: Vec<MigDevice>,
    /// Why this GPU could not be read (fell off the bus, …): the rest of the
    /// host is still reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One MIG instance of a GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigDevice {
    /// The MIG device index on its GPU (Docker's `<gpu>:<index>`).
    pub index: u32,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
}

/// One process using a GPU or MIG instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    /// The UUID of the GPU or MIG instance it runs on.
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_memory_bytes: Option<u64>,
    /// SM utilisation of this process in % (the highest of the driver's samples
    /// since the last look), where the driver gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_util_pct: Option<u32>,
    /// What `/proc` said about the process when a snapshot was recorded, so a
    /// snapshot replays on another machine. Absent: `/proc` is read at replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Snapshot {
    /// Every device a container can be given: MIG instances of MIG-enabled GPUs,
    /// the other GPUs whole. `(label, uuid)`, label `0` or `0:1`.
    pub fn devices(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for g in &self.gpus {
            if g.mig_enabled && !g.migs.is_empty() {
                for m in &g.migs {
                    out.push((format!("{}:{}", g.index, m.index), m.uuid.as_str()));
                }
            } else {
                out.push((g.index.to_string(), g.uuid.as_str()));
            }
        }
        out
    }

    /// The UUIDs a Docker device id names: an index (`0`; a MIG-enabled GPU's
    /// index names its instances), a MIG index (`0:1`), a GPU or MIG UUID, or
    /// `all`. Unknown ids name nothing.
    pub fn resolve(&self, id: &str) -> Vec<String> {
        if id == "all" {
            return self
                .devices()
                .into_iter()
                .map(|(_, u)| u.to_string())
                .collect();
        }
        if let Some((g, m)) = id.split_once(':') {
            return self
                .gpus
                .iter()
                .filter(|x| x.index.to_string() == g)
                .flat_map(|x| x.migs.iter().filter(|y| y.index.to_string() == m))
                .map(|y| y.uuid.clone())
                .collect();
        }
        for g in &self.gpus {
            if g.index.to_string() == id || g.uuid == id {
                if g.mig_enabled && !g.migs.is_empty() {
                    return g.migs.iter().map(|m| m.uuid.clone()).collect();
                }
                return vec![g.uuid.clone()];
            }
            if let Some(m) = g.migs.iter().find(|m| m.uuid == id) {
                return vec![m.uuid.clone()];
            }
        }
        Vec::new()
    }

    /// A MIG instance's utilisation (%): the sum of its processes' SM use, where
    /// the driver reports any (it gives none for the instance itself).
    pub fn mig_utilisation(&self, uuid: &str) -> Option<f64> {
        let known: Vec<u32> = self
            .processes
            .iter()
            .filter(|p| p.device == uuid)
            .filter_map(|p| p.sm_util_pct)
            .collect();
        (!known.is_empty()).then(|| f64::from(known.iter().sum::<u32>()).min(100.0))
    }

    /// The `nvidia-smi -L`-shaped inventory (GPU-equivalents for quotas).
    pub fn inventory(&self) -> crate::docker::gpu::Inventory {
        crate::docker::gpu::Inventory {
            gpus: self
                .gpus
                .iter()
                .map(|g| crate::docker::gpu::Gpu {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    migs: g
                        .migs
                        .iter()
                        .map(|m| crate::docker::gpu::Mig {
                            index: m.index,
                            uuid: m.uuid.clone(),
                            slices: mig_slices(&m.name),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Compute slices of a MIG profile name (`MIG 3g.20gb`, `3g.20gb` → 3; 1 when
/// the name says nothing).
pub fn mig_slices(name: &str) -> u32 {
    name.split_whitespace()
        .find_map(|w| w.split_once("g.").and_then(|(n, _)| n.parse().ok()))
        .unwrap_or(1)
}

/// A source of snapshots, opened once per process and sampled as often as the
/// caller likes.
pub trait Source: Send {
    fn sample(&mut self) -> Result<Snapshot, String>;
    /// What it is, for messages: `NVML 12.550.54 (driver 550.54.15)`, `replay of …`.
    fn describe(&self) -> String;
}

/// The outcome of opening the host's GPU source.
pub enum Opened {
    Source(Box<dyn Source>),
    /// No GPUs here, and why (no NVIDIA library, driver not loaded): not an error.
    NoGpus(String),
    /// There is a driver but it cannot be used (no permission, a broken install).
    Failed(String),
}

impl Opened {
    /// The source, or `None` with the reason (either kind).
    pub fn into_result(self) -> Result<Box<dyn Source>, String> {
        match self {
            Opened::Source(s) => Ok(s),
            Opened::NoGpus(why) | Opened::Failed(why) => Err(why),
        }
    }
}

/// The environment variable that replays a snapshot instead of asking NVML.
pub const SNAPSHOT_ENV: &str = "DS01_GPU_SNAPSHOT";

/// Open the host's GPU source: a replay when `DS01_GPU_SNAPSHOT` names a file,
/// else NVML.
pub fn open() -> Opened {
    match std::env::var_os(SNAPSHOT_ENV) {
        Some(p) if !p.is_empty() => match Replay::open(PathBuf::from(p)) {
            Ok(r) => Opened::Source(Box::new(r)),
            Err(e) => Opened::Failed(e),
        },
        _ => nvml::open(),
    }
}

/// A recorded snapshot, read again at every sample (a test may replace it while a
/// monitor runs), its `taken_at` set to now.
pub struct Replay {
    pub path: PathBuf,
}

impl Replay {
    pub fn open(path: PathBuf) -> Result<Replay, String> {
        read_snapshot(&path)?;
        Ok(Replay { path })
    }
}

/// Read and check a snapshot file.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the GPU snapshot {}: {e}", path.display()))?;
    parse_snapshot(&text).map_err(|e| format!("GPU snapshot {}: {e}", path.display()))
}

/// Parse a snapshot's JSON text.
pub fn parse_snapshot(text: &str) -> Result<Snapshot, String> {
    let s: Snapshot = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if s.version > SNAPSHOT_VERSION {
        return Err(format!(
            "format version {} is newer than this ds01 reads ({SNAPSHOT_VERSION})",
            s.version
        ));
    }
    Ok(s)
}

impl Source for Replay {
    fn sample(&mut self) -> Result<Snapshot, String> {
        let mut s = read_snapshot(&self.path)?;
        s.taken_at = jiff::Timestamp::now().to_string();
        Ok(s)
    }

    fn describe(&self) -> String {
        format!("replay of {}", self.path.display())
    }
}

/// Record what `/proc` says about each process into the snapshot, so it replays
/// elsewhere (`ds01 gpu --snapshot`). A process that is gone keeps nothing.
pub fn record_proc(s: &mut Snapshot, proc_root: &Path) {
    for p in &mut s.processes {
        let facts = attribute::proc_facts(proc_root, p.pid);
        if let Some(f) = facts {
            p.cgroup = Some(f.cgroup);
            p.uid = f.uid;
            p.user = f
                .uid
                .and_then(|u| crate::docker::identity::user_name(u).map(|(n, _)| n));
        }
    }
}

/// `bare_metal_access.exempt_users`: who may use GPUs outside containers.
pub fn exempt_users(cfg: Option<&crate::config::Config>) -> Vec<String> {
    cfg.and_then(|c| c.sections.get("bare_metal_access"))
        .and_then(|b| b.get("exempt_users"))
        .and_then(|l| l.as_array())
        .map(|l| {
            l.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything one report needs, opened once and kept: the GPU source, the Docker
/// daemon (containers and their GPU requests) and the idle history.
pub struct Sampler {
    source: Result<Box<dyn Source>, String>,
    /// Whether the reason in `source` is "no GPUs here" rather than a failure.
    pub no_gpus: bool,
    docker: Option<crate::lifecycle::source::EngineDocker>,
    pub proc_root: PathBuf,
    pub idle: report::IdleState,
}

impl Sampler {
    /// `sockets`: where to ask Docker (empty: never — holders unknown).
    pub fn open(sockets: Vec<PathBuf>, proc_root: PathBuf) -> Sampler {
        let (source, no_gpus) = match open() {
            Opened::Source(s) => (Ok(s), false),
            Opened::NoGpus(why) => (Err(why), true),
            Opened::Failed(why) => (Err(why), false),
        };
        let docker = (!sockets.is_empty()).then(|| {
            crate::lifecycle::source::EngineDocker::new(
                sockets,
                crate::docker::gpu::Inventory::default(),
                proc_root.clone(),
            )
        });
        Sampler {
            source,
            no_gpus,
            docker,
            proc_root,
            idle: report::IdleState::default(),
        }
    }

    /// Why there is no source (`None`: there is one).
    pub fn unavailable(&self) -> Option<&str> {
        self.source.as_ref().err().map(String::as_str)
    }

    pub fn describe(&self) -> String {
        match &self.source {
            Ok(s) => s.describe(),
            Err(why) => why.clone(),
        }
    }

    /// The raw sample.
    pub fn snapshot(&mut self) -> Result<Snapshot, String> {
        match &mut self.source {
            Ok(s) => s.sample(),
            Err(why) => Err(why.clone()),
        }
    }

    /// One sample, attributed; the idle history moves on.
    pub fn report(
        &mut self,
        cfg: Option<&crate::config::Config>,
        now: jiff::Timestamp,
    ) -> Result<report::Report, String> {
        use crate::lifecycle::source::Docker;
        let snap = self.snapshot()?;
        let source = self.describe();
        let containers = self.docker.as_mut().and_then(|d| d.containers().ok());
        let running = containers.as_deref().map(report::ContainerInfo::running);
        let exempt = exempt_users(cfg);
        let busy_pct = cfg.map_or(5.0, |c| c.lifecycle.gpu_idle_pct);
        let r = report::build(
            &snap,
            &source,
            &report::Inputs {
                containers: running.as_deref(),
                proc_root: &self.proc_root,
                exempt_users: &exempt,
                busy_pct,
                idle: &self.idle,
                now,
            },
        );
        self.idle = r.idle_state.clone();
        Ok(r)
    }
}

impl Sampler {
    /// One report, kept as `gpu.json` in `state_dir` for the greeting, `ds01 gpu`
    /// and the next process (a restart keeps the idle history). A report that
    /// cannot be saved is still returned; the error is the second value.
    pub fn report_and_save(
        &mut self,
        cfg: Option<&crate::config::Config>,
        state_dir: &Path,
        now: jiff::Timestamp,
    ) -> Result<(report::Report, Option<String>), String> {
        if self.idle.busy_at.is_empty()
            && let Some(last) = report::load(state_dir)
        {
            self.idle = last.idle_state;
        }
        let r = self.report(cfg, now)?;
        let saved = std::fs::create_dir_all(state_dir)
            .and_then(|()| report::save(state_dir, &r))
            .err()
            .map(|e| {
                format!(
                    "cannot write {}: {e}",
                    report::report_path(state_dir).display()
                )
            });
        Ok((r, saved))
    }
}

/// `(GPU 0 | MIG 0:1, uuid)` of every GPU and MIG instance of a layout given as
/// `(index, uuid, [(mig index, mig uuid)])`; devices without a UUID are left out.
fn device_names<'a>(
    gpus: impl Iterator<Item = (u32, &'a str, Vec<(u32, &'a str)>)>,
) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    for (i, uuid, migs) in gpus {
        out.push((format!("GPU {i}"), uuid));
        for (j, m) in migs {
            out.push((format!("MIG {i}:{j}"), m));
        }
    }
    out.retain(|(_, u)| !u.is_empty());
    out
}

/// Where NVML's devices and `nvidia-smi -L` (what the wrapper weighs GPU
/// requests with) disagree: GPUs or MIG instances one lists and the other does
/// not. Empty = consistent.
pub fn layout_diff(s: &Snapshot, inv: &crate::docker::gpu::Inventory) -> Vec<String> {
    let mut out = Vec::new();
    let nvml = device_names(s.gpus.iter().map(|g| {
        let migs = g.migs.iter().map(|m| (m.index, m.uuid.as_str())).collect();
        (g.index, g.uuid.as_str(), migs)
    }));
    let smi = device_names(inv.gpus.iter().map(|g| {
        let migs = g.migs.iter().map(|m| (m.index, m.uuid.as_str())).collect();
        (g.index, g.uuid.as_str(), migs)
    }));
    for (what, uuid) in &nvml {
        if !smi.iter().any(|(_, u)| u == uuid) {
            out.push(format!("{what} ({uuid}) is missing from nvidia-smi -L"));
        }
    }
    for (what, uuid) in &smi {
        if !nvml.iter().any(|(_, u)| u == uuid) {
            out.push(format!(
                "nvidia-smi -L lists {what} ({uuid}), NVML does not"
            ));
        }
    }
    out
}

/// Utilisation (%) by every name Docker may give a device: GPU index and UUID,
/// MIG `<gpu>:<index>` and MIG UUID. A MIG instance's is the sum of its
/// processes' SM use where the driver reports it, else absent (unknown). A GPU in
/// MIG mode has no entry of its own.
pub fn utilisation_map(s: &Snapshot) -> std::collections::HashMap<String, f64> {
    let mut m = std::collections::HashMap::new();
    for g in &s.gpus {
        if g.error.is_some() {
            continue;
        }
        if !g.mig_enabled
            && let Some(u) = g.utilization_pct
        {
            m.insert(g.index.to_string(), f64::from(u));
            m.insert(g.uuid.clone(), f64::from(u));
        }
        for mig in &g.migs {
            if let Some(u) = s.mig_utilisation(&mig.uuid) {
                m.insert(format!("{}:{}", g.index, mig.index), u);
                m.insert(mig.uuid.clone(), u);
            }
        }
    }
    m
}
