//! PSI triggers on user slices (Documentation/accounting/psi.rst): open
//! `<resource>.pressure` O_RDWR|O_NONBLOCK, write `<some|full> <stall µs> <window µs>`,
//! and the kernel raises POLLPRI on that fd when tasks of the cgroup were stalled
//! for more than the threshold within a window. One trigger per fd.
//!
//! Since Linux 6.5 a trigger from a process without CAP_SYS_RESOURCE must use a
//! window that is a multiple of 2 s; it is then served by the kernel's existing
//! 2-second averaging work instead of a real-time `psimon` thread per cgroup — the
//! shipped unit keeps that capability out on purpose, and the default window is 2 s.

use crate::cgroup::{self, UserSlice};
use crate::config::PressureConfig;
use crate::events::Event;
use rustix::event::epoll;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Armed {
    fd: OwnedFd,
    slice: UserSlice,
    resource: &'static str,
    kind: &'static str,
    stall_us: u64,
}

/// Why arming failed: the slice went away (try again at the next rescan), or
/// something that will not get better by retrying (reported once, triggers off).
#[derive(Debug)]
enum ArmError {
    Gone,
    /// Out of file descriptors: this slice is tried again at the next rescan.
    Later(String),
    Fatal(String),
}

/// Arm one trigger: `<dir>/<resource>.pressure`, `<kind> <stall> <window>`.
fn arm(
    dir: &Path,
    resource: &str,
    kind: &str,
    stall_us: u64,
    window_us: u64,
) -> Result<OwnedFd, ArmError> {
    let path = dir.join(format!("{resource}.pressure"));
    let fd = match rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if !dir.exists() => return Err(ArmError::Gone),
        Err(e @ (Errno::MFILE | Errno::NFILE)) => {
            return Err(ArmError::Later(format!(
                "cannot open {}: {e} (raise LimitNOFILE=)",
                path.display()
            )));
        }
        Err(Errno::NOENT) => {
            return Err(ArmError::Fatal(format!(
                "{} does not exist: this kernel has no PSI (CONFIG_PSI)",
                path.display()
            )));
        }
        Err(e) => {
            return Err(ArmError::Fatal(format!(
                "cannot open {} for writing: {e} (the monitor runs as root; under systemd it needs ReadWritePaths=/sys/fs/cgroup)",
                path.display()
            )));
        }
    };
    // A trigger is only written to a real cgroup2 file: a fixture tree's regular
    // file would just be overwritten.
    match rustix::fs::fstatfs(&fd) {
        Ok(st) if cgroup::fs_magic(&st) == cgroup::CGROUP2_SUPER_MAGIC => {}
        Ok(_) => {
            return Err(ArmError::Fatal(format!(
                "{} is not on a cgroup2 file system (a fixture tree?)",
                path.display()
            )));
        }
        Err(e) => return Err(ArmError::Fatal(format!("{}: {e}", path.display()))),
    }
    let text = format!("{kind} {stall_us} {window_us}\0");
    match rustix::io::write(&fd, text.as_bytes()) {
        Ok(_) => Ok(fd),
        Err(Errno::NODEV) => Err(ArmError::Gone),
        Err(Errno::OPNOTSUPP) => Err(ArmError::Fatal(format!(
            "{}: PSI is disabled on this kernel (boot with psi=1)",
            path.display()
        ))),
        Err(Errno::INVAL) => Err(ArmError::Fatal(format!(
            "{}: the kernel refused the trigger {:?} (window must be 0.5–10 s, and from Linux 6.5 a multiple of 2 s unless the monitor has CAP_SYS_RESOURCE)",
            path.display(),
            text.trim_end_matches('\0')
        ))),
        Err(e) => Err(ArmError::Fatal(format!(
            "cannot arm a trigger on {}: {e}",
            path.display()
        ))),
    }
}

/// Why a config arms no triggers at all.
fn off_for(cfg: &PressureConfig) -> Option<String> {
    (!cfg.enabled).then(|| "monitoring.pressure.enabled is false".to_string())
}

/// The armed triggers of every watched slice, registered in the monitor's epoll set
/// under tokens from `first_token` up.
pub struct Triggers {
    cfg: PressureConfig,
    armed: HashMap<u64, Armed>,
    by_slice: HashMap<PathBuf, Vec<u64>>,
    next_token: u64,
    last_event: HashMap<(String, &'static str), Instant>,
    /// Set when arming failed for a reason retrying will not fix.
    off: Option<String>,
    /// Running out of file descriptors was reported.
    short_of_fds: bool,
}

impl Triggers {
    pub fn new(cfg: PressureConfig, first_token: u64) -> Triggers {
        let off = off_for(&cfg);
        Triggers {
            cfg,
            armed: HashMap::new(),
            by_slice: HashMap::new(),
            next_token: first_token,
            last_event: HashMap::new(),
            off,
            short_of_fds: false,
        }
    }

    /// Armed triggers now.
    pub fn count(&self) -> usize {
        self.armed.len()
    }

    /// Why no triggers are armed, when that is so.
    pub fn off_reason(&self) -> Option<&str> {
        self.off.as_deref()
    }

    /// A different `monitoring.pressure` (config reloaded): drop every trigger, to
    /// be re-armed by the next `sync`. Returns whether it was different.
    pub fn reconfigure(&mut self, ep: &OwnedFd, cfg: &PressureConfig) -> bool {
        if *cfg == self.cfg {
            return false;
        }
        self.drop_all(ep);
        self.cfg = cfg.clone();
        self.off = off_for(cfg);
        true
    }

    /// Arm triggers on slices not yet armed; drop those of slices gone. Returns a
    /// message the first time arming turns out to be impossible.
    pub fn sync(&mut self, ep: &OwnedFd, slices: &[UserSlice]) -> Option<String> {
        let present: std::collections::HashSet<&Path> =
            slices.iter().map(|s| s.dir.path.as_path()).collect();
        let gone: Vec<PathBuf> = self
            .by_slice
            .keys()
            .filter(|p| !present.contains(p.as_path()))
            .cloned()
            .collect();
        for p in gone {
            self.drop_slice(ep, &p);
        }
        if self.off.is_some() {
            return None;
        }
        let specs = self.cfg.triggers();
        for s in slices {
            if self.by_slice.contains_key(&s.dir.path) {
                continue;
            }
            let mut tokens = Vec::new();
            for &(resource, kind, stall_us) in &specs {
                match arm(&s.dir.path, resource, kind, stall_us, self.cfg.window_us) {
                    Ok(fd) => {
                        let token = self.next_token;
                        self.next_token += 1;
                        if let Err(e) = epoll::add(
                            ep,
                            &fd,
                            epoll::EventData::new_u64(token),
                            epoll::EventFlags::PRI,
                        ) {
                            return self.turn_off(ep, format!("epoll: {e}"));
                        }
                        tokens.push(token);
                        self.armed.insert(
                            token,
                            Armed {
                                fd,
                                slice: s.clone(),
                                resource,
                                kind,
                                stall_us,
                            },
                        );
                    }
                    Err(ArmError::Gone) => break,
                    Err(ArmError::Later(msg)) => {
                        for t in tokens {
                            self.forget(ep, t);
                        }
                        if !self.short_of_fds {
                            self.short_of_fds = true;
                            return Some(format!(
                                "{msg}; slices left without triggers are retried at each rescan"
                            ));
                        }
                        return None;
                    }
                    Err(ArmError::Fatal(msg)) => {
                        for t in tokens {
                            self.forget(ep, t);
                        }
                        return self.turn_off(ep, msg);
                    }
                }
            }
            self.by_slice.insert(s.dir.path.clone(), tokens);
        }
        None
    }

    fn turn_off(&mut self, ep: &OwnedFd, msg: String) -> Option<String> {
        self.drop_all(ep);
        self.off = Some(msg.clone());
        Some(msg)
    }

    fn drop_all(&mut self, ep: &OwnedFd) {
        let slices: Vec<PathBuf> = self.by_slice.keys().cloned().collect();
        for p in slices {
            self.drop_slice(ep, &p);
        }
    }

    fn forget(&mut self, ep: &OwnedFd, token: u64) {
        if let Some(a) = self.armed.remove(&token) {
            let _ = epoll::delete(ep, &a.fd);
        }
    }

    fn drop_slice(&mut self, ep: &OwnedFd, path: &Path) {
        for t in self.by_slice.remove(path).unwrap_or_default() {
            self.forget(ep, t);
        }
    }

    pub fn owns(&self, token: u64) -> bool {
        self.armed.contains_key(&token)
    }

    /// A trigger's fd became ready. `EPOLLERR` means its cgroup went away: the
    /// slice's triggers are dropped (the next rescan re-arms a slice that is back).
    /// Otherwise the threshold was crossed: an event, unless this user and resource
    /// had one within the cooldown.
    pub fn fired(
        &mut self,
        ep: &OwnedFd,
        token: u64,
        flags: epoll::EventFlags,
        now: Instant,
    ) -> Option<Event> {
        let a = self.armed.get(&token)?;
        if flags.contains(epoll::EventFlags::ERR) || flags.contains(epoll::EventFlags::HUP) {
            let p = a.slice.dir.path.clone();
            self.drop_slice(ep, &p);
            return None;
        }
        let key = (a.slice.user.clone(), a.resource);
        let cooldown = Duration::from_secs(self.cfg.cooldown_s);
        if self
            .last_event
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < cooldown)
        {
            return None;
        }
        let psi = a.slice.dir.psi(a.resource).ok().flatten();
        let line = psi.and_then(|p| {
            if a.kind == "full" {
                p.full
            } else {
                Some(p.some)
            }
        });
        let window_s = self.cfg.window_us as f64 / 1e6;
        let mut ev = Event::new("resource.pressure")
            .user(&a.slice.user)
            .source("monitor")
            .detail("group", a.slice.group.as_str())
            .detail("resource", a.resource)
            .detail("kind", a.kind)
            .detail("threshold_ms", a.stall_us as f64 / 1000.0)
            .detail("window_s", window_s);
        if let Some(l) = line {
            ev = ev
                .detail("avg10", l.avg10)
                .detail("avg60", l.avg60)
                .detail("total_us", l.total);
        }
        self.last_event.insert(key, now);
        Some(ev)
    }
}
