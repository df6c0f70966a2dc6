//! systemd slice units and drop-ins from the config: render, plan against disk,
//! apply atomically.
//!
//! Files (all under the systemd unit dir, each starting with [`MARKER`]):
//! `ds01.slice`, `ds01-<group>.slice` per group, `ds01-<group>-<user>.slice` per
//! configured user, and for users with an aggregate
//! `ds01-<group>-<user>.slice.d/10-resource-limits.conf`. ds01 changes or removes only
//! files that carry the marker; anything else is left alone and reported.

use crate::config::{Aggregate, Config, Resolved};
use crate::naming::{ROOT_SLICE, group_slice, parse_group_slice, parse_user_slice};
use crate::units::{Limit, format_systemd_size};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// First line of every file ds01 writes; its presence is what makes a file ds01's.
pub const MARKER: &str = "# Managed by ds01 (ds01 slices apply); local edits are overwritten. Config: resource-limits.yaml";
/// The drop-in file name inside `ds01-<group>-<user>.slice.d/`.
pub const DROPIN: &str = "10-resource-limits.conf";
/// Prefix of the temporary files of an atomic write (cleaned up by the next apply).
const TMP_PREFIX: &str = ".ds01-tmp.";

#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// Before any rename: every unit is still as it was.
    #[error("cannot write {path}: {source}; nothing was changed (every unit is as it was)")]
    Staging { path: PathBuf, source: io::Error },
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

fn accounting() -> &'static str {
    "[Slice]\nCPUAccounting=yes\nMemoryAccounting=yes\nTasksAccounting=yes\nIOAccounting=yes\n"
}

/// Escape a value for a unit file `Description=` (no newlines, `%` is a specifier).
fn unit_text(s: &str) -> String {
    s.replace('%', "%%").replace(['\n', '\r'], " ")
}

pub fn render_root() -> String {
    format!(
        "{MARKER}\n[Unit]\nDescription=ds01 user containers\nBefore=slices.target\n\n{}",
        accounting()
    )
}

pub fn render_group(group: &str) -> String {
    format!(
        "{MARKER}\n[Unit]\nDescription=ds01 group {}\nBefore=slices.target\n\n{}",
        unit_text(group),
        accounting()
    )
}

pub fn render_user(r: &Resolved) -> String {
    format!(
        "{MARKER}\n[Unit]\nDescription=ds01 user {} (group {})\nBefore=slices.target\n\n{}",
        unit_text(&r.user),
        unit_text(&r.group),
        accounting()
    )
}

/// The drop-in for an aggregate, or `None` when it limits nothing.
/// `null` (unlimited) memory and task limits are written as `infinity`; an
/// unlimited CPU quota is simply not written (systemd's default).
pub fn render_dropin(a: &Aggregate) -> Option<String> {
    if a.is_unlimited() {
        return None;
    }
    let mut s = format!("{MARKER}\n[Slice]\n");
    if let Some(Limit::Value(q)) = a.cpu_quota {
        s.push_str(&format!("CPUQuota={q}\n"));
    }
    if let Some(m) = a.memory_max {
        s.push_str(&format!("MemoryMax={}\n", format_systemd_size(m)));
    }
    if let Some(m) = a.memory_high {
        s.push_str(&format!("MemoryHigh={}\n", format_systemd_size(m)));
    }
    match a.tasks_max {
        Some(Limit::Value(t)) => s.push_str(&format!("TasksMax={t}\n")),
        Some(Limit::Max) => s.push_str("TasksMax=infinity\n"),
        None => {}
    }
    Some(s)
}

/// What `apply` should leave on disk, relative to the systemd dir.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub files: BTreeMap<PathBuf, String>,
    /// `false` with `--user`: nothing is ever removed.
    pub may_remove: bool,
}

pub fn dropin_rel(slice: &str) -> PathBuf {
    PathBuf::from(format!("{slice}.d")).join(DROPIN)
}

/// Every file for the whole config.
pub fn desired_all(cfg: &Config) -> Desired {
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from(ROOT_SLICE), render_root());
    for g in &cfg.groups {
        files.insert(PathBuf::from(group_slice(&g.name)), render_group(&g.name));
    }
    for r in cfg.all_users() {
        add_user(&mut files, cfg, &r);
    }
    Desired {
        files,
        may_remove: true,
    }
}

/// The files of one user only; nothing is removed.
pub fn desired_user(cfg: &Config, r: &Resolved) -> Desired {
    let mut files = BTreeMap::new();
    add_user(&mut files, cfg, r);
    Desired {
        files,
        may_remove: false,
    }
}

fn add_user(files: &mut BTreeMap<PathBuf, String>, cfg: &Config, r: &Resolved) {
    let slice = r.slice();
    files.insert(PathBuf::from(&slice), render_user(r));
    if cfg.enforcement.aggregate_limits
        && let Some(text) = r.aggregate.as_ref().and_then(render_dropin)
    {
        files.insert(dropin_rel(&slice), text);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create { new: String },
    Change { old: String, new: String },
    Remove { old: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub rel: PathBuf,
    pub action: Action,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub unchanged: usize,
    /// Files ds01 would have written or removed but that lack its marker.
    pub foreign: Vec<PathBuf>,
    /// Leftover temporary files from an interrupted apply.
    pub stale_tmp: Vec<PathBuf>,
}

impl Plan {
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for ch in &self.changes {
            match ch.action {
                Action::Create { .. } => c.0 += 1,
                Action::Change { .. } => c.1 += 1,
                Action::Remove { .. } => c.2 += 1,
            }
        }
        c
    }

    pub fn summary(&self) -> String {
        let (c, ch, r) = self.counts();
        format!(
            "{c} to create, {ch} to change, {r} to remove, {} unchanged",
            self.unchanged
        )
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.stale_tmp.is_empty()
    }

    /// A unified diff of every change, paths shown under `dir`.
    pub fn diff(&self, dir: &Path) -> String {
        let mut out = String::new();
        for ch in &self.changes {
            let path = dir.join(&ch.rel);
            let (old, new, old_name, new_name) = match &ch.action {
                Action::Create { new } => (
                    "",
                    new.as_str(),
                    "/dev/null".to_string(),
                    path.display().to_string(),
                ),
                Action::Change { old, new } => (
                    old.as_str(),
                    new.as_str(),
                    path.display().to_string(),
                    path.display().to_string(),
                ),
                Action::Remove { old } => (
                    old.as_str(),
                    "",
                    path.display().to_string(),
                    "/dev/null".to_string(),
                ),
            };
            let diff = similar::TextDiff::from_lines(old, new);
            out.push_str(
                &diff
                    .unified_diff()
                    .context_radius(3)
                    .header(&old_name, &new_name)
                    .to_string(),
            );
        }
        out
    }
}

fn has_marker(text: &str) -> bool {
    text.lines().next() == Some(MARKER)
}

/// Is `name` (a file name in the systemd dir) one that ds01 could own?
fn is_ds01_unit_name(name: &str) -> bool {
    name == ROOT_SLICE || parse_group_slice(name).is_some() || parse_user_slice(name).is_some()
}

fn read_opt(path: &Path) -> Result<Option<String>, SliceError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SliceError::Read {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Every file on disk that ds01 could own: `ds01*.slice` and their
/// `10-resource-limits.conf` drop-ins (relative paths), plus stale temp files.
fn scan(dir: &Path) -> Result<(BTreeSet<PathBuf>, Vec<PathBuf>), SliceError> {
    let mut found = BTreeSet::new();
    let mut tmp = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((found, tmp)),
        Err(e) => {
            return Err(SliceError::Read {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) {
            tmp.push(PathBuf::from(&name));
        } else if is_ds01_unit_name(&name) {
            found.insert(PathBuf::from(&name));
        } else if let Some(unit) = name.strip_suffix(".d") {
            if !is_ds01_unit_name(unit) {
                continue;
            }
            let sub = dir.join(&name);
            if let Ok(inner) = fs::read_dir(&sub) {
                for f in inner.flatten() {
                    let fname = f.file_name().to_string_lossy().into_owned();
                    if fname == DROPIN {
                        found.insert(PathBuf::from(&name).join(fname));
                    } else if fname.starts_with(TMP_PREFIX) {
                        tmp.push(PathBuf::from(&name).join(fname));
                    }
                }
            }
        }
    }
    Ok((found, tmp))
}

/// Compare what should be on disk with what is.
pub fn plan(dir: &Path, desired: &Desired) -> Result<Plan, SliceError> {
    let (on_disk, stale_tmp) = scan(dir)?;
    let mut p = Plan {
        stale_tmp,
        ..Plan::default()
    };
    for (rel, new) in &desired.files {
        match read_opt(&dir.join(rel))? {
            None => p.changes.push(Change {
                rel: rel.clone(),
                action: Action::Create { new: new.clone() },
            }),
            Some(old) if old == *new => p.unchanged += 1,
            Some(old) if has_marker(&old) => p.changes.push(Change {
                rel: rel.clone(),
                action: Action::Change {
                    old,
                    new: new.clone(),
                },
            }),
            Some(_) => p.foreign.push(rel.clone()),
        }
    }
    if desired.may_remove {
        for rel in on_disk.difference(&desired.files.keys().cloned().collect()) {
            match read_opt(&dir.join(rel))? {
                Some(old) if has_marker(&old) => p.changes.push(Change {
                    rel: rel.clone(),
                    action: Action::Remove { old },
                }),
                Some(_) => p.foreign.push(rel.clone()),
                None => {}
            }
        }
    }
    p.changes.sort_by(|a, b| a.rel.cmp(&b.rel));
    p.foreign.sort();
    Ok(p)
}

/// Carry out a plan. Returns the number of files written or removed.
pub fn apply(dir: &Path, plan: &Plan) -> Result<usize, SliceError> {
    apply_with(dir, plan, &|_| {})
}

/// Carry out a plan in phases, so that an interruption at any point leaves each
/// file either old or new:
/// 1. every new text goes to a temp file beside its target (`.ds01-tmp.*`);
/// 2. one `syncfs` makes them all durable (instead of 2,000 fsyncs for 1,000 users);
/// 3. each temp file is renamed over its target (atomic);
/// 4. removals; 5. every touched directory is fsynced once.
///
/// `before_rename` runs before each rename (tests use it to simulate a crash).
pub fn apply_with(
    dir: &Path,
    plan: &Plan,
    before_rename: &dyn Fn(&Path),
) -> Result<usize, SliceError> {
    use std::os::unix::fs::PermissionsExt;
    for rel in &plan.stale_tmp {
        let p = dir.join(rel);
        fs::remove_file(&p).map_err(|e| SliceError::Remove { path: p, source: e })?;
    }
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
    let cleanup = |staged: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in staged {
            let _ = fs::remove_file(tmp);
        }
    };
    for ch in &plan.changes {
        let (Action::Create { new } | Action::Change { new, .. }) = &ch.action else {
            continue;
        };
        let path = dir.join(&ch.rel);
        let parent = path.parent().unwrap_or(dir).to_path_buf();
        let name = ch
            .rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!("{TMP_PREFIX}{}.{name}", std::process::id()));
        let written = fs::create_dir_all(&parent)
            .and_then(|()| fs::write(&tmp, new))
            // Unit files are world-readable, like the ones systemd ships.
            .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)));
        if let Err(e) = written {
            cleanup(&staged);
            let _ = fs::remove_file(&tmp);
            return Err(SliceError::Staging { path, source: e });
        }
        staged.push((tmp, path));
        touched.insert(parent);
    }
    crate::fault::point("slices-staged");
    if !staged.is_empty() {
        let synced =
            fs::File::open(dir).and_then(|d| rustix::fs::syncfs(&d).map_err(io::Error::from));
        if let Err(e) = synced {
            cleanup(&staged);
            return Err(SliceError::Staging {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    }
    let mut n = 0;
    for (i, (tmp, path)) in staged.iter().enumerate() {
        before_rename(tmp);
        crate::fault::point("slices-rename");
        if let Err(e) = fs::rename(tmp, path) {
            cleanup(&staged[i..]);
            return Err(SliceError::Write {
                path: path.clone(),
                source: e,
            });
        }
        n += 1;
    }
    for ch in &plan.changes {
        if !matches!(ch.action, Action::Remove { .. }) {
            continue;
        }
        let path = dir.join(&ch.rel);
        crate::fault::point("slices-remove");
        fs::remove_file(&path).map_err(|e| SliceError::Remove {
            path: path.clone(),
            source: e,
        })?;
        let parent = path.parent().unwrap_or(dir).to_path_buf();
        // Drop a now-empty `.slice.d` directory; one with an admin's own drop-ins stays.
        if parent != dir && fs::remove_dir(&parent).is_ok() {
            touched.insert(dir.to_path_buf());
        } else {
            touched.insert(parent);
        }
        n += 1;
    }
    for d in touched {
        if let Ok(f) = fs::File::open(&d) {
            let _ = f.sync_all();
        }
    }
    Ok(n)
}

/// Users whose new `MemoryMax` is below what their slice uses right now.
/// Reads `memory.current` (cgroup v2) under `cgroup_root` (the `ds01.slice` dir).
pub fn lowered_below_usage(
    cfg: &Config,
    users: &[Resolved],
    cgroup_root: &Path,
) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    if !cfg.enforcement.aggregate_limits {
        return out;
    }
    for r in users {
        let Some(Limit::Value(max)) = r.aggregate.as_ref().and_then(|a| a.memory_max) else {
            continue;
        };
        let dir = crate::cgroup::CgroupDir::new(r.cgroup_path(cgroup_root));
        if let Ok(Some(cur)) = dir.memory_current()
            && cur > max
        {
            out.push((r.user.clone(), cur, max));
        }
    }
    out
}
