//! Who a GPU process belongs to: `/proc/<pid>/cgroup` → a `docker-<id>.scope`
//! under a `ds01-<group>-<user>.slice` → that user's container. A process in no
//! container is "bare metal", attributed to its Unix owner (the owner of
//! `/proc/<pid>`). A pid that ended between the NVML call and the `/proc` read is
//! [`Owner::Gone`], never a guess.

use serde::Serialize;
use std::path::Path;

/// What `/proc` says about one process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcFacts {
    pub cgroup: String,
    pub uid: Option<u32>,
}

/// Read `/proc/<pid>/cgroup` and the owner of `/proc/<pid>`; `None` when the
/// process is gone.
pub fn proc_facts(proc_root: &Path, pid: u32) -> Option<ProcFacts> {
    let dir = proc_root.join(pid.to_string());
    let cgroup = std::fs::read_to_string(dir.join("cgroup")).ok()?;
    let uid = rustix::fs::stat(&dir).ok().map(|st| st.st_uid);
    Some(ProcFacts { cgroup, uid })
}

/// Whom a GPU process is for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    /// In a Docker container. `user`/`group` from its ds01 slice (or, outside
    /// one, from the container's `ds01.user` label when Docker told us).
    Container {
        id: String,
        user: Option<String>,
        group: Option<String>,
        /// Under `ds01.slice`, where placement puts every container.
        placed: bool,
    },
    /// Not in any container: on the host, as its Unix owner.
    BareMetal { uid: Option<u32>, user: String },
    /// Ended before it could be looked up.
    Gone,
}

impl Owner {
    /// The user it counts against, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Owner::Container { user, .. } => user.as_deref(),
            Owner::BareMetal { user, .. } => Some(user),
            Owner::Gone => None,
        }
    }
}

/// A Docker container id (64 hex digits).
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `(container id, (group, user) of its ds01 user slice, under ds01.slice at all)`.
pub type Placement = (String, Option<(String, String)>, bool);

/// The container and ds01 slice in `/proc/<pid>/cgroup` text.
/// Reads the unified (`0::`) line first; on a hybrid host the v1 lines say the same.
pub fn parse_cgroup(text: &str) -> Option<Placement> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_by_key(|l| !l.starts_with("0::"));
    for line in lines {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let id = parts.iter().enumerate().find_map(|(i, p)| {
            if let Some(id) = crate::naming::parse_scope(p)
                && is_container_id(id)
            {
                return Some(id.to_string());
            }
            // The cgroupfs driver: …/docker/<id>, or <parent>/<id> under a slice.
            (is_container_id(p)
                && (i == 0 || parts[i - 1] == "docker" || parts[i - 1].ends_with(".slice")))
            .then(|| p.to_string())
        });
        let Some(id) = id else { continue };
        let slice = parts.iter().find_map(|p| {
            crate::naming::parse_user_slice(p).map(|(g, u)| (g.to_string(), u.to_string()))
        });
        let placed = parts.first() == Some(&"ds01.slice");
        return Some((id, slice, placed));
    }
    None
}

/// Whom `p` is for: recorded facts (a replayed snapshot from another host) win
/// over `/proc`.
pub fn owner_of(p: &super::Process, proc_root: &Path) -> Owner {
    let facts = match &p.cgroup {
        Some(c) => Some(ProcFacts {
            cgroup: c.clone(),
            uid: p.uid,
        }),
        None => proc_facts(proc_root, p.pid),
    };
    let Some(mut f) = facts else {
        return Owner::Gone;
    };
    if p.uid.is_some() {
        f.uid = p.uid;
    }
    if let Some((id, slice, placed)) = parse_cgroup(&f.cgroup) {
        let (group, user) = match slice {
            Some((g, u)) => (Some(g), Some(u)),
            None => (None, None),
        };
        return Owner::Container {
            id,
            user,
            group,
            placed,
        };
    }
    let user = p
        .user
        .clone()
        .or_else(|| {
            f.uid
                .and_then(|u| crate::docker::identity::user_name(u).map(|(n, _)| n))
        })
        .unwrap_or_else(|| {
            f.uid
                .map_or_else(|| "unknown".into(), |u| format!("uid {u}"))
        });
    Owner::BareMetal { uid: f.uid, user }
}
