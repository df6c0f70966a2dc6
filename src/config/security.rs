//! `container_security`: what a non-admin's container may ask of the host (issue
//! #15). Decoded strictly — an unknown key here is an error, not a warning, since a
//! misspelt relaxation would silently do nothing — with file:line and did-you-mean.
//!
//! ```yaml
//! container_security:
//!   cap_add: []                 # capabilities a non-admin may add (default none)
//!   bind_roots:                 # where bind-mount sources may come from
//!     - path: "{home}"          # {home}: the caller's home (NSS), {user}: their name
//!     - {path: "/scratch/{user}"}
//!     - {path: /data, read_only: true}
//!   groups:                     # per-group relaxations: the same keys; lists add,
//!     researcher:               # true/false replace
//!       cap_add: [SYS_PTRACE]
//!   users:                      # per-user relaxations (login name), same rules
//!     alice: {host_namespaces: [ipc]}
//! ```
//!
//! The checks themselves are in `crate::docker::security`.

use super::dec::Dec;
use super::diag::{Diagnostics, did_you_mean};
use super::yaml::{Kind, Node, Scalar};
use std::collections::BTreeMap;
use std::path::Path;

/// A bind-mount root: `path` (with `{home}` / `{user}`), and whether binds from
/// under it are forced read-only.
#[derive(Debug, Clone, PartialEq)]
pub struct BindRoot {
    pub path: String,
    pub read_only: bool,
}

/// One level of rules (the section's top, a group's or a user's relaxation):
/// `None` / empty = not said here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub allow_privileged: Option<bool>,
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    pub host_namespaces: Vec<String>,
    pub devices: Vec<String>,
    pub allow_device_cgroup_rules: Option<bool>,
    pub sysctls: Vec<String>,
    pub runtimes: Vec<String>,
    pub bind_roots: Option<Vec<BindRoot>>,
    pub allow_privileged_ports: Option<bool>,
}

/// The section as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSecurity {
    pub base: Rules,
    /// Group name → (its relaxation, the line it is on).
    pub groups: BTreeMap<String, (Rules, usize)>,
    pub users: BTreeMap<String, Rules>,
}

/// The rules in force for one user: defaults, the section, their group's and
/// their own relaxations, merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub allow_privileged: bool,
    /// Upper case, without `CAP_`; `ALL` only if listed.
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    /// Of `pid`, `ipc`, `uts`, `userns`, `network`, `cgroup`.
    pub host_namespaces: Vec<String>,
    pub devices: Vec<String>,
    pub allow_device_cgroup_rules: bool,
    /// Extra sysctls (a trailing `*` matches a prefix) beyond the namespaced safe set.
    pub sysctls: Vec<String>,
    /// Besides the daemon's default (no `--runtime`).
    pub runtimes: Vec<String>,
    pub bind_roots: Vec<BindRoot>,
    pub allow_privileged_ports: bool,
}

pub const HOST_NAMESPACES: &[&str] = &["pid", "ipc", "uts", "userns", "network", "cgroup"];
pub const DEFAULT_RUNTIMES: &[&str] = &["runc", "nvidia"];
pub const DEFAULT_BIND_ROOT: &str = "{home}";

const KEYS: &[&str] = &[
    "allow_privileged",
    "cap_add",
    "security_opt",
    "host_namespaces",
    "devices",
    "allow_device_cgroup_rules",
    "sysctls",
    "runtimes",
    "bind_roots",
    "allow_privileged_ports",
];
/// The section's own level also has `groups` and `users`.
const LEVEL_KEYS: &[&str] = &["groups", "users"];

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            allow_privileged: false,
            cap_add: Vec::new(),
            security_opt: Vec::new(),
            host_namespaces: Vec::new(),
            devices: Vec::new(),
            allow_device_cgroup_rules: false,
            sysctls: Vec::new(),
            runtimes: DEFAULT_RUNTIMES.iter().map(|s| s.to_string()).collect(),
            bind_roots: vec![BindRoot {
                path: DEFAULT_BIND_ROOT.into(),
                read_only: false,
            }],
            allow_privileged_ports: false,
        }
    }
}

impl Policy {
    fn apply(&mut self, r: &Rules) {
        if let Some(b) = r.allow_privileged {
            self.allow_privileged = b;
        }
        if let Some(b) = r.allow_device_cgroup_rules {
            self.allow_device_cgroup_rules = b;
        }
        if let Some(b) = r.allow_privileged_ports {
            self.allow_privileged_ports = b;
        }
        let add = |to: &mut Vec<String>, from: &[String]| {
            for s in from {
                if !to.contains(s) {
                    to.push(s.clone());
                }
            }
        };
        add(&mut self.cap_add, &r.cap_add);
        add(&mut self.security_opt, &r.security_opt);
        add(&mut self.host_namespaces, &r.host_namespaces);
        add(&mut self.devices, &r.devices);
        add(&mut self.sysctls, &r.sysctls);
        add(&mut self.runtimes, &r.runtimes);
        if let Some(roots) = &r.bind_roots {
            for root in roots {
                if !self.bind_roots.contains(root) {
                    self.bind_roots.push(root.clone());
                }
            }
        }
    }
}

impl ContainerSecurity {
    /// The policy for `user` (login name, or its sanitized form) in `group`.
    pub fn policy_for(&self, user: &str, sanitized: &str, group: &str) -> Policy {
        let mut p = Policy::default();
        // The section's own bind_roots replace the default; relaxations add.
        if let Some(roots) = &self.base.bind_roots {
            p.bind_roots = roots.clone();
        }
        let base = Rules {
            bind_roots: None,
            ..self.base.clone()
        };
        p.apply(&base);
        if let Some((g, _)) = self.groups.get(group) {
            p.apply(g);
        }
        if let Some(u) = self.users.get(user).or_else(|| self.users.get(sanitized)) {
            p.apply(u);
        }
        p
    }
}

/// Capability names as the daemon takes them: upper case, `CAP_` optional.
pub fn normalize_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").unwrap_or(&up).to_string()
}

impl Dec<'_> {
    fn strings(&mut self, v: &Node, key: &str) -> Vec<String> {
        if v.is_null() {
            return Vec::new();
        }
        let Kind::Seq(items) = &v.kind else {
            self.error(
                v.line,
                key,
                format!("expected a list, found {}", v.describe()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for it in items {
            match it.scalar() {
                Some(Scalar::Str(s)) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                Some(Scalar::Int(_) | Scalar::Float(_)) => {
                    out.push(it.text().unwrap_or_default().to_string())
                }
                _ => self.error(
                    it.line,
                    key,
                    format!("expected a name, found {}", it.describe()),
                ),
            }
        }
        out
    }

    fn roots(&mut self, v: &Node, key: &str) -> Option<Vec<BindRoot>> {
        let Kind::Seq(items) = &v.kind else {
            self.error(
                v.line,
                key,
                format!(
                    "expected a list of {{path, read_only}}, found {}",
                    v.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for it in items {
            let (path, ro) = match (&it.kind, it.scalar()) {
                (_, Some(Scalar::Str(s))) => (Some(s.to_string()), false),
                (Kind::Map(m), _) => {
                    let mut path = None;
                    let mut ro = false;
                    for (k, val) in m {
                        let name = k.text().unwrap_or_default();
                        let sub = format!("{key}.{name}");
                        match name {
                            "path" => path = val.text().map(str::to_string),
                            "read_only" => ro = self.bool(val, &sub).unwrap_or(false),
                            other => {
                                let hint = did_you_mean(other, &["path", "read_only"])
                                    .map(|s| format!(" (did you mean {s:?}?)"))
                                    .unwrap_or_default();
                                self.error(k.line, &sub, format!("unknown key{hint}"));
                            }
                        }
                    }
                    (path, ro)
                }
                _ => (None, false),
            };
            let Some(path) = path else {
                self.error(
                    it.line,
                    key,
                    format!(
                        "each bind root is a path or {{path, read_only}}, found {}",
                        it.describe()
                    ),
                );
                continue;
            };
            let expanded = path.replace("{home}", "/h").replace("{user}", "u");
            if !expanded.starts_with('/') {
                self.error(
                    it.line,
                    key,
                    format!("{path:?}: a bind root is an absolute path (or starts with {{home}})"),
                );
                continue;
            }
            if expanded == "/" || expanded.split('/').any(|c| c == "..") {
                self.error(
                    it.line,
                    key,
                    format!("{path:?}: \"/\" and paths with \"..\" cannot be bind roots"),
                );
                continue;
            }
            if path
                .replace("{home}", "")
                .replace("{user}", "")
                .contains('{')
            {
                self.error(
                    it.line,
                    key,
                    format!("{path:?}: the only placeholders are {{home}} and {{user}}"),
                );
                continue;
            }
            out.push(BindRoot {
                path,
                read_only: ro,
            });
        }
        Some(out)
    }

    fn rules(&mut self, m: &[(Node, Node)], prefix: &str, section: bool) -> Rules {
        let mut r = Rules::default();
        for (k, v) in m {
            let Some(name) = k.text() else {
                self.error(k.line, prefix, "keys must be plain names");
                continue;
            };
            let key = format!("{prefix}.{name}");
            match name {
                "allow_privileged" => r.allow_privileged = self.bool(v, &key),
                "allow_device_cgroup_rules" => r.allow_device_cgroup_rules = self.bool(v, &key),
                "allow_privileged_ports" => r.allow_privileged_ports = self.bool(v, &key),
                "cap_add" => {
                    r.cap_add = self
                        .strings(v, &key)
                        .iter()
                        .map(|c| normalize_cap(c))
                        .collect();
                }
                "security_opt" => r.security_opt = self.strings(v, &key),
                "host_namespaces" => {
                    for ns in self.strings(v, &key) {
                        if HOST_NAMESPACES.contains(&ns.as_str()) {
                            r.host_namespaces.push(ns);
                        } else {
                            let hint = did_you_mean(&ns, HOST_NAMESPACES)
                                .map(|s| format!(" (did you mean {s:?}?)"))
                                .unwrap_or_default();
                            self.error(
                                v.line,
                                &key,
                                format!(
                                    "{ns:?} is not a namespace ds01 knows{hint}; one of {}",
                                    HOST_NAMESPACES.join(", ")
                                ),
                            );
                        }
                    }
                }
                "devices" => {
                    for d in self.strings(v, &key) {
                        if d.starts_with("/dev/") {
                            r.devices.push(d);
                        } else {
                            self.error(v.line, &key, format!("{d:?}: a device is a /dev/ path"));
                        }
                    }
                }
                "sysctls" => r.sysctls = self.strings(v, &key),
                "runtimes" => r.runtimes = self.strings(v, &key),
                "bind_roots" => r.bind_roots = self.roots(v, &key),
                other => {
                    let mut known = KEYS.to_vec();
                    if section {
                        known.extend_from_slice(LEVEL_KEYS);
                    }
                    let hint = did_you_mean(other, &known)
                        .map(|s| format!(" (did you mean {s:?}?)"))
                        .unwrap_or_default();
                    self.error(k.line, &key, format!("unknown key{hint}"));
                }
            }
        }
        r
    }
}

/// Decode the `container_security` section. Group names are checked against the
/// config's groups by [`check_groups`] once all groups are known.
pub fn decode(file: &Path, diags: &mut Diagnostics, v: &Node) -> ContainerSecurity {
    const P: &str = "container_security";
    let mut d = Dec { file, diags };
    let mut out = ContainerSecurity::default();
    let Some(m) = d.map(v, P) else {
        return out;
    };
    let plain: Vec<(Node, Node)> = m
        .iter()
        .filter(|(k, _)| !matches!(k.text(), Some("groups" | "users")))
        .cloned()
        .collect();
    out.base = d.rules(&plain, P, true);
    for (k, v) in m {
        let which = k.text().unwrap_or_default();
        if which != "groups" && which != "users" {
            continue;
        }
        let key = format!("{P}.{which}");
        let Some(entries) = d.map(v, &key) else {
            continue;
        };
        for (name, body) in entries {
            let Some(n) = name.text() else {
                d.error(name.line, &key, "keys must be plain names");
                continue;
            };
            let sub = format!("{key}.{n}");
            let Some(bm) = d.map(body, &sub) else {
                continue;
            };
            let rules = d.rules(bm, &sub, false);
            if which == "groups" {
                out.groups.insert(n.to_string(), (rules, name.line));
            } else {
                out.users.insert(n.to_string(), rules);
            }
        }
    }
    out
}

/// Every group named under `container_security.groups` must exist.
pub fn check_groups(
    file: &Path,
    diags: &mut Diagnostics,
    sec: &ContainerSecurity,
    groups: &[&str],
) {
    for (g, (_, line)) in &sec.groups {
        if !groups.contains(&g.as_str()) {
            let hint = did_you_mean(g, groups)
                .map(|s| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default();
            diags.error(
                file,
                Some(*line),
                &format!("container_security.groups.{g}"),
                format!("no group {g:?} in this config{hint}"),
            );
        }
    }
}
