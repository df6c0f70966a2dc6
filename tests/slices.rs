//! `ds01 slices plan|apply` in temp dirs: fresh apply, idempotence, changes,
//! removals, foreign files, --user, enforcement off, crash safety, daemon-reload,
//! golden files and systemd-analyze verify.

mod common;
use common::Fixture;
use ds01::slices;
use predicates::prelude::*;
use std::path::{Path, PathBuf};

const CFG: &str = "\
defaults:
  max_cpus: 8
  memory: 16g
default_group: student
groups:
  student:
    aggregate:
      cpu_quota: \"9600%\"
      memory_max: \"96G\"
      memory_high: \"86G\"
      tasks_max: 12288
      gpu_limit: 2.0
  admin:
    members: [boss]
";

struct Env {
    f: Fixture,
    sd: PathBuf,
    reloads: PathBuf,
    systemctl: PathBuf,
}

impl Env {
    fn new(cfg: &str, members: &str) -> Env {
        let f = Fixture::new(cfg);
        f.file("groups/student.members", members);
        let sd = f.path().join("systemd");
        let reloads = f.path().join("reloads.log");
        let systemctl = f.path().join("fake-systemctl");
        std::fs::write(
            &systemctl,
            format!("#!/bin/sh\necho \"$@\" >> {}\n", reloads.display()),
        )
        .expect("write fake systemctl");
        chmod_x(&systemctl);
        Env {
            f,
            sd,
            reloads,
            systemctl,
        }
    }

    fn run(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        let mut c = self.f.ds01(args);
        c.env("DS01_SYSTEMD_DIR", &self.sd)
            .env("DS01_SYSTEMCTL", &self.systemctl)
            .env("DS01_CGROUP_ROOT", self.f.path().join("no-cgroup"));
        c.assert()
    }

    fn reload_count(&self) -> usize {
        std::fs::read_to_string(&self.reloads)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.sd.join(rel)).ok()
    }

    fn set_config(&self, cfg: &str) {
        std::fs::write(self.f.config(), cfg).expect("write config");
    }
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

const ALICE_DROPIN: &str = "ds01-student-alice.slice.d/10-resource-limits.conf";

#[test]
fn fresh_apply_writes_every_file_and_reloads_once() {
    let e = Env::new(CFG, "alice\nbob\n");
    e.run(&["slices", "apply"])
        .success()
        .stdout(predicate::str::contains(
            "applied: 8 to create, 0 to change, 0 to remove, 0 unchanged",
        ));
    assert_eq!(e.reload_count(), 1);
    let dropin = e.read(ALICE_DROPIN).expect("alice drop-in");
    assert!(dropin.starts_with(slices::MARKER));
    assert!(
        dropin
            .ends_with("[Slice]\nCPUQuota=9600%\nMemoryMax=96G\nMemoryHigh=86G\nTasksMax=12288\n")
    );
    for f in [
        "ds01.slice",
        "ds01-student.slice",
        "ds01-admin.slice",
        "ds01-student-bob.slice",
        "ds01-admin-boss.slice",
    ] {
        assert!(e.read(f).is_some(), "{f}");
    }
    // Admins have no aggregate: a slice, no drop-in.
    assert!(
        e.read("ds01-admin-boss.slice.d/10-resource-limits.conf")
            .is_none()
    );
}

#[test]
fn second_apply_changes_nothing_and_does_not_reload() {
    let e = Env::new(CFG, "alice\n");
    e.run(&["slices", "apply"]).success();
    e.run(&["slices", "apply"])
        .success()
        .stdout(predicate::str::contains(
            "nothing to do: 0 to create, 0 to change, 0 to remove, 6 unchanged",
        ));
    assert_eq!(e.reload_count(), 1);
    e.run(&["slices", "plan", "--exit-code"]).success();
}

#[test]
fn changed_limit_is_planned_as_a_diff_and_applied() {
    let e = Env::new(CFG, "alice\n");
    e.run(&["slices", "apply"]).success();
    e.set_config(&CFG.replace("memory_max: \"96G\"", "memory_max: \"128G\""));
    e.run(&["slices", "plan"])
        .success()
        .stdout(predicate::str::contains(
            "-MemoryMax=96G\n+MemoryMax=128G\n",
        ))
        .stdout(predicate::str::contains(
            "0 to create, 1 to change, 0 to remove, 5 unchanged",
        ));
    e.run(&["slices", "plan", "--exit-code"]).code(1);
    e.run(&["slices", "apply"]).success();
    assert!(
        e.read(ALICE_DROPIN)
            .expect("drop-in")
            .contains("MemoryMax=128G\n")
    );
    assert_eq!(e.reload_count(), 2);
}

#[test]
fn removed_user_loses_unit_and_dropin() {
    let e = Env::new(CFG, "alice\nbob\n");
    e.run(&["slices", "apply"]).success();
    e.f.file("groups/student.members", "alice\n");
    e.run(&["slices", "apply"])
        .success()
        .stdout(predicate::str::contains(
            "0 to create, 0 to change, 2 to remove",
        ));
    assert!(e.read("ds01-student-bob.slice").is_none());
    assert!(
        !e.sd.join("ds01-student-bob.slice.d").exists(),
        "empty .d dir removed"
    );
    assert!(e.read(ALICE_DROPIN).is_some());
}

#[test]
fn foreign_files_are_left_alone() {
    let e = Env::new(CFG, "alice\n");
    std::fs::create_dir_all(e.sd.join("ds01-student-alice.slice.d")).expect("mkdir");
    std::fs::write(e.sd.join(ALICE_DROPIN), "[Slice]\nMemoryMax=1G\n").expect("write");
    std::fs::write(
        e.sd.join("ds01-student-ghost.slice"),
        "[Unit]\nDescription=hand-made\n",
    )
    .expect("write");
    std::fs::write(
        e.sd.join("ds01-student-alice.slice.d/20-admin.conf"),
        "[Slice]\n",
    )
    .expect("write");
    e.run(&["slices", "apply"])
        .success()
        .stdout(predicate::str::contains(
            "10-resource-limits.conf is not managed by ds01 (no marker line); left alone",
        ))
        .stdout(predicate::str::contains(
            "ds01-student-ghost.slice is not managed by ds01",
        ));
    assert_eq!(
        e.read(ALICE_DROPIN).as_deref(),
        Some("[Slice]\nMemoryMax=1G\n")
    );
    assert!(e.read("ds01-student-ghost.slice").is_some());
    assert!(e.read("ds01-student-alice.slice.d/20-admin.conf").is_some());
}

#[test]
fn user_flag_touches_one_user_and_removes_nothing() {
    let e = Env::new(CFG, "alice\nbob\n");
    e.run(&["slices", "apply", "--user", "alice"])
        .success()
        .stdout(predicate::str::contains(
            "2 to create, 0 to change, 0 to remove, 0 unchanged",
        ));
    assert!(e.read(ALICE_DROPIN).is_some());
    assert!(e.read("ds01-student-bob.slice").is_none());
    assert!(e.read("ds01.slice").is_none());
    // A stale ds01 file of another user survives --user.
    e.run(&["slices", "apply"]).success();
    e.f.file("groups/student.members", "alice\n");
    e.run(&["slices", "apply", "--user", "alice"]).success();
    assert!(e.read("ds01-student-bob.slice").is_some());
}

#[test]
fn enforcement_off_lifts_limits_but_keeps_slices() {
    let e = Env::new(CFG, "alice\n");
    e.run(&["slices", "apply"]).success();
    e.set_config(&format!("{CFG}enforcement:\n  aggregate_limits: false\n"));
    e.run(&["slices", "apply"])
        .success()
        .stdout(predicate::str::contains(
            "enforcement.aggregate_limits is false",
        ))
        .stdout(predicate::str::contains(
            "0 to create, 0 to change, 1 to remove",
        ));
    assert!(e.read(ALICE_DROPIN).is_none());
    assert!(e.read("ds01-student-alice.slice").is_some());
}

#[test]
fn names_are_sanitized() {
    let e = Env::new(CFG, "h.baker@uni.example\n");
    e.run(&["slices", "apply"]).success();
    let unit = e
        .read("ds01-student-h_baker.slice")
        .expect("sanitized unit");
    assert!(unit.contains("Description=ds01 user h.baker@uni.example (group student)"));
    assert!(
        e.read("ds01-student-h_baker.slice.d/10-resource-limits.conf")
            .is_some()
    );
}

#[test]
fn invalid_config_is_refused_with_the_check_messages() {
    let e = Env::new(
        &CFG.replace("memory_high: \"86G\"", "memory_high: \"97G\""),
        "alice\n",
    );
    e.run(&["slices", "apply"])
        .code(2)
        .stderr(predicate::str::contains(
            "memory_high (97G) is above memory_max (96G)",
        ));
    assert!(!e.sd.exists());
}

#[test]
fn daemon_reload_failure_reports_systemds_message_and_keeps_files() {
    let e = Env::new(CFG, "alice\n");
    std::fs::write(
        &e.systemctl,
        "#!/bin/sh\necho 'System has not been booted with systemd' >&2\nexit 1\n",
    )
    .expect("write");
    e.run(&["slices", "apply"])
        .code(1)
        .stderr(predicate::str::contains("daemon-reload` failed"))
        .stderr(predicate::str::contains(
            "System has not been booted with systemd",
        ));
    assert!(e.read(ALICE_DROPIN).is_some());
}

#[test]
fn no_reload_flag() {
    let e = Env::new(CFG, "alice\n");
    e.run(&["slices", "apply", "--no-reload"]).success();
    assert_eq!(e.reload_count(), 0);
}

#[test]
fn dry_run_is_plan() {
    let e = Env::new(CFG, "alice\n");
    e.run(&["slices", "apply", "--dry-run"])
        .success()
        .stdout(predicate::str::contains("+++ "))
        .stdout(predicate::str::contains("6 to create"));
    assert!(!e.sd.exists());
}

#[test]
fn lowering_memory_max_below_usage_warns() {
    let e = Env::new(CFG, "alice\n");
    let cg =
        e.f.path()
            .join("cg/ds01-student.slice/ds01-student-alice.slice");
    std::fs::create_dir_all(&cg).expect("mkdir");
    std::fs::write(cg.join("memory.current"), format!("{}\n", 100u64 << 30)).expect("write");
    let mut c = e.f.ds01(&["slices", "apply"]);
    c.env("DS01_SYSTEMD_DIR", &e.sd)
        .env("DS01_SYSTEMCTL", &e.systemctl)
        .env("DS01_CGROUP_ROOT", e.f.path().join("cg"));
    c.assert().success().stderr(predicate::str::contains(
        "warning: alice uses 100 GiB, new MemoryMax is 96 GiB",
    ));
}

#[test]
fn crash_between_write_and_rename_leaves_old_or_new_never_partial() {
    let e = Env::new(CFG, "alice\n");
    e.run(&["slices", "apply"]).success();
    let old = e.read(ALICE_DROPIN).expect("old");
    e.set_config(&CFG.replace("memory_max: \"96G\"", "memory_max: \"120G\""));
    let cfg = ds01::config::load(&e.f.config()).config.expect("config");
    let plan = slices::plan(&e.sd, &slices::desired_all(&cfg)).expect("plan");
    // "Crash" (panic, skipping every cleanup) after the temp file is written.
    let crashed = std::panic::catch_unwind(|| {
        let _ = slices::apply_with(&e.sd, &plan, &|_tmp| panic!("simulated crash"));
    });
    assert!(crashed.is_err());
    assert_eq!(
        e.read(ALICE_DROPIN).as_deref(),
        Some(old.as_str()),
        "target untouched"
    );
    // The next apply cleans the leftover temp file and finishes the job.
    e.run(&["slices", "apply"])
        .success()
        .stdout(predicate::str::contains(
            "temporary file(s) from an interrupted apply will be removed",
        ));
    assert!(
        e.read(ALICE_DROPIN)
            .expect("new")
            .contains("MemoryMax=120G")
    );
    let leftovers: Vec<_> = walk(&e.sd)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".ds01-tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every file under `dir` with its content.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    walk(dir)
        .into_iter()
        .filter(|p| p.is_file() && !p.to_string_lossy().contains(".ds01-tmp."))
        .map(|p| {
            let t = std::fs::read_to_string(&p).expect("read");
            (p, t)
        })
        .collect()
}

#[test]
fn sigkill_at_every_step_of_apply_then_the_next_run_converges() {
    // From one config to another that changes one user, adds one and removes one:
    // creates, changes and removals in one apply. A foreign file must survive.
    let before = "alice\ncarol\n";
    let after = "alice\nbob\n";
    let new_cfg = CFG.replace("memory_max: \"96G\"", "memory_max: \"120G\"");
    // The outcome of an uninterrupted apply.
    let clean = Env::new(CFG, before);
    clean.run(&["slices", "apply"]).success();
    clean.f.file("groups/student.members", after);
    clean.set_config(&new_cfg);
    clean.run(&["slices", "apply"]).success();
    let want: std::collections::BTreeMap<String, String> = snapshot(&clean.sd)
        .into_iter()
        .map(|(p, t)| {
            (
                p.strip_prefix(&clean.sd)
                    .expect("rel")
                    .display()
                    .to_string(),
                t,
            )
        })
        .collect();
    let mut crashed_at = Vec::new();
    for (point, max) in [
        ("slices-staged", 1),
        ("slices-rename", 12),
        ("slices-remove", 6),
    ] {
        for n in 1..=max {
            let e = Env::new(CFG, before);
            e.run(&["slices", "apply"]).success();
            std::fs::write(e.sd.join("foreign.conf"), "admin's own\n").expect("write");
            e.f.file("groups/student.members", after);
            e.set_config(&new_cfg);
            let out =
                e.f.ds01(&["slices", "apply"])
                    .env("DS01_SYSTEMD_DIR", &e.sd)
                    .env("DS01_SYSTEMCTL", &e.systemctl)
                    .env("DS01_CGROUP_ROOT", e.f.path().join("no-cgroup"))
                    .env("DS01_TEST_FAULT", format!("{point}:{n}"))
                    .output()
                    .expect("run");
            use std::os::unix::process::ExitStatusExt;
            if out.status.signal() != Some(9) {
                // Fewer steps of this kind than `n`: the apply simply finished.
                assert!(out.status.success(), "{point}:{n}: {out:?}");
                continue;
            }
            crashed_at.push(format!("{point}:{n}"));
            // Whatever the crash left, every unit file is whole (old or new).
            for (p, t) in snapshot(&e.sd) {
                if p.extension().is_some_and(|x| x == "conf" || x == "slice") {
                    assert!(
                        t.ends_with('\n') && !t.is_empty(),
                        "{point}:{n} {}: {t:?}",
                        p.display()
                    );
                }
            }
            e.run(&["slices", "apply"]).success();
            let got: std::collections::BTreeMap<String, String> = snapshot(&e.sd)
                .into_iter()
                .map(|(p, t)| (p.strip_prefix(&e.sd).expect("rel").display().to_string(), t))
                .filter(|(p, _)| p != "foreign.conf")
                .collect();
            assert_eq!(
                got, want,
                "after a crash at {point}:{n}, the re-run converges"
            );
            assert_eq!(
                std::fs::read_to_string(e.sd.join("foreign.conf")).expect("foreign"),
                "admin's own\n",
                "nothing foreign touched"
            );
            e.run(&["slices", "plan"])
                .success()
                .stdout(predicate::str::contains(
                    "0 to create, 0 to change, 0 to remove",
                ));
        }
    }
    assert!(crashed_at.len() >= 4, "crashed at {crashed_at:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn golden_rendered_units() {
    let e = Env::new(CFG, "h.baker@uni.example\n");
    e.run(&["slices", "apply"]).success();
    insta::assert_snapshot!("root_slice", e.read("ds01.slice").expect("root"));
    insta::assert_snapshot!("group_slice", e.read("ds01-student.slice").expect("group"));
    insta::assert_snapshot!(
        "user_slice",
        e.read("ds01-student-h_baker.slice").expect("user")
    );
    insta::assert_snapshot!(
        "user_dropin",
        e.read("ds01-student-h_baker.slice.d/10-resource-limits.conf")
            .expect("drop-in")
    );
}

#[test]
fn generated_units_pass_systemd_analyze_verify() {
    let e = Env::new(
        &format!(
            "{CFG}user_overrides:\n  zed:\n    aggregate:\n      memory_max: null\n      tasks_max: infinity\n      cpu_quota: \"12.5%\"\n"
        ),
        "alice\nh.baker@uni.example\n",
    );
    e.run(&["slices", "apply"]).success();
    let units: Vec<PathBuf> = walk(&e.sd)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "slice"))
        .collect();
    assert_eq!(units.len(), 7);
    let Some((ok, said)) = common::systemd_verify(&e.sd, &units) else {
        return;
    };
    assert!(ok && said.trim().is_empty(), "verify said:\n{said}");
    // A broken drop-in is caught by the same check (the check can fail).
    std::fs::write(e.sd.join(ALICE_DROPIN), "[Slice]\nMemoryMax=96X\n").expect("write");
    let (_, said) = common::systemd_verify(&e.sd, &[e.sd.join("ds01-student-alice.slice")])
        .expect("still installed");
    assert!(said.contains("96X"), "{said}");
}

/// Unmounts a test's tmpfs however the test ends.
struct Umount(PathBuf);
impl Drop for Umount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// `slices apply` onto a real full file system (a 64 KiB tmpfs as the systemd
/// dir): it fails saying the disk is full, every unit is as it was (no temp file, no
/// half-written unit), and with room again the next run converges.
#[test]
fn apply_on_a_full_file_system_changes_nothing_and_says_so() {
    let e = Env::new(CFG, "alice\ncarol\n");
    std::fs::create_dir_all(&e.sd).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&e.sd)
        .status()
        .is_ok_and(|s| s.success());
    if !common::require(
        mounted,
        "root and mount(8), for a tmpfs that really fills up",
    ) {
        return;
    }
    let _umount = Umount(e.sd.clone());
    e.run(&["slices", "apply"]).success();
    let before = snapshot(&e.sd);
    // Fill it to the last block.
    let fill = e.sd.join("fill");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&fill).expect("fill");
        let block = [b'x'; 4096];
        while f.write_all(&block).is_ok() {}
        let mut small = [b'x'; 1];
        while f.write_all(&small).is_ok() {
            small[0] = b'y';
        }
    }
    e.f.file("groups/student.members", "alice\nbob\n");
    e.set_config(&CFG.replace("memory_max: \"96G\"", "memory_max: \"120G\""));
    e.run(&["slices", "apply"])
        .code(1)
        .stderr(predicate::str::contains("No space left on device"))
        .stderr(predicate::str::contains("nothing was changed"));
    let mut after = snapshot(&e.sd);
    after.remove(&fill);
    let mut want = before.clone();
    want.remove(&fill);
    assert_eq!(after, want, "every unit as before the failed apply");
    let leftovers: Vec<PathBuf> = walk(&e.sd)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".ds01-tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    std::fs::remove_file(&fill).expect("free the space");
    e.run(&["slices", "apply"]).success();
    e.run(&["slices", "plan", "--exit-code"]).success();
}
