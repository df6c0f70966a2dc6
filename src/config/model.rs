//! The typed config: what `resource-limits.yaml`, `groups/*.members` and
//! `user-overrides.yaml` say, after decoding. `None` = the key is absent ("not
//! configured"); `Some(Limit::Max)` = the key is `null` ("unlimited").

use crate::units::{CpuQuota, Limit, format_docker_size, format_number, format_systemd_size};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Per-container limits and lifecycle settings (in `defaults`, a group or an override).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerLimits {
    pub max_cpus: Option<Limit<f64>>,
    pub memory: Option<Limit<u64>>,
    pub memory_swap: Option<Limit<u64>>,
    pub shm_size: Option<Limit<u64>>,
    pub pids_limit: Option<Limit<u64>>,
    pub max_containers_per_user: Option<Limit<u64>>,
    pub max_tasks: Option<Limit<u64>>,
    pub max_runtime_h: Option<Limit<f64>>,
    pub idle_timeout_h: Option<Limit<f64>>,
    pub gpu_hold_after_stop_h: Option<Limit<f64>>,
    pub container_hold_after_stop_h: Option<Limit<f64>>,
    pub allow_full_gpu: Option<bool>,
    pub max_gpu_equivalents: Option<Limit<f64>>,
    pub max_gpu_slots_per_container: Option<Limit<u64>>,
    /// Legacy scheduling priority; read and kept, not used.
    pub priority: Option<Limit<i64>>,
}

macro_rules! overlay_fields {
    ($base:expr, $top:expr, $($f:ident),*) => {
        ContainerLimits { $($f: $top.$f.or($base.$f),)* }
    };
}

impl ContainerLimits {
    /// `self` with every key that `top` configures replaced by `top`'s value.
    pub fn overlay(&self, top: &ContainerLimits) -> ContainerLimits {
        overlay_fields!(
            self,
            top,
            max_cpus,
            memory,
            memory_swap,
            shm_size,
            pids_limit,
            max_containers_per_user,
            max_tasks,
            max_runtime_h,
            idle_timeout_h,
            gpu_hold_after_stop_h,
            container_hold_after_stop_h,
            allow_full_gpu,
            max_gpu_equivalents,
            max_gpu_slots_per_container,
            priority
        )
    }

    /// The per-container defaults as `docker run` flags (name without `--`, value):
    /// `cpus`, `memory`, `memory-swap`, `shm-size`, `pids-limit`. Unset or unlimited
    /// limits are left out, except an unlimited `memory_swap`, which is `-1`.
    pub fn docker_defaults(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(Limit::Value(c)) = self.max_cpus {
            out.push(("cpus", format_number(c)));
        }
        if let Some(Limit::Value(m)) = self.memory {
            out.push(("memory", format_docker_size(m)));
        }
        match self.memory_swap {
            Some(Limit::Value(s)) => out.push(("memory-swap", format_docker_size(s))),
            Some(Limit::Max) => out.push(("memory-swap", "-1".to_string())),
            None => {}
        }
        if let Some(Limit::Value(s)) = self.shm_size {
            out.push(("shm-size", format_docker_size(s)));
        }
        if let Some(Limit::Value(p)) = self.pids_limit {
            out.push(("pids-limit", p.to_string()));
        }
        out
    }

    /// JSON with the config's own key names: sizes as Docker sizes, `null` =
    /// unlimited; keys that are not configured are left out.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut num = |k: &str, v: Option<Limit<f64>>| {
            if let Some(v) = v {
                m.insert(k.into(), v.value().map_or(Value::Null, |x| json!(x)));
            }
        };
        num("max_cpus", self.max_cpus);
        num("max_runtime_h", self.max_runtime_h);
        num("idle_timeout_h", self.idle_timeout_h);
        num("gpu_hold_after_stop_h", self.gpu_hold_after_stop_h);
        num(
            "container_hold_after_stop_h",
            self.container_hold_after_stop_h,
        );
        num("max_gpu_equivalents", self.max_gpu_equivalents);
        let mut size = |k: &str, v: Option<Limit<u64>>| {
            if let Some(v) = v {
                m.insert(
                    k.into(),
                    v.value()
                        .map_or(Value::Null, |x| Value::String(format_docker_size(x))),
                );
            }
        };
        size("memory", self.memory);
        size("memory_swap", self.memory_swap);
        size("shm_size", self.shm_size);
        let mut int = |k: &str, v: Option<Limit<u64>>| {
            if let Some(v) = v {
                m.insert(k.into(), v.value().map_or(Value::Null, |x| json!(x)));
            }
        };
        int("pids_limit", self.pids_limit);
        int("max_containers_per_user", self.max_containers_per_user);
        int("max_tasks", self.max_tasks);
        int(
            "max_gpu_slots_per_container",
            self.max_gpu_slots_per_container,
        );
        if let Some(b) = self.allow_full_gpu {
            m.insert("allow_full_gpu".into(), Value::Bool(b));
        }
        if let Some(p) = self.priority {
            m.insert(
                "priority".into(),
                p.value().map_or(Value::Null, |x| json!(x)),
            );
        }
        Value::Object(m)
    }
}

/// Per-user totals across all of a user's containers (a group's or override's
/// `aggregate:` section), enforced by the user's systemd slice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub cpu_quota: Option<Limit<CpuQuota>>,
    pub memory_max: Option<Limit<u64>>,
    pub memory_high: Option<Limit<u64>>,
    pub tasks_max: Option<Limit<u64>>,
    pub gpu_limit: Option<Limit<f64>>,
    /// Line of the `aggregate:` key, for diagnostics.
    pub line: usize,
}

impl Aggregate {
    /// The `--aggregate` JSON: every field present, `null` = unlimited or not set.
    pub fn to_json(&self) -> Value {
        json!({
            "cpu_quota": self.cpu_quota.and_then(Limit::value).map(|q| q.to_string()),
            "memory_max": self.memory_max.and_then(Limit::value).map(|b| format_systemd_size(Limit::Value(b))),
            "memory_high": self.memory_high.and_then(Limit::value).map(|b| format_systemd_size(Limit::Value(b))),
            "tasks_max": self.tasks_max.and_then(Limit::value),
            "gpu_limit": self.gpu_limit.and_then(Limit::value),
        })
    }
}

/// Where a member name came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    /// `true` for `groups/<group>.members`, `false` for an inline `members:` list.
    pub from_members_file: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub line: usize,
    pub limits: ContainerLimits,
    pub aggregate: Option<Aggregate>,
    /// The group's `policies:` section, kept as given.
    pub policies: Option<Value>,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub user: String,
    pub file: PathBuf,
    pub line: usize,
    pub limits: ContainerLimits,
    pub aggregate: Option<Aggregate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Enforcement {
    pub aggregate_limits: bool,
    pub cgroup_driver: String,
}

impl Default for Enforcement {
    fn default() -> Self {
        Enforcement {
            aggregate_limits: true,
            cgroup_driver: "systemd".into(),
        }
    }
}

/// `monitoring.pressure`: when `ds01 monitor` logs a `resource.pressure` event.
/// Each threshold is the share of `window` that tasks of a user's slice spent
/// stalled (PSI `some`: at least one task; `full`: all of them at once); `None`
/// arms no trigger for that line.
#[derive(Debug, Clone, PartialEq)]
pub struct PressureConfig {
    pub enabled: bool,
    /// The PSI trigger window in µs (the kernel accepts 0.5–10 s).
    pub window_us: u64,
    pub memory_some_pct: Option<f64>,
    pub memory_full_pct: Option<f64>,
    pub cpu_some_pct: Option<f64>,
    /// At most one event per user and resource in this many seconds.
    pub cooldown_s: u64,
}

impl Default for PressureConfig {
    fn default() -> Self {
        PressureConfig {
            enabled: true,
            window_us: 2_000_000,
            memory_some_pct: Some(10.0),
            memory_full_pct: Some(5.0),
            cpu_some_pct: Some(50.0),
            cooldown_s: 15 * 60,
        }
    }
}

impl PressureConfig {
    /// The triggers to arm on each user slice: (resource, "some"/"full", stall µs).
    pub fn triggers(&self) -> Vec<(&'static str, &'static str, u64)> {
        if !self.enabled {
            return Vec::new();
        }
        let stall = |pct: f64| ((self.window_us as f64 * pct / 100.0).round() as u64).max(1);
        [
            ("memory", "some", self.memory_some_pct),
            ("memory", "full", self.memory_full_pct),
            ("cpu", "some", self.cpu_some_pct),
        ]
        .into_iter()
        .filter_map(|(r, k, p)| p.map(|p| (r, k, stall(p))))
        .collect()
    }
}

/// The whole configuration, from all its files.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub defaults: ContainerLimits,
    pub default_group: String,
    pub enforcement: Enforcement,
    /// In the order the file lists them.
    pub groups: Vec<Group>,
    /// Keyed by the name as written in the config.
    pub overrides: BTreeMap<String, Override>,
    /// `monitoring.pressure`: the PSI triggers `ds01 monitor` arms.
    pub pressure: PressureConfig,
    /// Sections ds01 does not interpret (yet), kept as given: `gpu_allocation`,
    /// `policies`, `container_types`, `monitoring`, `bare_metal_access`,
    /// `access_control`, and any unknown top-level key.
    pub sections: BTreeMap<String, Value>,
    /// Where each member is, by name and by sanitized name (built by
    /// [`Config::index_members`] once the groups are final): a lookup is O(1)
    /// instead of a scan of every member list, which the proxy does per request.
    pub(crate) member_index: MemberIndex,
    /// `container_security`: what non-admin containers may ask of the host.
    pub security: super::security::ContainerSecurity,
    /// `policies` and `container_types`: idle and runtime limits (`ds01 lifecycle`).
    pub lifecycle: super::lifecycle::LifecyclePolicy,
    /// The line of each decoded value, by (file, key path such as
    /// `groups.student.aggregate.memory_high`): checks made after decoding point at
    /// the offending value, not its parent mapping.
    pub value_lines: std::collections::HashMap<(PathBuf, String), usize>,
}

/// (group index, member index) of the first member with a given name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MemberIndex {
    pub exact: std::collections::HashMap<String, (usize, usize)>,
    pub sanitized: std::collections::HashMap<String, (usize, usize)>,
}

impl Config {
    /// Rebuild the member index; first listed wins, as in a scan.
    pub(crate) fn index_members(&mut self) {
        let mut ix = MemberIndex::default();
        for (gi, g) in self.groups.iter().enumerate() {
            for (mi, m) in g.members.iter().enumerate() {
                ix.exact.entry(m.name.clone()).or_insert((gi, mi));
                let s = crate::naming::sanitize_user(&m.name);
                if !s.is_empty() {
                    ix.sanitized.entry(s).or_insert((gi, mi));
                }
            }
        }
        self.member_index = ix;
    }

    /// The line of the value at `key` in `file`, if it was decoded from there.
    pub fn line_of(&self, file: &std::path::Path, key: &str) -> Option<usize> {
        self.value_lines
            .get(&(file.to_path_buf(), key.to_string()))
            .copied()
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// `monitoring.infrastructure_containers`: name prefixes of containers that
    /// lifecycle enforcement never touches.
    pub fn infrastructure_containers(&self) -> Vec<String> {
        self.kept_strings("monitoring", "infrastructure_containers")
    }

    /// A list of strings in a section kept as given (`section.key`).
    fn kept_strings(&self, section: &str, key: &str) -> Vec<String> {
        self.sections
            .get(section)
            .and_then(|a| a.get(key))
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// User names listed in `access_control.admin_users`.
    pub fn admin_users(&self) -> Vec<String> {
        self.kept_strings("access_control", "admin_users")
    }
}

/// `1.5` → `"1.5"`, for human output of float limits.
pub fn limit_text_f64(v: Option<Limit<f64>>) -> String {
    match v {
        None => "not set".into(),
        Some(Limit::Max) => "unlimited".into(),
        Some(Limit::Value(x)) => format_number(x),
    }
}
