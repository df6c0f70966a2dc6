//! Every path ds01 touches, with production defaults (COMPAT.md "Default paths") and
//! overrides from flags and environment variables, so tests run unprivileged in a
//! temp dir.

use std::path::{Path, PathBuf};

pub const ETC_CONFIG: &str = "/etc/ds01/resource-limits.yaml";
pub const OPT_CONFIG: &str = "/opt/ds01-infra/config/runtime/resource-limits.yaml";

/// The config file: `--config` / `DS01_CONFIG` when given, else
/// `/etc/ds01/resource-limits.yaml` if it exists, else the `/opt/ds01-infra` one.
pub fn config_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    // clap reads DS01_CONFIG for the subcommands; the `docker` link has no clap.
    if let Some(p) = std::env::var_os("DS01_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    first_existing(&[Path::new(ETC_CONFIG), Path::new(OPT_CONFIG)])
}

fn first_existing(candidates: &[&Path]) -> PathBuf {
    candidates
        .iter()
        .find(|p| p.exists())
        .or(candidates.first())
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
}

pub const SYSTEMD_DIR: &str = "/etc/systemd/system";

/// The `ds01.slice` directory in the cgroup v2 tree: `/sys/fs/cgroup/ds01.slice` on a
/// pure v2 host, `/sys/fs/cgroup/unified/ds01.slice` on a hybrid one.
pub fn cgroup_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && unified.join("cgroup.controllers").exists()
    {
        unified.join("ds01.slice")
    } else {
        PathBuf::from("/sys/fs/cgroup/ds01.slice")
    }
}

/// ds01's state directory: `DS01_STATE_DIR`, else `/var/lib/ds01`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("DS01_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/ds01"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_wins() {
        assert_eq!(
            config_path(Some(Path::new("/x.yaml"))),
            PathBuf::from("/x.yaml")
        );
    }

    #[test]
    fn falls_back_to_first_candidate() {
        let none = first_existing(&[Path::new("/nonexistent/a"), Path::new("/nonexistent/b")]);
        assert_eq!(none, PathBuf::from("/nonexistent/a"));
        let tmp = tempfile::tempdir().expect("tempdir");
        let b = tmp.path().join("b");
        std::fs::write(&b, "").expect("write");
        assert_eq!(first_existing(&[Path::new("/nonexistent/a"), &b]), b);
    }
}
