//! The deployment files in deploy/: systemd units verify, the cron line is valid.

mod common;
use std::path::Path;

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn systemd_units_pass_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = assert_cmd::cargo::cargo_bin("ds01");
    let mut units = Vec::new();
    for name in [
        "ds01-collect.service",
        "ds01-collect.timer",
        "ds01-monitor.service",
    ] {
        let text = std::fs::read_to_string(repo("deploy/systemd").join(name)).expect("read unit");
        // Point ExecStart at the binary under test (not installed at /usr/bin here).
        let text = text.replace("/usr/bin/ds01", &bin.display().to_string());
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        units.push(p);
    }
    let Some((ok, said)) = common::systemd_verify(dir.path(), &units) else {
        return;
    };
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify said:\n{said}"
    );
}

#[test]
fn cron_file_runs_collect_every_minute_as_root() {
    let text = std::fs::read_to_string(repo("deploy/cron.d/ds01-resource-monitor")).expect("read");
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let fields: Vec<&str> = jobs[0].split_whitespace().collect();
    assert_eq!(&fields[..6], ["*", "*", "*", "*", "*", "root"]);
    assert_eq!(&fields[6..8], ["ds01", "collect"]);
    assert!(
        text.ends_with('\n'),
        "cron ignores a last line without a newline"
    );
}

#[test]
fn install_prefix_lays_out_the_package_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    common::ds01()
        .args(["install", "--prefix"])
        .arg(root)
        .assert()
        .success();
    for rel in [
        "usr/bin/ds01",
        "lib/systemd/system/ds01-collect.service",
        "lib/systemd/system/ds01-collect.timer",
        "usr/share/ds01/cron.d/ds01-resource-monitor",
        "etc/profile.d/ds01-quota-greeting.sh",
        "etc/logrotate.d/ds01",
        "etc/ds01/resource-limits.yaml",
        "usr/share/man/man1/ds01.1",
        "usr/share/man/man1/ds01-slices.1",
        "usr/share/bash-completion/completions/ds01",
        "usr/share/zsh/vendor-completions/_ds01",
        "var/lib/ds01/alerts",
        "var/log/ds01",
    ] {
        assert!(root.join(rel).exists(), "{rel} missing");
    }
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/ds01-events")).expect("link"),
        Path::new("ds01")
    );
    let man = std::fs::read_to_string(root.join("usr/share/man/man1/ds01.1")).expect("man");
    assert!(
        man.contains(".TH ds01") && man.contains("slices"),
        "a real man page"
    );
    // The installed example config is valid.
    common::ds01()
        .args(["--config"])
        .arg(root.join("etc/ds01/resource-limits.yaml"))
        .args(["config", "check"])
        .assert()
        .success();
    // An edited config survives a second install.
    std::fs::write(
        root.join("etc/ds01/resource-limits.yaml"),
        "default_group: g\ngroups: {g: {}}\n",
    )
    .expect("edit");
    common::ds01()
        .args(["install", "--prefix"])
        .arg(root)
        .assert()
        .success();
    assert!(
        std::fs::read_to_string(root.join("etc/ds01/resource-limits.yaml"))
            .expect("read")
            .starts_with("default_group: g")
    );
}

#[test]
fn docker_wrapper_opt_in_and_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let link = root.join("usr/local/bin/docker");
    common::ds01()
        .args(["install", "--docker-wrapper", "--prefix"])
        .arg(root)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        Path::new("/usr/bin/ds01")
    );
    common::ds01()
        .args(["install", "--docker-wrapper", "--remove", "--prefix"])
        .arg(root)
        .assert()
        .success();
    assert!(!link.exists() && std::fs::symlink_metadata(&link).is_err());
    // Somebody's own docker script there is never replaced.
    std::fs::write(&link, "#!/bin/sh\n").expect("write");
    common::ds01()
        .args(["install", "--docker-wrapper", "--prefix"])
        .arg(root)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("exists and is not a link"));
}

#[test]
fn logrotate_keeps_the_names_the_event_reader_expects() {
    let text = std::fs::read_to_string(repo("deploy/logrotate.d/ds01")).expect("read");
    for word in [
        "daily",
        "copytruncate",
        "compress",
        "delaycompress",
        "/var/log/ds01/events.jsonl",
    ] {
        assert!(text.contains(word), "{word}");
    }
}
