//! Resolution: which group a user is in and which limits apply (COMPAT.md).
//!
//! Override: by the raw name, then the sanitized name. Group: the group whose
//! members (member files and inline lists) include the raw name, else the one whose
//! member sanitizes to the same name, else `default_group`. Limits: `defaults`
//! overlaid by the group, overlaid by the override. Aggregate: the override's if it
//! has one, else the group's, else none (unlimited).

use super::model::{Aggregate, Config, ContainerLimits, Member, Override};
use crate::naming::{sanitize_user, user_slice};
use serde_json::{Value, json};

/// How the user's group was found.
#[derive(Debug, Clone, PartialEq)]
pub enum Membership {
    Member(Member),
    Default,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The name as given.
    pub user: String,
    /// The sanitized name used in slice names.
    pub slice_user: String,
    pub group: String,
    pub membership: Membership,
    /// The key of the override that applied, if any.
    pub override_key: Option<String>,
    pub limits: ContainerLimits,
    /// `None` = no aggregate: unlimited (no slice drop-in).
    pub aggregate: Option<Aggregate>,
}

impl Resolved {
    pub fn slice(&self) -> String {
        user_slice(&self.group, &self.slice_user)
    }

    /// The user's slice directory under `root` (the `ds01.slice` cgroup directory).
    pub fn cgroup_path(&self, root: &std::path::Path) -> std::path::PathBuf {
        root.join(crate::naming::group_slice(&self.group))
            .join(self.slice())
    }

    /// The full `ds01 limits --json` object.
    pub fn to_json(&self) -> Value {
        let (source, file, line) = match &self.membership {
            Membership::Member(m) => (
                if m.from_members_file {
                    "members_file"
                } else {
                    "inline"
                },
                Some(m.file.display().to_string()),
                Some(m.line),
            ),
            Membership::Default => ("default_group", None, None),
        };
        json!({
            "user": self.user,
            "slice_user": self.slice_user,
            "group": self.group,
            "slice": self.slice(),
            "membership": {"source": source, "file": file, "line": line},
            "override": self.override_key,
            "limits": self.limits.to_json(),
            "aggregate": self.aggregate.as_ref().filter(|a| !a.is_unlimited()).map(Aggregate::to_json),
        })
    }
}

impl Aggregate {
    /// An aggregate that sets nothing (e.g. `aggregate: {}` in an override) lifts
    /// the limits like having none.
    pub fn is_unlimited(&self) -> bool {
        use crate::units::Limit::Value;
        !matches!(self.cpu_quota, Some(Value(_)))
            && !matches!(self.memory_max, Some(Value(_)))
            && !matches!(self.memory_high, Some(Value(_)))
            && !matches!(self.tasks_max, Some(Value(_)))
            && !matches!(self.gpu_limit, Some(Value(_)))
    }
}

impl Config {
    pub fn find_override(&self, user: &str) -> Option<&Override> {
        self.overrides.get(user).or_else(|| {
            let s = sanitize_user(user);
            self.overrides.get(&s)
        })
    }

    /// The group membership of `user`, as described in the module docs.
    pub fn membership(&self, user: &str) -> Option<(&str, &Member)> {
        let at = |&(gi, mi): &(usize, usize)| {
            let g = self.groups.get(gi)?;
            Some((g.name.as_str(), g.members.get(mi)?))
        };
        let ix = &self.member_index;
        if let Some(hit) = ix.exact.get(user) {
            return at(hit);
        }
        let s = sanitize_user(user);
        if s.is_empty() {
            return None;
        }
        ix.sanitized.get(&s).and_then(at)
    }

    pub fn resolve(&self, user: &str) -> Resolved {
        let membership = self
            .membership(user)
            .map(|(g, m)| (g.to_string(), m.clone()));
        self.resolve_as(user, membership)
    }

    /// Resolve with the membership already known (`None` = default group).
    fn resolve_as(&self, user: &str, membership: Option<(String, Member)>) -> Resolved {
        let (group_name, membership) = match membership {
            Some((g, m)) => (g, Membership::Member(m)),
            None => (self.default_group.clone(), Membership::Default),
        };
        let group = self.group(&group_name);
        let ov = self.find_override(user);
        let mut limits = self.defaults.clone();
        if let Some(g) = group {
            limits = limits.overlay(&g.limits);
        }
        if let Some(o) = ov {
            limits = limits.overlay(&o.limits);
        }
        let aggregate = ov
            .and_then(|o| o.aggregate.clone())
            .or_else(|| group.and_then(|g| g.aggregate.clone()));
        Resolved {
            user: user.to_string(),
            slice_user: sanitize_user(user),
            group: group_name,
            membership,
            override_key: ov.map(|o| o.user.clone()),
            limits,
            aggregate,
        }
    }

    /// Every configured user (members and overrides that are not a member's alias),
    /// resolved, in a stable order (by slice name). Linear in the number of users.
    pub fn all_users(&self) -> Vec<Resolved> {
        use std::collections::{HashMap, HashSet};
        // First membership wins here; a user in two groups is a config error anyway.
        let mut members: HashMap<&str, (&str, &Member)> = HashMap::new();
        for g in &self.groups {
            for m in &g.members {
                members
                    .entry(m.name.as_str())
                    .or_insert((g.name.as_str(), m));
            }
        }
        let sanitized: HashSet<String> = members.keys().map(|m| sanitize_user(m)).collect();
        let mut out: Vec<Resolved> = Vec::with_capacity(members.len() + self.overrides.len());
        for (name, (g, m)) in &members {
            if !sanitize_user(name).is_empty() {
                out.push(self.resolve_as(name, Some((g.to_string(), (*m).clone()))));
            }
        }
        for o in self.overrides.keys() {
            let alias = members.contains_key(o.as_str()) || sanitized.contains(o);
            if !alias && !sanitize_user(o).is_empty() {
                out.push(self.resolve(o));
            }
        }
        out.sort_by_cached_key(|r| r.slice());
        out
    }
}

impl Resolved {
    /// The user's per-container defaults as `docker run` flags, plus the slice:
    /// `--cpus=32 --memory=32g --memory-swap=32g --shm-size=16g --pids-limit=4096
    /// --cgroup-parent=ds01-student-alice.slice`. Unset or unlimited limits are left
    /// out, except an unlimited `memory_swap`, which is `--memory-swap=-1`.
    pub fn docker_args(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .limits
            .docker_defaults()
            .into_iter()
            .map(|(flag, value)| format!("--{flag}={value}"))
            .collect();
        out.push(format!("--cgroup-parent={}", self.slice()));
        out
    }
}
