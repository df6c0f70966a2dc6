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
            (usage, None)
        }
        Err(e) => (usage, Some(e)),
    }
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
