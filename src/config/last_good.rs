//! The last config that loaded cleanly, kept so that a broken edit never lifts
//! anyone's limits: every command that enforces (the proxy, the wrapper) saves the
//! raw files it loaded without errors — `resource-limits.yaml`, `groups/*.members`,
//! `user-overrides.yaml` — as one JSON document written atomically under the state
//! directory, and enforces with it while the current files do not load.

use super::{Loaded, load};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "last-good-config.json";
const MAIN: &str = "resource-limits.yaml";
const OVERRIDES: &str = "user-overrides.yaml";

/// Where the snapshot lives under a state directory (`/var/lib/ds01`).
pub fn snapshot_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The raw files the loader reads for `config`, as (name relative to the config's
/// directory, text).
fn raw_files(config: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = vec![(MAIN.to_string(), std::fs::read_to_string(config)?)];
    let dir = config.parent().unwrap_or(Path::new("."));
    if let Ok(t) = std::fs::read_to_string(dir.join(OVERRIDES)) {
        out.push((OVERRIDES.to_string(), t));
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("groups")) {
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".members") && !n.contains('/'))
            .collect();
        names.sort();
        for n in names {
            out.push((
                format!("groups/{n}"),
                std::fs::read_to_string(dir.join("groups").join(&n))?,
            ));
        }
    }
    Ok(out)
}

/// Save the files behind `config` (which just loaded without errors). Unchanged
/// snapshots are not rewritten.
pub fn save(config: &Path, state_dir: &Path) -> std::io::Result<()> {
    let files = raw_files(config)?;
    let mut m = Map::new();
    for (k, v) in files {
        m.insert(k, json!(v));
    }
    let doc = json!({
        "source": config.display().to_string(),
        "files": Value::Object(m),
    });
    let path = snapshot_path(state_dir);
    if let Ok(old) = std::fs::read(&path)
        && let Ok(old) = serde_json::from_slice::<Value>(&old)
        && old["files"] == doc["files"]
    {
        return Ok(());
    }
    std::fs::create_dir_all(state_dir)?;
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    // Readable like the config itself: the wrapper runs as the user.
    crate::fsutil::write_atomic(&path, &bytes, 0o644)
}

/// Load the snapshot, if there is one that still loads cleanly: the files are laid
/// out in a private temporary directory and read by the ordinary loader.
pub fn load_snapshot(state_dir: &Path) -> Option<(Loaded, String)> {
    let text = std::fs::read(snapshot_path(state_dir)).ok()?;
    let doc: Value = serde_json::from_slice(&text).ok()?;
    let files = doc.get("files")?.as_object()?;
    let tmp = tempdir()?;
    let ok = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(tmp.join("groups"))?;
        for (name, text) in files {
            let safe = name == MAIN
                || name == OVERRIDES
                || name.strip_prefix("groups/").is_some_and(|n| {
                    n.ends_with(".members") && !n.contains(['/', '\\']) && !n.starts_with('.')
                });
            if !safe {
                continue;
            }
            std::fs::write(tmp.join(name), text.as_str().unwrap_or(""))?;
        }
        Ok(())
    })();
    let loaded = ok.ok().map(|()| load(&tmp.join(MAIN)));
    let _ = std::fs::remove_dir_all(&tmp);
    let loaded = loaded?;
    if loaded.config.is_none() || loaded.diagnostics.has_errors() {
        return None;
    }
    let source = doc["source"].as_str().unwrap_or("?").to_string();
    Some((loaded, source))
}

fn tempdir() -> Option<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let p = std::env::temp_dir().join(format!(
        "ds01-last-good-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&p).ok()?;
    Some(p)
}

/// The config to enforce with (`None`: no good one is known), the current load
/// (its diagnostics are what to report), and whether the snapshot is in force.
pub struct Enforced {
    pub config: Option<super::Config>,
    pub current: Loaded,
    pub from_snapshot: bool,
}

/// Load the current config; if it has errors, fall back to the snapshot. A clean
/// current load refreshes the snapshot (best effort: an unwritable state dir only
/// costs the fallback).
pub fn load_enforced(config: &Path, state_dir: &Path) -> Enforced {
    let current = load(config);
    if let (Some(c), false) = (&current.config, current.diagnostics.has_errors()) {
        let _ = save(config, state_dir);
        return Enforced {
            config: Some(c.clone()),
            current,
            from_snapshot: false,
        };
    }
    match load_snapshot(state_dir) {
        Some((snap, _)) => Enforced {
            config: snap.config,
            current,
            from_snapshot: true,
        },
        None => Enforced {
            config: None,
            current,
            from_snapshot: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_edit_falls_back_to_the_last_good_files() {
        let d = tempfile::tempdir().expect("tmp");
        let cfg_dir = d.path().join("etc");
        let state = d.path().join("state");
        std::fs::create_dir_all(cfg_dir.join("groups")).expect("mkdir");
        let cfg = cfg_dir.join(MAIN);
        std::fs::write(
            &cfg,
            "defaults: {memory: 1g}\ngroups:\n  student:\n    aggregate: {memory_max: 2G}\n",
        )
        .expect("write");
        std::fs::write(cfg_dir.join("groups/student.members"), "alice\n").expect("write");
        let e = load_enforced(&cfg, &state);
        assert!(!e.from_snapshot);
        assert!(snapshot_path(&state).exists());
        // Broken edit: the snapshot is enforced, with the members file it had.
        std::fs::write(&cfg, "groups: [broken\n").expect("write");
        let e = load_enforced(&cfg, &state);
        assert!(e.from_snapshot);
        assert!(e.current.diagnostics.has_errors());
        let c = e.config.expect("snapshot config");
        let alice = c.resolve("alice");
        assert_eq!(alice.group, "student");
        assert!(alice.aggregate.is_some());
        // No snapshot at all: nothing to enforce with.
        let e = load_enforced(&cfg, &d.path().join("empty"));
        assert!(e.config.is_none());
    }
}
