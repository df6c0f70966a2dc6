//! What a user has running now, for the aggregate checks: memory and tasks from
//! their slice (cgroupfs), containers and their GPUs from the Engine API. Shared by
//! the wrapper and the proxy.

use super::Usage;
use super::engine::{Engine, EngineError};
use super::gpu;
use crate::config::Resolved;
use std::path::Path;

/// The user's usage. The Engine API part is `None` when it cannot be read; the
/// error comes back so the caller can say so (the container and GPU checks are then
/// skipped, loudly). With `gpus`, each container's GPU use comes from its device
/// requests (one inspect per container).
pub async fn usage_of_async(
    user: &Resolved,
    engine: &Engine,
    cgroup_root: &Path,
    gpus: Option<&gpu::Inventory>,
) -> (Usage, Option<EngineError>) {
    let dir = crate::cgroup::CgroupDir::new(user.cgroup_path(cgroup_root));
    let mut usage = Usage {
        memory_bytes: dir.memory_current().ok().flatten().unwrap_or(0),
        tasks: dir.pids_current().ok().flatten().unwrap_or(0),
        containers: None,
        held_gpus: Vec::new(),
    };
    match engine.user_containers_async(&user.slice_user).await {
        Ok(list) => {
            let mut out = Vec::new();
            for c in list {
                let id = c
                    .get("Id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                let name = c.pointer("/Names/0").and_then(|v| v.as_str()).map_or_else(
                    || id.chars().take(12).collect(),
                    |n| n.trim_start_matches('/').to_string(),
                );
                let held = match gpus {
                    Some(inv) => engine
                        .inspect_async(&id)
                        .await
                        .map(|i| gpu::container_gpus(&i, inv))
                        .unwrap_or(gpu::GpuUse::NONE),
                    None => gpu::GpuUse::NONE,
                };
                out.push((name, held));
            }
            usage.containers = Some(out);
            if let (Some(inv), Some(hold)) = (gpus, user.limits.gpu_hold_after_stop_h) {
                usage.held_gpus = held_gpus(user, engine, inv, hold, jiff::Timestamp::now()).await;
            }
            (usage, None)
        }
        Err(e) => (usage, Some(e)),
    }
}

/// The user's stopped containers that still hold GPUs: stopped less than `hold`
/// ago (`null` = until removed). Best effort: an unreadable answer holds nothing.
async fn held_gpus(
    user: &Resolved,
    engine: &Engine,
    inv: &gpu::Inventory,
    hold: crate::units::Limit<f64>,
    now: jiff::Timestamp,
) -> Vec<(String, gpu::GpuUse)> {
    let Ok(all) = engine
        .containers_labelled_all_async(&format!("ds01.user={}", user.slice_user))
        .await
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in all {
        if c.get("State").and_then(|v| v.as_str()) != Some("exited") {
            continue;
        }
        let Some(id) = c.get("Id").and_then(|v| v.as_str()) else {
            continue;
        };
        let Ok(i) = engine.inspect_async(id).await else {
            continue;
        };
        let g = gpu::container_gpus(&i, inv);
        if g.devices == 0 {
            continue;
        }
        let finished: Option<jiff::Timestamp> = i
            .pointer("/State/FinishedAt")
            .and_then(|v| v.as_str())
            .and_then(|t| t.parse().ok());
        let within = match (hold, finished) {
            (crate::units::Limit::Max, _) => true,
            (crate::units::Limit::Value(h), Some(f)) => (now - f).as_secs_f64() < h * 3600.0,
            (crate::units::Limit::Value(_), None) => false,
        };
        if within {
            let name = i
                .get("Name")
                .and_then(|v| v.as_str())
                .map_or(id, |n| n.trim_start_matches('/'))
                .to_string();
            out.push((name, g));
        }
    }
    out
}

/// [`usage_of_async`] for blocking callers (the wrapper).
pub fn usage_of(
    user: &Resolved,
    engine: &Engine,
    cgroup_root: &Path,
    gpus: Option<&gpu::Inventory>,
) -> (Usage, Option<EngineError>) {
    match super::engine::block_on(usage_of_async(user, engine, cgroup_root, gpus)) {
        Ok(r) => r,
        Err(e) => (Usage::default(), Some(e)),
    }
}

/// The cgroup root the wrapper and proxy read usage from: `DS01_CGROUP_ROOT`, else
/// the default.
pub fn cgroup_root() -> std::path::PathBuf {
    std::env::var_os("DS01_CGROUP_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(crate::paths::cgroup_root)
}
