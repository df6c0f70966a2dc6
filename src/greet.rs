//! The login greeting: the user's quota, current use, recent OOM kills and alerts.
//!
//! It runs at every interactive login as the user, so it must never break or slow a
//! login: the caller turns any error into silence, and everything here is cheap —
//! the config, a few cgroup files, the tail of the event log read backwards only as
//! far as 24 hours, and one small alerts file.

use crate::cgroup::CgroupDir;
use crate::config::{Config, Resolved};
use crate::events::read::parse_line;
use crate::units::{Limit, format_human_bytes, format_number};
use jiff::Timestamp;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where the greeting reads.
#[derive(Debug, Clone)]
pub struct GreetPaths {
    pub cgroup_root: PathBuf,
    pub events_log: PathBuf,
    pub alerts_dir: PathBuf,
    /// Optional site banner (`<config dir>/banner.txt`).
    pub banner: PathBuf,
    /// Where the monitor keeps `gpu.json` (the GPU line; none when it is missing
    /// or older than five minutes).
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OomSummary {
    pub count: u64,
    pub latest: Option<Timestamp>,
    pub container: Option<String>,
}

/// The OOM kills of `user` since `since`, reading the event log backwards from its
/// end and stopping at the first line older than `since` (the log is in time
/// order), so a large log costs no more than its last day.
pub fn recent_ooms(log: &Path, user: &str, since: Timestamp) -> std::io::Result<OomSummary> {
    let mut all = recent_ooms_of(log, Some(user), since)?;
    Ok(all.remove(user).unwrap_or(OomSummary {
        count: 0,
        latest: None,
        container: None,
    }))
}

/// [`recent_ooms`] for every user (`None`) or one, in one backward read.
pub fn recent_ooms_of(
    log: &Path,
    user: Option<&str>,
    since: Timestamp,
) -> std::io::Result<std::collections::HashMap<String, OomSummary>> {
    let mut out: std::collections::HashMap<String, OomSummary> = Default::default();
    let mut f = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut pos = f.seek(SeekFrom::End(0))?;
    let mut carry: Vec<u8> = Vec::new();
    const BLOCK: u64 = 64 * 1024;
    loop {
        let start = pos.saturating_sub(BLOCK);
        let mut buf = vec![0u8; (pos - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        // Lines complete in this buffer: all but the first (unless at the start).
        let mut lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
        let first = if start > 0 {
            Some(lines.remove(0))
        } else {
            None
        };
        for line in lines.iter().rev() {
            let Ok(text) = std::str::from_utf8(line) else {
                continue;
            };
            // Most lines are other users' or other types: decide from the raw text
            // (the leading v1 timestamp, a substring) before parsing anything.
            let quick_ts = crate::events::read::leading_timestamp(text);
            if quick_ts.is_some_and(|ts| ts < since) {
                return Ok(out);
            }
            if quick_ts.is_some()
                && !(text.contains("resource.oom_kill") && user.is_none_or(|u| text.contains(u)))
            {
                continue;
            }
            let Some(r) = parse_line(text) else {
                continue;
            };
            if let Some(ts) = r.ts
                && ts < since
            {
                return Ok(out);
            }
            let Some(who) = r.user.as_deref() else {
                continue;
            };
            if r.event_type != "resource.oom_kill" || user.is_some_and(|u| u != who) {
                continue;
            }
            let n = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.pointer("/details/oom_count").and_then(|c| c.as_u64()))
                .unwrap_or(1);
            let sum = out.entry(who.to_string()).or_insert(OomSummary {
                count: 0,
                latest: None,
                container: None,
            });
            sum.count += n;
            if sum.latest.is_none() {
                sum.latest = r.ts;
                sum.container = r.container.map(|c| c.into_owned());
            }
        }
        match first {
            Some(f) => carry = f.to_vec(),
            None => return Ok(out),
        }
        pos = start;
    }
}

/// `[{"type": "...", "message": "..."}]` from `<alerts dir>/<user>.json`; entries
/// with an `expires` time in the past are left out.
pub fn alerts(dir: &Path, user: &str, now: Timestamp) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{user}.json"))) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&text) else {
        return Vec::new();
    };
    items
        .iter()
        .filter(|a| {
            a.get("expires")
                .and_then(|e| e.as_str())
                .and_then(crate::timespec::parse_log_time)
                .is_none_or(|e| e > now)
        })
        .filter_map(|a| {
            a.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .collect()
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

fn bar(frac: f64, width: usize) -> String {
    let filled = ((frac.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// The greeting text for a resolved user.
pub fn render(cfg: &Config, r: &Resolved, p: &GreetPaths, now: Timestamp, color: bool) -> String {
    let st = Style { color };
    let mut out = String::new();
    if let Ok(banner) = std::fs::read_to_string(&p.banner)
        && !banner.trim().is_empty()
    {
        out.push_str(banner.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} {} (group {})\n",
        st.paint("1", "ds01:"),
        r.user,
        r.group
    ));
    let agg = r
        .aggregate
        .as_ref()
        .filter(|a| !a.is_unlimited() && cfg.enforcement.aggregate_limits);
    let mem_max = agg.and_then(|a| a.memory_max).and_then(Limit::value);
    match agg {
        None => out.push_str("  Quota      unlimited\n"),
        Some(a) => {
            let mut parts = Vec::new();
            if let Some(Limit::Value(g)) = a.gpu_limit {
                parts.push(format!("{} GPU", format_number(g)));
            }
            if let Some(m) = mem_max {
                parts.push(format!("{} memory", format_human_bytes(m)));
            }
            if let Some(Limit::Value(q)) = a.cpu_quota {
                parts.push(format!("{} CPUs", format_number(q.cpus())));
            }
            if let Some(Limit::Value(c)) = r.limits.max_containers_per_user {
                parts.push(format!("{c} containers"));
            }
            out.push_str(&format!("  Quota      {}\n", parts.join(", ")));
        }
    }
    let dir = CgroupDir::new(r.cgroup_path(&p.cgroup_root));
    if dir.path.is_dir() {
        let cur = dir.memory_current().ok().flatten().unwrap_or(0);
        let containers = crate::cgroup::container_scopes(&dir.path).len();
        let tasks = dir.pids_current().ok().flatten().unwrap_or(0);
        let mem = match mem_max {
            Some(m) if m > 0 => {
                let frac = cur as f64 / m as f64;
                let b = bar(frac, 20);
                let b = if frac >= 0.9 { st.paint("31", &b) } else { b };
                format!(
                    "{} / {} {b} {:.0}%",
                    format_human_bytes(cur),
                    format_human_bytes(m),
                    frac * 100.0
                )
            }
            _ => format_human_bytes(cur),
        };
        out.push_str(&format!("  Memory     {mem}\n"));
        out.push_str(&format!(
            "  Running    {containers} container(s), {tasks} tasks\n"
        ));
    } else {
        out.push_str("  Running    no containers\n");
    }
    if let Some(g) = crate::gpu::report::load_fresh(&p.state_dir, now) {
        let lines = crate::gpu::report::greeting(&g, &r.slice_user);
        for (i, l) in lines.iter().enumerate() {
            if i == 0 {
                let l = l.strip_prefix("GPU: ").unwrap_or(l);
                out.push_str(&format!("  GPU        {l}\n"));
            } else {
                out.push_str(&st.paint("33", &format!("  ! {l}\n")));
            }
        }
    }
    let since = now - jiff::SignedDuration::from_hours(24);
    if let Ok(o) = recent_ooms(&p.events_log, &r.slice_user, since)
        && o.count > 0
    {
        let when = o
            .latest
            .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::system()))
            .map(|z| z.strftime("%H:%M").to_string())
            .unwrap_or_else(|| "?".into());
        let where_ = o
            .container
            .map(|c| format!(" in container {c}"))
            .unwrap_or_default();
        let noun = if o.count == 1 {
            "process was"
        } else {
            "processes were"
        };
        out.push_str(&st.paint(
                "33",
                &format!(
                    "  ! {} of your {noun} killed for exceeding memory in the last 24h — latest {when}{where_}\n",
                    o.count
                ),
            ));
    }
    for a in alerts(&p.alerts_dir, &r.slice_user, now) {
        out.push_str(&st.paint("33", &format!("  ! {a}\n")));
    }
    out.push_str(&format!(
        "  More: ds01 limits · ds01 events --user {}\n",
        r.slice_user
    ));
    out
}
