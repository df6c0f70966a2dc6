//! Checks across keys and files, run after decoding.

use super::diag::Diagnostics;
use super::model::{Aggregate, Config};
use crate::naming::{group_name_problem, sanitize_user};
use crate::units::{Limit, format_systemd_size};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn validate(cfg: &Config, diags: &mut Diagnostics) {
    let file = cfg.path.as_path();

    for g in &cfg.groups {
        if let Some(problem) = group_name_problem(&g.name) {
            diags.error(file, Some(g.line), &format!("groups.{}", g.name), problem);
        }
        if let Some(a) = &g.aggregate {
            check_aggregate(cfg, a, file, &format!("groups.{}.aggregate", g.name), diags);
        }
        let eff = cfg.defaults.overlay(&g.limits);
        if let (Some(Limit::Value(mem)), Some(Limit::Value(swap))) = (eff.memory, eff.memory_swap)
            && swap < mem
        {
            // The value that makes it wrong: the group's own memory_swap or memory,
            // else the defaults' ones.
            let at = ["memory_swap", "memory"]
                .iter()
                .find_map(|k| cfg.line_of(file, &format!("groups.{}.{k}", g.name)))
                .or_else(|| {
                    ["memory_swap", "memory"]
                        .iter()
                        .find_map(|k| cfg.line_of(file, &format!("defaults.{k}")))
                })
                .unwrap_or(g.line);
            diags.error(
                file,
                Some(at),
                &format!("groups.{}.memory_swap", g.name),
                format!(
                    "memory_swap ({}) is below memory ({}); Docker refuses such containers",
                    crate::units::format_docker_size(swap),
                    crate::units::format_docker_size(mem)
                ),
            );
        }
    }
    for o in cfg.overrides.values() {
        if let Some(a) = &o.aggregate {
            check_aggregate(
                cfg,
                a,
                &o.file,
                &format!("user_overrides.{}.aggregate", o.user),
                diags,
            );
        }
    }

    if cfg.group(&cfg.default_group).is_none() {
        let names: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
        let hint = super::diag::did_you_mean(&cfg.default_group, &names)
            .map(|s| format!(" (did you mean {s:?}?)"))
            .unwrap_or_default();
        diags.error(
            file,
            cfg.line_of(file, "default_group"),
            "default_group",
            format!(
                "{:?} names no group in groups: ({}){hint}",
                cfg.default_group,
                if names.is_empty() {
                    "none defined".to_string()
                } else {
                    names.join(", ")
                }
            ),
        );
    }

    check_memberships(cfg, diags);
    check_slice_collisions(cfg, diags);
}

fn check_aggregate(cfg: &Config, a: &Aggregate, file: &Path, key: &str, diags: &mut Diagnostics) {
    // The line of the offending value (else of the `aggregate:` mapping).
    let at = |k: &str| cfg.line_of(file, &format!("{key}.{k}")).unwrap_or(a.line);
    let high = a.memory_high.and_then(Limit::value);
    let max = a.memory_max.and_then(Limit::value);
    if let (Some(h), Some(m)) = (high, max)
        && h > m
    {
        diags.error(
                file,
                Some(at("memory_high")),
                &format!("{key}.memory_high"),
                format!(
                    "memory_high ({}) is above memory_max ({}); the soft limit must not exceed the hard one",
                    format_systemd_size(Limit::Value(h)),
                    format_systemd_size(Limit::Value(m))
                ),
            );
    }
    if a.tasks_max == Some(Limit::Value(0)) {
        diags.error(
            file,
            Some(at("tasks_max")),
            &format!("{key}.tasks_max"),
            "0 tasks would stop every container from starting",
        );
    }
    if a.memory_max == Some(Limit::Value(0)) {
        diags.error(
            file,
            Some(at("memory_max")),
            &format!("{key}.memory_max"),
            "0 bytes would OOM-kill every container",
        );
    }
}

/// A user may be a member of one group only: with two, which limits apply would
/// depend on file order, so it is an error naming both places.
fn check_memberships(cfg: &Config, diags: &mut Diagnostics) {
    let mut seen: BTreeMap<&str, (&str, &PathBuf, usize)> = BTreeMap::new();
    for g in &cfg.groups {
        for m in &g.members {
            if sanitize_user(&m.name).is_empty() {
                diags.error(
                    &m.file,
                    Some(m.line),
                    &format!("groups.{}.members", g.name),
                    format!(
                        "{:?} is not a usable user name (nothing is left after sanitizing it)",
                        m.name
                    ),
                );
                continue;
            }
            match seen.get(m.name.as_str()) {
                Some((other, ofile, oline)) if *other != g.name => {
                    diags.error(
                        &m.file,
                        Some(m.line),
                        &format!("groups.{}.members", g.name),
                        format!(
                            "{:?} is also a member of group {other:?} ({}:{oline}); a user may be in one group only — remove one of the two",
                            m.name,
                            ofile.display()
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert(&m.name, (&g.name, &m.file, m.line));
                }
            }
        }
    }
}

/// Two different users must never share a slice (COMPAT.md: an old defect).
/// An override keyed by a member's sanitized name is that member, not a new user.
fn check_slice_collisions(cfg: &Config, diags: &mut Diagnostics) {
    // sanitized → (raw, file, line)
    let mut by_slice: BTreeMap<String, (String, PathBuf, usize)> = BTreeMap::new();
    let mut report = |raw: &str, file: &Path, line: usize, key: &str, diags: &mut Diagnostics| {
        let s = sanitize_user(raw);
        if s.is_empty() {
            return;
        }
        match by_slice.get(&s) {
            Some((other, ofile, oline)) if other != raw => diags.error(
                file,
                Some(line),
                key,
                format!(
                    "{raw:?} and {other:?} ({}:{oline}) both become slice user {s:?}; two users would share one slice — rename one or remove it",
                    ofile.display()
                ),
            ),
            Some(_) => {}
            None => {
                by_slice.insert(s, (raw.to_string(), file.to_path_buf(), line));
            }
        }
    };
    for g in &cfg.groups {
        for m in &g.members {
            report(
                &m.name,
                &m.file,
                m.line,
                &format!("groups.{}.members", g.name),
                diags,
            );
        }
    }
    let members: Vec<&str> = cfg
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.name.as_str()))
        .collect();
    for o in cfg.overrides.values() {
        let is_member_alias = members
            .iter()
            .any(|m| *m == o.user || sanitize_user(m) == o.user);
        if sanitize_user(&o.user).is_empty() {
            diags.error(
                &o.file,
                Some(o.line),
                &format!("user_overrides.{}", o.user),
                "not a usable user name (nothing is left after sanitizing it)",
            );
            continue;
        }
        if !is_member_alias {
            report(
                &o.user,
                &o.file,
                o.line,
                &format!("user_overrides.{}", o.user),
                diags,
            );
        }
    }
}
