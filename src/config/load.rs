//! Loading: read the YAML files, decode them into [`Config`] while collecting every
//! problem as a [`Diagnostic`], then run the cross-file checks in `validate`.

use super::diag::{Diagnostics, did_you_mean};
use super::model::{
    Aggregate, Config, ContainerLimits, Enforcement, Group, Member, Override, PressureConfig,
};
use super::yaml::{self, Kind, Node, Scalar};
use crate::units::{Limit, parse_cpu_quota, parse_docker_size, parse_systemd_size};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Keys ds01 reads in a per-container limits mapping (newest names first within
/// each alias family).
pub const LIMIT_KEYS: &[&str] = &[
    "max_cpus",
    "memory",
    "memory_swap",
    "shm_size",
    "pids_limit",
    "max_containers_per_user",
    "max_tasks",
    "max_runtime_h",
    "idle_timeout_h",
    "gpu_hold_after_stop_h",
    "container_hold_after_stop_h",
    "allow_full_gpu",
    "max_gpu_equivalents",
    "max_gpu_slots",
    "max_gpus_per_user",
    "max_mig_instances",
    "max_gpu_slots_per_container",
    "max_gpus_per_container",
    "max_mig_per_container",
    "priority",
];

/// The GPU-equivalents quota and its older names, newest first.
pub const GPU_EQ_ALIASES: &[&str] = &[
    "max_gpu_equivalents",
    "max_gpu_slots",
    "max_gpus_per_user",
    "max_mig_instances",
];
/// The per-container GPU cap and its older names, newest first.
pub const GPU_SLOT_ALIASES: &[&str] = &[
    "max_gpu_slots_per_container",
    "max_gpus_per_container",
    "max_mig_per_container",
];

const AGGREGATE_KEYS: &[&str] = &[
    "cpu_quota",
    "memory_max",
    "memory_high",
    "tasks_max",
    "gpu_limit",
];
const TOP_KEYS: &[&str] = &[
    "defaults",
    "default_group",
    "enforcement",
    "groups",
    "user_overrides",
    "container_security",
];
/// Top-level sections that real servers carry and ds01 keeps without interpreting.
pub const KEPT_SECTIONS: &[&str] = &[
    "gpu_allocation",
    "policies",
    "container_types",
    "monitoring",
    "bare_metal_access",
    "access_control",
];

/// The result of loading: the config when it could be built at all, and every
/// problem found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Option<Config>,
    pub diagnostics: Diagnostics,
}

/// Load `path` and the files beside it (`groups/*.members`, `user-overrides.yaml`).
pub fn load(path: &Path) -> Loaded {
    let mut diags = Diagnostics::default();
    let config = load_inner(path, &mut diags);
    if let Some(cfg) = &config {
        super::validate::validate(cfg, &mut diags);
    }
    diags.sort();
    Loaded {
        config,
        diagnostics: diags,
    }
}

fn read_yaml(path: &Path, diags: &mut Diagnostics) -> Option<Option<Node>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.error(path, None, "", format!("cannot read: {e}"));
            return None;
        }
    };
    match yaml::parse(&text) {
        Ok((root, dups)) => {
            for d in dups {
                diags.error(
                    path,
                    Some(d.line),
                    &d.key,
                    format!("duplicate key (first defined on line {})", d.first_line),
                );
            }
            Some(root)
        }
        Err(e) => {
            diags.error(
                path,
                Some(e.line),
                "",
                format!("invalid YAML: {}", e.message),
            );
            None
        }
    }
}

fn load_inner(path: &Path, diags: &mut Diagnostics) -> Option<Config> {
    let root = read_yaml(path, diags)?;
    let empty = Node {
        line: 1,
        kind: Kind::Map(Vec::new()),
    };
    let root = root.unwrap_or(empty);
    let Some(top) = root.as_map() else {
        diags.error(
            path,
            Some(root.line),
            "",
            format!("the config must be a mapping, found {}", root.describe()),
        );
        return None;
    };
    let mut d = Decoder {
        file: path,
        diags,
        lines: Vec::new(),
    };
    let mut cfg = Config {
        path: path.to_path_buf(),
        defaults: ContainerLimits::default(),
        default_group: "student".into(),
        enforcement: Enforcement::default(),
        groups: Vec::new(),
        overrides: BTreeMap::new(),
        sections: BTreeMap::new(),
        pressure: PressureConfig::default(),
        member_index: Default::default(),
        security: Default::default(),
        lifecycle: Default::default(),
        value_lines: Default::default(),
    };
    for (k, v) in top {
        let Some(key) = d.key_text(k, "") else {
            continue;
        };
        match key {
            "defaults" => {
                if let Some(m) = d.map_or_null(v, key) {
                    cfg.defaults = d.limits(m, key, &[]).0;
                }
            }
            "default_group" => {
                d.lines.push((key.to_string(), k.line));
                if let Some(s) = d.string(v, key) {
                    cfg.default_group = s;
                }
            }
            "enforcement" => {
                if let Some(m) = d.map_or_null(v, key) {
                    cfg.enforcement = d.enforcement(m);
                }
            }
            "groups" => {
                if let Some(m) = d.map_or_null(v, key) {
                    for (gk, gv) in m {
                        if let Some(g) = d.group(gk, gv) {
                            cfg.groups.push(g);
                        }
                    }
                }
            }
            "container_security" => {
                cfg.security = super::security::decode(path, d.diags, v);
            }
            "user_overrides" => {
                if let Some(m) = d.map_or_null(v, key) {
                    for (uk, uv) in m {
                        if let Some(o) = d.override_entry(uk, uv, "user_overrides") {
                            cfg.overrides.insert(o.user.clone(), o);
                        }
                    }
                }
            }
            other => {
                if !KEPT_SECTIONS.contains(&other) {
                    let mut known: Vec<&str> = TOP_KEYS.to_vec();
                    known.extend_from_slice(KEPT_SECTIONS);
                    d.unknown_key(k.line, "", other, &known);
                }
                if other == "monitoring"
                    && let Some(m) = v.as_map()
                    && let Some((_, pv)) = m.iter().find(|(mk, _)| mk.text() == Some("pressure"))
                    && let Some(pm) = d.map_or_null(pv, "monitoring.pressure")
                {
                    cfg.pressure = d.pressure(pm);
                }
                if other == "policies" {
                    super::lifecycle::decode_policies(path, d.diags, v, &mut cfg.lifecycle);
                }
                if other == "container_types" {
                    super::lifecycle::decode_types(path, d.diags, v, &mut cfg.lifecycle);
                }
                cfg.sections.insert(other.to_string(), v.to_json());
            }
        }
    }
    for (k, l) in std::mem::take(&mut d.lines) {
        cfg.value_lines.insert((path.to_path_buf(), k), l);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    load_members_files(dir, &mut cfg, diags);
    load_overrides_file(&dir.join("user-overrides.yaml"), &mut cfg, diags);
    cfg.index_members();
    let names: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
    super::security::check_groups(path, diags, &cfg.security, &names);
    Some(cfg)
}

/// `groups/<group>.members`: one user per line, `#` starts a comment.
fn load_members_files(dir: &Path, cfg: &mut Config, diags: &mut Diagnostics) {
    let gdir = dir.join("groups");
    for g in &mut cfg.groups {
        let file = gdir.join(format!("{}.members", g.name));
        match std::fs::read_to_string(&file) {
            Ok(text) => g.members.extend(parse_members(&text, &file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => diags.error(
                &file,
                None,
                "",
                format!(
                    "cannot read the member list of group {:?}: {e} (its members would silently fall back to the default group)",
                    g.name
                ),
            ),
        }
    }
    // Member files for groups the config does not define are probably a typo.
    let entries = match std::fs::read_dir(&gdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            diags.error(&gdir, None, "", format!("cannot list member files: {e}"));
            return;
        }
    };
    let mut orphans: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "members")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|stem| cfg.group(stem).is_none())
        })
        .collect();
    orphans.sort();
    for p in orphans {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let names: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
        let hint = did_you_mean(&stem, &names)
            .map(|s| format!(" (did you mean {s}.members?)"))
            .unwrap_or_default();
        diags.warning(
            &p,
            None,
            "",
            format!("no group {stem:?} in the config; this member list is ignored{hint}"),
        );
    }
}

pub fn parse_members(text: &str, file: &Path) -> Vec<Member> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let name = line.split('#').next().unwrap_or("").trim();
            (!name.is_empty()).then(|| Member {
                name: name.to_string(),
                file: file.to_path_buf(),
                line: i + 1,
                from_members_file: true,
            })
        })
        .collect()
}

/// `user-overrides.yaml`: a mapping of user → limits, optionally under a
/// `user_overrides:` key. Its entries win over the inline ones, key by key.
fn load_overrides_file(path: &Path, cfg: &mut Config, diags: &mut Diagnostics) {
    if !path.exists() {
        return;
    }
    let Some(root) = read_yaml(path, diags) else {
        return;
    };
    let Some(root) = root else {
        return;
    };
    let mut d = Decoder {
        file: path,
        diags,
        lines: Vec::new(),
    };
    let Some(mut map) = d.map_or_null(&root, "") else {
        return;
    };
    let mut prefix = "";
    if let [(k, v)] = map
        && k.text() == Some("user_overrides")
    {
        prefix = "user_overrides";
        match d.map_or_null(v, prefix) {
            Some(m) => map = m,
            None => return,
        }
    }
    for (uk, uv) in map {
        let Some(o) = d.override_entry(uk, uv, prefix) else {
            continue;
        };
        match cfg.overrides.get_mut(&o.user) {
            Some(existing) => {
                existing.limits = existing.limits.overlay(&o.limits);
                if o.aggregate.is_some() {
                    existing.aggregate = o.aggregate;
                }
                existing.file = o.file;
                existing.line = o.line;
            }
            None => {
                cfg.overrides.insert(o.user.clone(), o);
            }
        }
    }
    // Keyed as in the main file, whichever form this file uses.
    for (k, l) in d.lines {
        let k = if k.starts_with("user_overrides.") {
            k
        } else {
            format!("user_overrides.{k}")
        };
        cfg.value_lines.insert((path.to_path_buf(), k), l);
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

struct Decoder<'a> {
    file: &'a Path,
    diags: &'a mut Diagnostics,
    /// Line of each decoded value by key path, for checks made after decoding.
    lines: Vec<(String, usize)>,
}

impl Decoder<'_> {
    fn error(&mut self, line: usize, key: &str, msg: impl Into<String>) {
        self.diags.error(self.file, Some(line), key, msg);
    }

    fn warning(&mut self, line: usize, key: &str, msg: impl Into<String>) {
        self.diags.warning(self.file, Some(line), key, msg);
    }

    fn unknown_key(&mut self, line: usize, prefix: &str, key: &str, known: &[&str]) {
        let hint = did_you_mean(key, known)
            .map(|s| format!(" (did you mean {s:?}?)"))
            .unwrap_or_default();
        self.warning(
            line,
            &join(prefix, key),
            format!("unknown key, ignored{hint}"),
        );
    }

    fn key_text<'n>(&mut self, k: &'n Node, prefix: &str) -> Option<&'n str> {
        match &k.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => {
                self.error(k.line, prefix, "keys must be plain names");
                None
            }
        }
    }

    fn map_or_null<'n>(&mut self, v: &'n Node, path: &str) -> Option<&'n [(Node, Node)]> {
        if v.is_null() {
            return Some(&[]);
        }
        match v.as_map() {
            Some(m) => Some(m),
            None => {
                self.error(
                    v.line,
                    path,
                    format!("expected a mapping, found {}", v.describe()),
                );
                None
            }
        }
    }

    fn string(&mut self, v: &Node, path: &str) -> Option<String> {
        match v.scalar() {
            Some(Scalar::Str(s)) => Some(s.to_string()),
            Some(Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_)) => {
                v.text().map(str::to_string)
            }
            _ => {
                self.error(
                    v.line,
                    path,
                    format!("expected a name, found {}", v.describe()),
                );
                None
            }
        }
    }

    fn bool(&mut self, v: &Node, path: &str) -> Option<bool> {
        match v.scalar() {
            Some(Scalar::Bool(b)) => Some(b),
            _ => {
                self.error(
                    v.line,
                    path,
                    format!("expected true or false, found {}", v.describe()),
                );
                None
            }
        }
    }

    /// A non-negative number; `null` = unlimited when `nullable`.
    fn number(&mut self, v: &Node, path: &str) -> Option<Limit<f64>> {
        let n = match v.scalar() {
            Some(Scalar::Null) => return Some(Limit::Max),
            Some(Scalar::Int(i)) => i as f64,
            Some(Scalar::Float(f)) if f.is_finite() => f,
            _ => {
                self.error(
                    v.line,
                    path,
                    format!("expected a number, found {}", v.describe()),
                );
                return None;
            }
        };
        if n < 0.0 {
            self.error(v.line, path, format!("{} is negative", v.describe()));
            return None;
        }
        Some(Limit::Value(n))
    }

    /// A non-negative integer; `null` = unlimited. `infinity` accepted when
    /// `allow_infinity` (systemd's TasksMax).
    fn integer(&mut self, v: &Node, path: &str, allow_infinity: bool) -> Option<Limit<u64>> {
        match v.scalar() {
            Some(Scalar::Null) => Some(Limit::Max),
            Some(Scalar::Int(i)) if i >= 0 => Some(Limit::Value(i as u64)),
            Some(Scalar::Int(i)) => {
                self.error(v.line, path, format!("{i} is negative"));
                None
            }
            Some(Scalar::Str("infinity")) if allow_infinity => Some(Limit::Max),
            _ => {
                self.error(
                    v.line,
                    path,
                    format!("expected a whole number, found {}", v.describe()),
                );
                None
            }
        }
    }

    fn signed(&mut self, v: &Node, path: &str) -> Option<Limit<i64>> {
        match v.scalar() {
            Some(Scalar::Null) => Some(Limit::Max),
            Some(Scalar::Int(i)) => Some(Limit::Value(i)),
            _ => {
                self.error(
                    v.line,
                    path,
                    format!("expected a whole number, found {}", v.describe()),
                );
                None
            }
        }
    }

    /// A Docker size (`32g`) or a byte count; `null` = unlimited; `-1` = unlimited
    /// when `minus_one_unlimited` (Docker's `--memory-swap=-1`).
    fn docker_size(
        &mut self,
        v: &Node,
        path: &str,
        minus_one_unlimited: bool,
    ) -> Option<Limit<u64>> {
        match v.scalar() {
            Some(Scalar::Null) => Some(Limit::Max),
            Some(Scalar::Int(-1)) if minus_one_unlimited => Some(Limit::Max),
            Some(Scalar::Int(i)) if i >= 0 => Some(Limit::Value(i as u64)),
            Some(Scalar::Int(i)) => {
                self.error(v.line, path, format!("{i} is negative"));
                None
            }
            Some(Scalar::Str(s)) => match parse_docker_size(s) {
                Ok(b) => Some(Limit::Value(b)),
                Err(e) => {
                    self.error(v.line, path, e.to_string());
                    None
                }
            },
            _ => {
                self.error(
                    v.line,
                    path,
                    format!("expected a size such as 32g, found {}", v.describe()),
                );
                None
            }
        }
    }

    fn systemd_size(&mut self, v: &Node, path: &str) -> Option<Limit<u64>> {
        match v.scalar() {
            Some(Scalar::Null) => Some(Limit::Max),
            Some(Scalar::Int(i)) if i >= 0 => Some(Limit::Value(i as u64)),
            Some(Scalar::Int(i)) => {
                self.error(v.line, path, format!("{i} is negative"));
                None
            }
            Some(Scalar::Str(s)) => match parse_systemd_size(s) {
                Ok(l) => Some(l),
                Err(e) => {
                    self.error(v.line, path, e.to_string());
                    None
                }
            },
            _ => {
                self.error(
                    v.line,
                    path,
                    format!("expected a size such as \"96G\", found {}", v.describe()),
                );
                None
            }
        }
    }

    fn enforcement(&mut self, m: &[(Node, Node)]) -> Enforcement {
        let mut e = Enforcement::default();
        for (k, v) in m {
            let Some(key) = self.key_text(k, "enforcement") else {
                continue;
            };
            let path = join("enforcement", key);
            match key {
                "aggregate_limits" => {
                    if let Some(b) = self.bool(v, &path) {
                        e.aggregate_limits = b;
                    }
                }
                "cgroup_driver" => {
                    if let Some(s) = self.string(v, &path) {
                        if s != "systemd" {
                            self.error(
                                v.line,
                                &path,
                                format!(
                                    "{s:?}: ds01 places containers in systemd slices, which needs Docker's systemd cgroup driver (cgroup_driver: systemd)"
                                ),
                            );
                        }
                        e.cgroup_driver = s;
                    }
                }
                other => self.unknown_key(
                    k.line,
                    "enforcement",
                    other,
                    &["aggregate_limits", "cgroup_driver"],
                ),
            }
        }
        e
    }

    /// `monitoring.pressure` (the rest of `monitoring` is kept as given).
    fn pressure(&mut self, m: &[(Node, Node)]) -> PressureConfig {
        const KEYS: &[&str] = &[
            "enabled",
            "window_s",
            "memory_some_pct",
            "memory_full_pct",
            "cpu_some_pct",
            "cooldown_min",
        ];
        let prefix = "monitoring.pressure";
        let mut p = PressureConfig::default();
        for (k, v) in m {
            let Some(key) = self.key_text(k, prefix) else {
                continue;
            };
            let path = join(prefix, key);
            match key {
                "enabled" => {
                    if let Some(b) = self.bool(v, &path) {
                        p.enabled = b;
                    }
                }
                "window_s" => match self.number(v, &path) {
                    Some(Limit::Value(w)) if (0.5..=10.0).contains(&w) => {
                        p.window_us = (w * 1e6).round() as u64;
                        if p.window_us % 2_000_000 != 0 {
                            self.warning(
                                v.line,
                                &path,
                                "kernels from 6.5 accept a window that is not a multiple of 2 s only from a process with CAP_SYS_RESOURCE, which the shipped ds01-monitor unit does not grant",
                            );
                        }
                    }
                    Some(_) => self.error(
                        v.line,
                        &path,
                        format!(
                            "{}: the kernel accepts a window from 0.5 to 10 seconds",
                            v.describe()
                        ),
                    ),
                    None => {}
                },
                "memory_some_pct" | "memory_full_pct" | "cpu_some_pct" => {
                    let pct = match self.number(v, &path) {
                        Some(Limit::Max) => None,
                        Some(Limit::Value(x)) if x > 0.0 && x <= 100.0 => Some(x),
                        Some(Limit::Value(_)) => {
                            self.error(
                                v.line,
                                &path,
                                format!("{}: a share of the window above 0 and at most 100 (null = no trigger)", v.describe()),
                            );
                            continue;
                        }
                        None => continue,
                    };
                    match key {
                        "memory_some_pct" => p.memory_some_pct = pct,
                        "memory_full_pct" => p.memory_full_pct = pct,
                        _ => p.cpu_some_pct = pct,
                    }
                }
                "cooldown_min" => match self.number(v, &path) {
                    Some(Limit::Value(c)) => p.cooldown_s = (c * 60.0).round() as u64,
                    Some(Limit::Max) => self.error(v.line, &path, "expected minutes, found null"),
                    None => {}
                },
                other => self.unknown_key(k.line, prefix, other, KEYS),
            }
        }
        p
    }

    /// Decode the per-container keys of a mapping. Keys in `extra` are left to the
    /// caller and returned; anything else unknown is warned about.
    fn limits<'n>(
        &mut self,
        m: &'n [(Node, Node)],
        prefix: &str,
        extra: &[&str],
    ) -> (ContainerLimits, Vec<(&'n Node, &'n Node)>) {
        let mut l = ContainerLimits::default();
        let mut rest = Vec::new();
        // (rank in alias list, key, line) of the alias that set each GPU field.
        let mut gpu_eq: Option<(usize, String, usize)> = None;
        let mut gpu_slot: Option<(usize, String, usize)> = None;
        for (k, v) in m {
            let Some(key) = self.key_text(k, prefix) else {
                continue;
            };
            let path = join(prefix, key);
            self.lines.push((path.clone(), v.line));
            match key {
                "max_cpus" => {
                    l.max_cpus = self.number(v, &path);
                    if l.max_cpus == Some(Limit::Value(0.0)) {
                        self.error(
                            v.line,
                            &path,
                            "0 CPUs would make every container unusable; use null for no limit",
                        );
                        l.max_cpus = None;
                    }
                }
                "memory" => l.memory = self.docker_size(v, &path, false),
                "memory_swap" => l.memory_swap = self.docker_size(v, &path, true),
                "shm_size" => l.shm_size = self.docker_size(v, &path, false),
                "pids_limit" => l.pids_limit = self.integer(v, &path, false),
                "max_containers_per_user" => {
                    l.max_containers_per_user = self.integer(v, &path, false)
                }
                "max_tasks" => l.max_tasks = self.integer(v, &path, false),
                "max_runtime_h" => l.max_runtime_h = self.number(v, &path),
                "idle_timeout_h" => l.idle_timeout_h = self.number(v, &path),
                "gpu_hold_after_stop_h" => l.gpu_hold_after_stop_h = self.number(v, &path),
                "container_hold_after_stop_h" => {
                    l.container_hold_after_stop_h = self.number(v, &path)
                }
                "allow_full_gpu" => l.allow_full_gpu = self.bool(v, &path),
                "priority" => l.priority = self.signed(v, &path),
                k2 if GPU_EQ_ALIASES.contains(&k2) => {
                    let rank = GPU_EQ_ALIASES.iter().position(|a| *a == k2).unwrap_or(0);
                    let val = self.number(v, &path);
                    if self.alias_wins(&mut gpu_eq, rank, k2, k.line, prefix) {
                        l.max_gpu_equivalents = val;
                    }
                }
                k2 if GPU_SLOT_ALIASES.contains(&k2) => {
                    let rank = GPU_SLOT_ALIASES.iter().position(|a| *a == k2).unwrap_or(0);
                    let val = self.integer(v, &path, false);
                    if self.alias_wins(&mut gpu_slot, rank, k2, k.line, prefix) {
                        l.max_gpu_slots_per_container = val;
                    }
                }
                k2 if extra.contains(&k2) => rest.push((k, v)),
                other => {
                    let mut known = LIMIT_KEYS.to_vec();
                    known.extend_from_slice(extra);
                    self.unknown_key(k.line, prefix, other, &known);
                }
            }
        }
        (l, rest)
    }

    /// Alias precedence: the newest name wins; the shadowed one gets a warning.
    fn alias_wins(
        &mut self,
        slot: &mut Option<(usize, String, usize)>,
        rank: usize,
        key: &str,
        line: usize,
        prefix: &str,
    ) -> bool {
        match slot.clone() {
            None => {
                *slot = Some((rank, key.to_string(), line));
                true
            }
            Some((old_rank, old_key, old_line)) => {
                let (winner, loser, loser_line) = if rank < old_rank {
                    (key.to_string(), old_key, old_line)
                } else {
                    (old_key, key.to_string(), line)
                };
                self.warning(
                    loser_line,
                    &join(prefix, &loser),
                    format!("ignored: {winner} is set in the same section and is the newer name"),
                );
                if rank < old_rank {
                    *slot = Some((rank, key.to_string(), line));
                    true
                } else {
                    false
                }
            }
        }
    }

    fn aggregate(&mut self, v: &Node, path: &str) -> Option<Aggregate> {
        let m = self.map_or_null(v, path)?;
        let mut a = Aggregate {
            line: v.line,
            ..Aggregate::default()
        };
        for (k, v) in m {
            let Some(key) = self.key_text(k, path) else {
                continue;
            };
            let p = join(path, key);
            self.lines.push((p.clone(), v.line));
            match key {
                "cpu_quota" => {
                    a.cpu_quota = match v.scalar() {
                        Some(Scalar::Null) => Some(Limit::Max),
                        Some(Scalar::Str(s)) => match parse_cpu_quota(s) {
                            Ok(q) => Some(Limit::Value(q)),
                            Err(e) => {
                                self.error(v.line, &p, e.to_string());
                                None
                            }
                        },
                        _ => {
                            self.error(
                                v.line,
                                &p,
                                format!(
                                    "{} is not a CPU quota: write a percentage such as \"9600%\" (100% = 1 CPU)",
                                    v.describe()
                                ),
                            );
                            None
                        }
                    }
                }
                "memory_max" => a.memory_max = self.systemd_size(v, &p),
                "memory_high" => a.memory_high = self.systemd_size(v, &p),
                "tasks_max" => a.tasks_max = self.integer(v, &p, true),
                "gpu_limit" => a.gpu_limit = self.number(v, &p),
                other => self.unknown_key(k.line, path, other, AGGREGATE_KEYS),
            }
        }
        Some(a)
    }

    fn group(&mut self, k: &Node, v: &Node) -> Option<Group> {
        let name = self.key_text(k, "groups")?.to_string();
        let path = join("groups", &name);
        let m = self.map_or_null(v, &path)?;
        let (limits, rest) = self.limits(m, &path, &["members", "aggregate", "policies"]);
        let mut g = Group {
            name,
            line: k.line,
            limits,
            aggregate: None,
            policies: None,
            members: Vec::new(),
        };
        for (rk, rv) in rest {
            match rk.text() {
                Some("aggregate") => g.aggregate = self.aggregate(rv, &join(&path, "aggregate")),
                Some("policies") => g.policies = Some(rv.to_json()),
                Some("members") => {
                    let mpath = join(&path, "members");
                    match &rv.kind {
                        Kind::Seq(items) => {
                            for it in items {
                                match (it.scalar(), it.text()) {
                                    (Some(Scalar::Null), _) | (_, None) => self.error(
                                        it.line,
                                        &mpath,
                                        format!("expected a user name, found {}", it.describe()),
                                    ),
                                    (_, Some(t)) => g.members.push(Member {
                                        name: t.trim().to_string(),
                                        file: self.file.to_path_buf(),
                                        line: it.line,
                                        from_members_file: false,
                                    }),
                                }
                            }
                        }
                        _ if rv.is_null() => {}
                        _ => self.error(
                            rv.line,
                            &mpath,
                            format!("expected a list of user names, found {}", rv.describe()),
                        ),
                    }
                }
                _ => {}
            }
        }
        Some(g)
    }

    fn override_entry(&mut self, k: &Node, v: &Node, prefix: &str) -> Option<Override> {
        let user = self.key_text(k, prefix)?.to_string();
        let path = join(prefix, &user);
        let m = self.map_or_null(v, &path)?;
        let (limits, rest) = self.limits(m, &path, &["aggregate"]);
        let mut o = Override {
            user,
            file: self.file.to_path_buf(),
            line: k.line,
            limits,
            aggregate: None,
        };
        for (_, rv) in rest {
            o.aggregate = self.aggregate(rv, &join(&path, "aggregate"));
        }
        Some(o)
    }
}
