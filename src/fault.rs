//! Crash points for the fault tests: `DS01_TEST_FAULT=<point>:<n>` kills the
//! process with SIGKILL the n-th time it reaches `point` (1-based), so a test can
//! crash ds01 between any two steps of a write and check that the next run
//! converges. Unset, a point costs one load of a cached `Option`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// `<point>:<number>` from the environment variable `var`: the point's name and the
/// number, if one is given and valid.
fn env_point(var: &str) -> Option<(String, Option<u64>)> {
    let v = std::env::var(var).ok()?;
    Some(match v.rsplit_once(':') {
        Some((name, n)) => (name.to_string(), n.parse().ok()),
        None => (v, None),
    })
}

fn spec() -> &'static Option<(String, u64)> {
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    SPEC.get_or_init(|| env_point("DS01_TEST_FAULT").map(|(name, n)| (name, n.unwrap_or(1))))
}

/// A crash point named `name`.
pub fn point(name: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    if let Some((want, at)) = spec()
        && want == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *at
    {
        // SAFETY: kill(2) on our own pid; nothing after it runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// A pause point for the race tests: `DS01_TEST_PAUSE=<point>:<ms>` sleeps that
/// long each time the process reaches `point`, widening a window between two
/// steps so a test can act inside it. Unset, a point costs one load.
pub fn pause(name: &str) {
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let (name, ms) = env_point("DS01_TEST_PAUSE")?;
        Some((name, ms?))
    });
    if let Some((want, ms)) = spec
        && want == name
    {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}
