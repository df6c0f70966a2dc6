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
use rustix::fd::OwnedFd;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// See [`read_opt`].
const SHORT_READ_EOF: usize = 2048;

/// Read a file; `None` when it does not exist or the kernel does not support it.
///
/// Three system calls per file — open, read, close — because reading a cgroup tree
/// is nothing but system calls: no `fstat` for a size hint (kernel files report 0 or
/// 4096), and no second `read` to see EOF when the first came back short of a small
/// size. A seq_file read fills the caller's buffer with whole records up to a page,
/// so a read that returns less than [`SHORT_READ_EOF`] bytes into a larger buffer
/// has reached the end (records of the files ds01 reads are lines of < 100 bytes);
/// a longer answer is read on until `read` returns 0.
pub fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    let fd = match open_ro(path) {
        Ok(fd) => fd,
        Err(e) => return absent_or_error(path, e),
    };
    match read_all(&fd, false) {
        Ok(text) => Ok(Some(text)),
        Err(rustix::io::Errno::ILSEQ) => Err(CgroupError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"),
        }),
        Err(e) => absent_or_error(path, e),
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
    /// On hybrid hosts whose memory controller is in v1: the same cgroup in the v1
    /// memory hierarchy, where its memory files are read ([`walk`] decides once
    /// per tree, so a read costs no `stat` to find its file).
    pub v1_memory: Option<PathBuf>,
    /// The same for the pids controller.
    pub v1_pids: Option<PathBuf>,
    /// Read through these open files instead of opening each file anew.
    pub open_files: Shared,
}

/// An optional [`OpenFiles`] cache; not part of a directory's identity.
#[derive(Debug, Clone, Default)]
pub struct Shared(pub Option<Arc<OpenFiles>>);

impl PartialEq for Shared {
    fn eq(&self, _: &Shared) -> bool {
        true
    }
}
impl Eq for Shared {}

/// Keyed by the path's bytes with a fast hash (hashing a `Path` goes component by
/// component, which showed in profiles).
type FileMap = HashMap<std::ffi::OsString, Option<Arc<OwnedFd>>, foldhash::fast::RandomState>;

/// `statfs` `f_type` of cgroup v2 (`CGROUP2_SUPER_MAGIC`).
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `statfs` `f_type` of a cgroup v1 hierarchy (`CGROUP_SUPER_MAGIC`).
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;

/// The file system type (`f_type`) of a `statfs` answer.
pub fn fs_magic(st: &rustix::fs::StatFs) -> i64 {
    // f_type's integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let t = st.f_type as i64;
    t
}

fn is_cgroupfs(st: &rustix::fs::StatFs) -> bool {
    matches!(fs_magic(st), CGROUP2_SUPER_MAGIC | CGROUP_SUPER_MAGIC)
}

/// Kernel files kept open between reads, for a daemon that reads the same files
/// again and again (the monitor's `/metrics`): a read is then one `pread` at offset
/// 0 instead of open + read + close — about 4× cheaper on cgroupfs, where opening a
/// file allocates its seq_file. The price is kernel memory, about 4 KiB per open
/// file (the seq_file's page), so ~40 MB for 1,000 slices of ten files.
///
/// Only files on cgroupfs are kept: a regular file (a fixture tree) could be
/// replaced under the same name without the cached descriptor noticing. A cgroup
/// that is removed makes its open files fail with ENODEV; they are then dropped
/// and the path is opened anew (the cgroup may have been re-created).
#[derive(Debug)]
pub struct OpenFiles {
    /// `None`: not on cgroupfs, read by path each time.
    fds: std::sync::Mutex<FileMap>,
    /// Keep at most this many open (the rest are read by path).
    max: usize,
    /// How many are open now.
    open: std::sync::atomic::AtomicUsize,
}

impl Default for OpenFiles {
    /// At most half the process's open-files limit, so other descriptors (PSI
    /// triggers, connections, logs) never run short because of this cache.
    fn default() -> Self {
        // `None`: no limit.
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        OpenFiles {
            fds: std::sync::Mutex::new(FileMap::default()),
            max: soft.map_or(usize::MAX, |s| usize::try_from(s / 2).unwrap_or(usize::MAX)),
            open: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl OpenFiles {
    /// Open files now kept.
    pub fn len(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(m: &FileMap) -> usize {
        m.values().filter(|v| v.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is `dir` on cgroupfs — worth keeping its files open?
    pub fn worth_it(dir: &Path) -> bool {
        rustix::fs::statfs(dir).is_ok_and(|st| is_cgroupfs(&st))
    }

    /// Close the files of directories `keep` says no to (slices gone).
    pub fn retain_dirs(&self, keep: impl Fn(&Path) -> bool) {
        if let Ok(mut m) = self.fds.lock() {
            m.retain(|p, _| Path::new(p).parent().is_some_and(&keep));
            self.open
                .store(Self::count(&m), std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn read(&self, path: &Path) -> Result<Option<String>, CgroupError> {
        use rustix::io::Errno;
        let cached = self
            .fds
            .lock()
            .ok()
            .and_then(|m| m.get(path.as_os_str()).cloned());
        let fd = match cached {
            Some(Some(fd)) => fd,
            Some(None) => return read_opt(path),
            None if self.len() >= self.max => return read_opt(path),
            None => {
                let fd = match open_ro(path) {
                    Ok(fd) => fd,
                    // Out of descriptors: read without keeping it.
                    Err(Errno::MFILE | Errno::NFILE) => return read_opt(path),
                    Err(e) => return absent_or_error(path, e),
                };
                let keep = rustix::fs::fstatfs(&fd).is_ok_and(|st| is_cgroupfs(&st));
                let entry = keep.then(|| Arc::new(fd));
                if let Ok(mut m) = self.fds.lock() {
                    let before = m.insert(path.as_os_str().to_os_string(), entry.clone());
                    let now_open = usize::from(entry.is_some());
                    let was_open = usize::from(matches!(before, Some(Some(_))));
                    self.open
                        .fetch_add(now_open, std::sync::atomic::Ordering::Relaxed);
                    self.open
                        .fetch_sub(was_open, std::sync::atomic::Ordering::Relaxed);
                }
                match entry {
                    Some(fd) => fd,
                    None => return read_opt(path),
                }
            }
        };
        match read_all(&fd, true) {
            Ok(text) => Ok(Some(text)),
            Err(Errno::NODEV) => {
                if let Ok(mut m) = self.fds.lock()
                    && let Some(Some(_)) = m.remove(path.as_os_str())
                {
                    self.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
                read_opt(path)
            }
            Err(e) => absent_or_error(path, e),
        }
    }
}

/// Raise the soft open-files limit to the hard one, for a process that keeps
/// kernel files open ([`OpenFiles`] keeps at most half the soft limit): the monitor
/// (three PSI trigger fds per slice, and `/metrics`' ten files per slice) and
/// `ds01 top` (eight per user). 1,000 users need ~10,000 where the soft default is
/// 1,024 (systemd's hard default is 524,288); without it, reads fall back to
/// opening each file anew, ~10× dearer on cgroupfs.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            eprintln!("note: cannot raise the open-files limit: {e}");
        }
    }
}

fn open_ro(path: &Path) -> Result<OwnedFd, rustix::io::Errno> {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
}

/// A missing or unsupported file is `None`; anything else an error with its path.
fn absent_or_error(path: &Path, e: rustix::io::Errno) -> Result<Option<String>, CgroupError> {
    use rustix::io::Errno;
    match e {
        Errno::NOENT | Errno::OPNOTSUPP | Errno::NODEV => Ok(None),
        e => Err(CgroupError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// The whole file: `pread`s from offset 0 (`positional`) or `read`s from where the
/// fd is, until EOF — see [`read_opt`] for when a short read is taken as EOF.
fn read_all(fd: &OwnedFd, positional: bool) -> Result<String, rustix::io::Errno> {
    use rustix::io::Errno;
    // 1 KiB: the files ds01 reads are a few hundred bytes, and a small block comes
    // from the allocator's per-thread cache (4 KiB ones showed in profiles).
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let room = buf.capacity() - buf.len();
        let at = buf.len() as u64;
        let spare = rustix::buffer::spare_capacity(&mut buf);
        let got = if positional {
            rustix::io::pread(fd, spare, at)
        } else {
            rustix::io::read(fd, spare)
        };
        match got {
            Ok(0) => break,
            Ok(n) if n < room && buf.len() < SHORT_READ_EOF => break,
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|_| Errno::ILSEQ)
}

impl CgroupDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CgroupDir {
            path: path.into(),
            v1_memory: None,
            v1_pids: None,
            open_files: Shared::default(),
        }
    }

    /// Read `path` (a file of this cgroup) through the open-files cache if any.
    fn read_path(&self, path: &Path) -> Result<Option<String>, CgroupError> {
        match &self.open_files.0 {
            Some(files) => files.read(path),
            None => read_opt(path),
        }
    }

    fn read(&self, name: &str) -> Result<Option<String>, CgroupError> {
        self.read_path(&self.path.join(name))
    }

    fn single_in(&self, dir: &Path, name: &str) -> Result<Option<Limit<u64>>, CgroupError> {
        let path = dir.join(name);
        match self.read_path(&path)? {
            None => Ok(None),
            Some(t) => single(&t)
                .map(Some)
                .map_err(|source| CgroupError::Parse { path, source }),
        }
    }

    /// The child cgroup `name` (a container's scope under a slice), in every
    /// hierarchy this one has, reading through the same open files.
    pub fn child(&self, name: &str) -> CgroupDir {
        CgroupDir {
            path: self.path.join(name),
            v1_memory: self.v1_memory.as_ref().map(|d| d.join(name)),
            v1_pids: self.v1_pids.as_ref().map(|d| d.join(name)),
            open_files: self.open_files.clone(),
        }
    }

    /// The directories this cgroup's files are read from (v2, and the v1 ones of
    /// a hybrid host): what an [`OpenFiles`] cache keeps files of.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.path.as_path())
            .chain(self.v1_memory.as_deref())
            .chain(self.v1_pids.as_deref())
    }

    /// Docker container scopes directly under this cgroup: `(container id, scope)`.
    pub fn scopes(&self) -> Vec<(String, CgroupDir)> {
        subdirs(&self.path)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, _)| {
                let id = crate::naming::parse_scope(&name)?.to_string();
                Some((id, self.child(&name)))
            })
            .collect()
    }

    /// The directory to read a controller's files from: the v1 one when there is
    /// one, else v2.
    fn dir_for(&self, v1: &Option<PathBuf>) -> (PathBuf, bool) {
        match v1 {
            Some(d) => (d.clone(), true),
            None => (self.path.clone(), false),
        }
    }

    pub fn memory_current(&self) -> Result<Option<u64>, CgroupError> {
        let (dir, v1) = self.dir_for(&self.v1_memory);
        let name = if v1 {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        Ok(self.single_in(&dir, name)?.and_then(Limit::value))
    }

    pub fn memory_max(&self) -> Result<Option<Limit<u64>>, CgroupError> {
        let (dir, v1) = self.dir_for(&self.v1_memory);
        if v1 {
            return Ok(self
                .single_in(&dir, "memory.limit_in_bytes")?
                .map(|l| match l {
                    Limit::Value(v) if v >= V1_UNLIMITED => Limit::Max,
                    other => other,
                }));
        }
        self.single_in(&dir, "memory.max")
    }

    pub fn memory_high(&self) -> Result<Option<Limit<u64>>, CgroupError> {
        self.single_in(&self.path, "memory.high")
    }

    /// The file that counts OOM kills: `memory.events` (v2), or on a hybrid host
    /// the v1 `memory.oom_control`. The kernel notifies (inotify IN_MODIFY) when it
    /// changes.
    pub fn oom_file(&self) -> PathBuf {
        let (dir, v1) = self.dir_for(&self.v1_memory);
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
        let Some(text) = self.read_path(&path)? else {
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
        let (dir, _) = self.dir_for(&self.v1_pids);
        Ok(self.single_in(&dir, "pids.current")?.and_then(Limit::value))
    }

    pub fn pids_max(&self) -> Result<Option<Limit<u64>>, CgroupError> {
        let (dir, _) = self.dir_for(&self.v1_pids);
        self.single_in(&dir, "pids.max")
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

    /// `cpu.stat`'s `usage_usec` and `throttled_usec` (0 when the kernel has no
    /// throttling figures for this cgroup), from one read.
    pub fn cpu_stat(&self) -> Result<Option<(u64, u64)>, CgroupError> {
        let path = self.path.join("cpu.stat");
        let Some(text) = self.read("cpu.stat")? else {
            return Ok(None);
        };
        let kv = flat(&text).map_err(|source| CgroupError::Parse { path, source })?;
        Ok(flat_get(&kv, "usage_usec").map(|u| (u, flat_get(&kv, "throttled_usec").unwrap_or(0))))
    }

    /// `cpu.max` as (quota µs or max, period µs).
    pub fn cpu_max(&self) -> Result<Option<(Limit<u64>, u64)>, CgroupError> {
        let path = self.path.join("cpu.max");
        let Some(text) = self.read_path(&path)? else {
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
        match self.read_path(&path)? {
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
/// hierarchies are `…/memory/ds01.slice` and `…/pids/ds01.slice`. A controller is
/// read from v1 when its v1 tree is there and the v2 root does not have it.
fn v1_roots(root: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let Some(base) = root
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "unified"))
        .and_then(Path::parent)
    else {
        return (None, None);
    };
    let v1 = |controller: &str, v2_file: &str| {
        let dir = base.join(controller).join("ds01.slice");
        (dir.is_dir() && !root.join(v2_file).exists()).then_some(dir)
    };
    (v1("memory", "memory.current"), v1("pids", "pids.current"))
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
                    // A v1 directory not (yet) there reads as "no such file",
                    // as a missing v2 file does.
                    let rel = Path::new(&gname).join(&uname);
                    let pick = |r: &Option<PathBuf>| r.as_ref().map(|r| r.join(&rel));
                    w.slices.push(UserSlice {
                        group: group.to_string(),
                        user: user.to_string(),
                        dir: CgroupDir {
                            path: upath,
                            v1_memory: pick(&v1_mem),
                            v1_pids: pick(&v1_pids),
                            open_files: Shared::default(),
                        },
                    });
                }
                _ => w.skipped.push(upath),
            }
        }
    }
    Ok(w)
}

/// `f` over `list` on a few threads (reading kernel files is all open/read/close
/// syscalls, which scale with cores); results in `list`'s order. A panicking
/// chunk yields `None` for its items.
pub fn par_map<T: Sync, R: Send>(list: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<Option<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(list.len().div_ceil(64).max(1));
    let chunk = list.len().div_ceil(threads).max(1);
    let run = |part: &[T]| -> Vec<Option<R>> { part.iter().map(|x| Some(f(x))).collect() };
    if threads == 1 {
        return run(list);
    }
    std::thread::scope(|sc| {
        let handles: Vec<_> = list
            .chunks(chunk)
            .map(|p| (p.len(), sc.spawn(move || run(p))))
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| h.join().unwrap_or_else(|_| (0..n).map(|_| None).collect()))
            .collect()
    })
}

/// The names of the directories directly under `dir`, sorted (none when it is
/// not there).
pub fn subdirs_named(dir: &Path) -> Vec<String> {
    subdirs(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Docker container scopes directly under a user slice: `(container id, dir)`.
pub fn container_scopes(slice: &Path) -> Vec<(String, PathBuf)> {
    CgroupDir::new(slice)
        .scopes()
        .into_iter()
        .map(|(id, d)| (id, d.path))
        .collect()
}
