//! A typed reader of cgroup v2 directories (with the hybrid v1 fallbacks for memory
//! and pids), and the walk that finds ds01's user slices.
//!
//! Errors carry the path. A file the kernel does not provide is `Ok(None)`; PSI
//! files that fail with EOPNOTSUPP (`psi=0`) are `Ok(None)` too — "not supported",
//! never a crash.

pub mod parse;

use crate::naming::{parse_group_slice, parse_user_slice};
use crate::units::Limit;
use parse::{ParseError, Psi, flat, flat_get, single};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: ParseError },
}

/// Limits at or above this in cgroup v1 mean "no limit" (the kernel reports
/// PAGE_COUNTER_MAX × page size, 9223372036854771712 on x86-64).
const V1_UNLIMITED: u64 = 1 << 62;

/// Read a file; `None` when it does not exist or the kernel does not support it.
pub fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
                || e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) =>
        {
            Ok(None)
        }
        Err(e) => Err(CgroupError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEvents {
    pub low: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
}

/// One cgroup, as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    pub path: PathBuf,
    /// On hybrid hosts: the same cgroup in the v1 memory hierarchy.
    pub v1_memory: Option<PathBuf>,
    /// On hybrid hosts: the same cgroup in the v1 pids hierarchy.
    pub v1_pids: Option<PathBuf>,
}

impl CgroupDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CgroupDir {
            path: path.into(),
            v1_memory: None,
            v1_pids: None,
        }
    }

    fn read(&self, name: &str) -> Result<Option<String>, CgroupError> {
        read_opt(&self.path.join(name))
    }

    fn single_in(dir: &Path, name: &str) -> Result<Option<Limit<u64>>, CgroupError> {
        let path = dir.join(name);
        match read_opt(&path)? {
            None => Ok(None),
            Some(t) => single(&t)
                .map(Some)
                .map_err(|source| CgroupError::Parse { path, source }),
        }
    }

    /// The directory to read `controller` files from: v2, else the v1 fallback.
    fn dir_for(&self, v2_file: &str, v1: &Option<PathBuf>) -> (PathBuf, bool) {
        match v1 {
            Some(d) if !self.path.join(v2_file).exists() => (d.clone(), true),
            _ => (self.path.clone(), false),
        }
    }

    pub fn memory_current(&self) -> Result<Option<u64>, CgroupError> {
        let (dir, v1) = self.dir_for("memory.current", &self.v1_memory);
        let name = if v1 {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        Ok(Self::single_in(&dir, name)?.and_then(Limit::value))
    }

    pub fn memory_max(&self) -> Result<Option<Limit<u64>>, CgroupError> {
        let (dir, v1) = self.dir_for("memory.current", &self.v1_memory);
        if v1 {
            return Ok(
                Self::single_in(&dir, "memory.limit_in_bytes")?.map(|l| match l {
                    Limit::Value(v) if v >= V1_UNLIMITED => Limit::Max,
                    other => other,
                }),
            );
        }
        Self::single_in(&dir, "memory.max")
    }

    pub fn memory_high(&self) -> Result<Option<Limit<u64>>, CgroupError> {
        Self::single_in(&self.path, "memory.high")
    }

    /// The file that counts OOM kills: `memory.events` (v2), or on a hybrid host
    /// the v1 `memory.oom_control`. The kernel notifies (inotify IN_MODIFY) when it
    /// changes.
    pub fn oom_file(&self) -> PathBuf {
        let (dir, v1) = self.dir_for("memory.current", &self.v1_memory);
        dir.join(if v1 {
            "memory.oom_control"
        } else {
            "memory.events"
        })
    }

    pub fn memory_events(&self) -> Result<Option<MemoryEvents>, CgroupError> {
        let path = self.oom_file();
        let name = if path.ends_with("memory.oom_control") {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        let Some(text) = read_opt(&path)? else {
            return Ok(None);
        };
        let kv = flat(&text).map_err(|source| CgroupError::Parse {
            path: path.clone(),
            source,
        })?;
        Ok(Some(if name == "memory.oom_control" {
            MemoryEvents {
                oom_kill: flat_get(&kv, "oom_kill"),
                ..MemoryEvents::default()
            }
        } else {
            MemoryEvents {
                low: flat_get(&kv, "low"),
                high: flat_get(&kv, "high"),
                max: flat_get(&kv, "max"),
                oom: flat_get(&kv, "oom"),
                oom_kill: flat_get(&kv, "oom_kill"),
            }
        }))
    }

    pub fn pids_current(&self) -> Result<Option<u64>, CgroupError> {
        let (dir, _) = self.dir_for("pids.current", &self.v1_pids);
        Ok(Self::single_in(&dir, "pids.current")?.and_then(Limit::value))
    }

    pub fn pids_max(&self) -> Result<Option<Limit<u64>>, CgroupError> {
        let (dir, _) = self.dir_for("pids.current", &self.v1_pids);
        Self::single_in(&dir, "pids.max")
    }

    /// `cpu.stat` `usage_usec` (includes descendants).
    pub fn cpu_usage_usec(&self) -> Result<Option<u64>, CgroupError> {
        let path = self.path.join("cpu.stat");
        let Some(text) = self.read("cpu.stat")? else {
            return Ok(None);
        };
        let kv = flat(&text).map_err(|source| CgroupError::Parse { path, source })?;
        Ok(flat_get(&kv, "usage_usec"))
    }

    /// `cpu.max` as (quota µs or max, period µs).
    pub fn cpu_max(&self) -> Result<Option<(Limit<u64>, u64)>, CgroupError> {
        let path = self.path.join("cpu.max");
        let Some(text) = read_opt(&path)? else {
            return Ok(None);
        };
        let mut it = text.split_whitespace();
        let quota = it.next().map(single);
        let period = it.next().and_then(|p| p.parse::<u64>().ok());
        match (quota, period) {
            (Some(Ok(q)), Some(p)) => Ok(Some((q, p))),
            _ => Err(CgroupError::Parse {
                path,
                source: ParseError::Single(text.trim().chars().take(40).collect()),
            }),
        }
    }

    /// `<resource>.pressure` (cpu, memory, io); `None` when PSI is not available.
    pub fn psi(&self, resource: &str) -> Result<Option<Psi>, CgroupError> {
        let path = self.path.join(format!("{resource}.pressure"));
        match read_opt(&path)? {
            None => Ok(None),
            Some(t) => parse::psi(&t)
                .map(Some)
                .map_err(|source| CgroupError::Parse { path, source }),
        }
    }

    /// The directory's inode: a cgroup removed and re-created gets a new one.
    pub fn inode(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).ok().map(|m| m.ino())
    }
}

/// A user slice found in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSlice {
    pub group: String,
    /// The sanitized user name, from the slice name.
    pub user: String,
    pub dir: CgroupDir,
}

#[derive(Debug, Default)]
pub struct Walk {
    pub slices: Vec<UserSlice>,
    /// Directories in the tree that are not ds01 group or user slices.
    pub skipped: Vec<PathBuf>,
}

/// On a hybrid host the v2 root is `…/unified/ds01.slice`; the v1 memory and pids
/// hierarchies are `…/memory/ds01.slice` and `…/pids/ds01.slice`.
fn v1_roots(root: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let base = root
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "unified"))
        .and_then(Path::parent);
    match base {
        Some(b) => (
            Some(b.join("memory").join("ds01.slice")),
            Some(b.join("pids").join("ds01.slice")),
        ),
        None => (None, None),
    }
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CgroupError::Io {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    Ok(out)
}

/// Find `ds01.slice/ds01-<group>.slice/ds01-<group>-<user>.slice` under `root` (the
/// `ds01.slice` directory). A missing root means no slices yet.
pub fn walk(root: &Path) -> Result<Walk, CgroupError> {
    let (v1_mem, v1_pids) = v1_roots(root);
    let mut w = Walk::default();
    for (gname, gpath) in subdirs(root)? {
        let Some(group) = parse_group_slice(&gname) else {
            w.skipped.push(gpath);
            continue;
        };
        for (uname, upath) in subdirs(&gpath)? {
            match parse_user_slice(&uname) {
                Some((g, user)) if g == group => {
                    let rel = Path::new(&gname).join(&uname);
                    let pick = |r: &Option<PathBuf>| {
                        r.as_ref().map(|r| r.join(&rel)).filter(|p| p.is_dir())
                    };
                    w.slices.push(UserSlice {
                        group: group.to_string(),
                        user: user.to_string(),
                        dir: CgroupDir {
                            path: upath,
                            v1_memory: pick(&v1_mem),
                            v1_pids: pick(&v1_pids),
                        },
                    });
                }
                _ => w.skipped.push(upath),
            }
        }
    }
    Ok(w)
}

/// Docker container scopes directly under a user slice: `(container id, dir)`.
pub fn container_scopes(slice: &Path) -> Vec<(String, PathBuf)> {
    subdirs(slice)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, p)| {
            let id = name.strip_prefix("docker-")?.strip_suffix(".scope")?;
            Some((id.to_string(), p))
        })
        .collect()
}
