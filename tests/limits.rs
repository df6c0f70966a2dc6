//! Resolution order, alias table, null vs absent, and every `ds01 limits` form.

mod common;
use common::{Fixture, require, shared_dir};
use ds01::config::{Membership, load};
use ds01::units::Limit;
use predicates::prelude::*;

const CFG: &str = "\
defaults:
  max_cpus: 8
  memory: 16g
  memory_swap: 16g
  shm_size: 4g
  pids_limit: 4096
  max_containers_per_user: 3
  max_gpu_equivalents: 1.0
default_group: student
groups:
  student:
    members: [inline_student]
    max_gpu_equivalents: 2.0
    aggregate:
      cpu_quota: \"2400%\"
      memory_max: \"48G\"
      memory_high: \"43G\"
      tasks_max: 12288
      gpu_limit: 2.0
  researcher:
    max_cpus: 16
    aggregate:
      cpu_quota: \"8000%\"
      memory_max: \"160G\"
  admin:
    members: [boss]
    max_gpu_equivalents: null
    max_containers_per_user: null
user_overrides:
  h_baker:
    max_cpus: 4
  carol:
    memory: 32g
    memory_swap: 32g
  zed:
    aggregate:
      memory_max: \"8G\"
";

fn fixture() -> Fixture {
    let f = Fixture::new(CFG);
    f.file(
        "groups/student.members",
        "# students\nalice   # first\nh.baker@uni.example\n\n",
    );
    f.file("groups/researcher.members", "carol\n");
    f.file(
        "user-overrides.yaml",
        "carol:\n  memory: 64g\n  memory_swap: 64g\n  shm_size: 8g\n",
    );
    f
}

fn config(f: &Fixture) -> ds01::config::Config {
    let loaded = load(&f.config());
    assert!(
        !loaded.diagnostics.has_errors(),
        "{:?}",
        loaded.diagnostics.items
    );
    loaded.config.expect("config")
}

#[test]
fn member_file_and_inline_members_both_count() {
    let f = fixture();
    let c = config(&f);
    let alice = c.resolve("alice");
    assert_eq!(alice.group, "student");
    match &alice.membership {
        Membership::Member(m) => {
            assert!(m.from_members_file);
            assert_eq!(m.line, 2);
        }
        other => panic!("expected a member, got {other:?}"),
    }
    let inline = c.resolve("inline_student");
    assert_eq!(inline.group, "student");
    assert!(matches!(&inline.membership, Membership::Member(m) if !m.from_members_file));
}

#[test]
fn unknown_user_gets_the_default_group() {
    let c = config(&fixture());
    let r = c.resolve("stranger");
    assert_eq!(r.group, "student");
    assert_eq!(r.membership, Membership::Default);
    assert_eq!(r.slice(), "ds01-student-stranger.slice");
    assert_eq!(r.limits.max_gpu_equivalents, Some(Limit::Value(2.0)));
}

#[test]
fn override_by_raw_then_sanitized_name() {
    let c = config(&fixture());
    // h.baker@uni.example has no override under its raw name; h_baker matches.
    let r = c.resolve("h.baker@uni.example");
    assert_eq!(r.override_key.as_deref(), Some("h_baker"));
    assert_eq!(r.limits.max_cpus, Some(Limit::Value(4.0)));
    assert_eq!(r.slice(), "ds01-student-h_baker.slice");
    // Group limits under the override, defaults under the group.
    assert_eq!(r.limits.max_gpu_equivalents, Some(Limit::Value(2.0)));
    assert_eq!(r.limits.memory, Some(Limit::Value(16 << 30)));
    // The aggregate is the group's: the override has none.
    assert_eq!(
        r.aggregate.as_ref().and_then(|a| a.memory_max),
        Some(Limit::Value(48 << 30))
    );
}

#[test]
fn overrides_file_wins_key_by_key() {
    let c = config(&fixture());
    let r = c.resolve("carol");
    assert_eq!(r.group, "researcher");
    assert_eq!(r.limits.memory, Some(Limit::Value(64 << 30)));
    assert_eq!(r.limits.shm_size, Some(Limit::Value(8 << 30)));
    assert_eq!(r.limits.max_cpus, Some(Limit::Value(16.0)));
}

#[test]
fn override_aggregate_replaces_the_groups() {
    let c = config(&fixture());
    let r = c.resolve("zed");
    let a = r.aggregate.expect("override aggregate");
    assert_eq!(a.memory_max, Some(Limit::Value(8 << 30)));
    assert_eq!(a.cpu_quota, None, "not merged with the group's aggregate");
}

#[test]
fn null_is_unlimited_and_absent_is_unset() {
    let c = config(&fixture());
    let boss = c.resolve("boss");
    assert_eq!(boss.group, "admin");
    assert_eq!(boss.limits.max_gpu_equivalents, Some(Limit::Max));
    assert_eq!(boss.limits.max_containers_per_user, Some(Limit::Max));
    assert_eq!(boss.limits.idle_timeout_h, None);
    assert!(boss.aggregate.is_none());
}

#[test]
fn gpu_alias_table() {
    for (key, canonical) in [
        ("max_gpu_equivalents", true),
        ("max_gpu_slots", true),
        ("max_gpus_per_user", true),
        ("max_mig_instances", true),
        ("max_gpu_slots_per_container", false),
        ("max_gpus_per_container", false),
        ("max_mig_per_container", false),
    ] {
        let f = Fixture::new(&format!("default_group: g\ngroups:\n  g:\n    {key}: 3\n"));
        let c = config(&f);
        let r = c.resolve("anyone");
        if canonical {
            assert_eq!(
                r.limits.max_gpu_equivalents,
                Some(Limit::Value(3.0)),
                "{key}"
            );
        } else {
            assert_eq!(
                r.limits.max_gpu_slots_per_container,
                Some(Limit::Value(3)),
                "{key}"
            );
        }
    }
    // The newest name wins whatever the order in the file.
    let f = Fixture::new(
        "default_group: g\ngroups:\n  g:\n    max_gpu_equivalents: 1.5\n    max_mig_instances: 7\n",
    );
    assert_eq!(
        config(&f).resolve("x").limits.max_gpu_equivalents,
        Some(Limit::Value(1.5))
    );
    // An alias in a group overrides the canonical key in defaults (group overlays defaults).
    let f = Fixture::new(
        "defaults:\n  max_gpu_equivalents: 1\ndefault_group: g\ngroups:\n  g:\n    max_mig_instances: 4\n",
    );
    assert_eq!(
        config(&f).resolve("x").limits.max_gpu_equivalents,
        Some(Limit::Value(4.0))
    );
}

#[test]
fn all_users_lists_members_and_standalone_overrides_once() {
    let c = config(&fixture());
    let names: Vec<String> = c.all_users().into_iter().map(|r| r.user).collect();
    // h_baker is an alias of h.baker@uni.example, not a user of its own.
    for expected in [
        "alice",
        "h.baker@uni.example",
        "inline_student",
        "carol",
        "boss",
        "zed",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} in {names:?}"
        );
    }
    assert!(!names.contains(&"h_baker".to_string()));
    assert_eq!(names.len(), 6);
}

#[test]
fn cli_forms() {
    let f = fixture();
    f.ds01(&["limits", "alice", "--aggregate"]).assert().success().stdout(
        "{\"cpu_quota\":\"2400%\",\"memory_max\":\"48G\",\"memory_high\":\"43G\",\"tasks_max\":12288,\"gpu_limit\":2.0}\n",
    );
    f.ds01(&["limits", "boss", "--aggregate"])
        .assert()
        .success()
        .stdout("null\n");
    f.ds01(&["limits", "carol", "--group"])
        .assert()
        .success()
        .stdout("researcher\n");
    f.ds01(&["limits", "alice", "--docker-args"]).assert().success().stdout(
        "--cpus=8 --memory=16g --memory-swap=16g --shm-size=4g --pids-limit=4096 --cgroup-parent=ds01-student-alice.slice\n",
    );
    f.ds01(&["limits", "alice", "--max-gpus"])
        .assert()
        .success()
        .stdout("2\n");
    f.ds01(&["limits", "boss", "--max-gpus"])
        .assert()
        .success()
        .stdout("unlimited\n");
    f.ds01(&["limits", "alice", "--max-containers"])
        .assert()
        .success()
        .stdout("3\n");
    f.ds01(&["limits", "boss", "--max-containers"])
        .assert()
        .success()
        .stdout("unlimited\n");
    let out = f
        .ds01(&["limits", "h.baker@uni.example", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["slice"], "ds01-student-h_baker.slice");
    assert_eq!(v["override"], "h_baker");
    assert_eq!(v["limits"]["max_cpus"], 4.0);
    assert_eq!(v["limits"]["memory"], "16g");
    assert_eq!(v["aggregate"]["memory_high"], "43G");
    f.ds01(&["limits", "alice"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ds01-student-alice.slice"))
        .stdout(predicate::str::contains("2400% (24 CPUs)"));
}

#[test]
fn cli_rejects_two_forms_and_bad_names() {
    let f = fixture();
    f.ds01(&["limits", "alice", "--json", "--group"])
        .assert()
        .code(2);
    f.ds01(&["limits", "@@"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a usable user name"));
}

#[test]
fn limits_refuses_an_invalid_config() {
    let f = Fixture::new("default_group: nope\ngroups: {}\n");
    f.ds01(&["limits", "alice"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("default_group"))
        .stderr(predicate::str::contains("has errors"));
}

#[test]
fn shared_real_config_student_and_admin() {
    let Some(shared) = shared_dir() else {
        require(false, "../shared/compat (the planning repo's real configs)");
        return;
    };
    let yaml = std::fs::read_to_string(shared.join("compat/ds01-infra-resource-limits.yaml"))
        .expect("read");
    let f = Fixture::new(&yaml);
    // The real server keeps members in files; give it one student and one admin.
    f.file("groups/student.members", "alice\n");
    f.file("groups/admin.members", "datasciencelab\n");
    f.ds01(&["limits", "alice", "--aggregate"]).assert().success().stdout(
        "{\"cpu_quota\":\"9600%\",\"memory_max\":\"96G\",\"memory_high\":\"86G\",\"tasks_max\":12288,\"gpu_limit\":2.0}\n",
    );
    f.ds01(&["limits", "datasciencelab", "--aggregate"])
        .assert()
        .success()
        .stdout("null\n");
    // The older test config: legacy alias and inline members.
    let yaml = std::fs::read_to_string(shared.join("compat/ds01-infra-resource-limits-test.yaml"))
        .expect("read");
    let f = Fixture::new(&yaml);
    f.ds01(&["limits", "researcher1", "--max-gpus"])
        .assert()
        .success()
        .stdout("2\n");
    f.ds01(&["limits", "admin1", "--max-gpus"])
        .assert()
        .success()
        .stdout("unlimited\n");
    f.ds01(&["limits", "special_user", "--max-gpus"])
        .assert()
        .success()
        .stdout("4\n");
    f.ds01(&["limits", "nobody_listed", "--group"])
        .assert()
        .success()
        .stdout("students\n");
}

#[test]
fn membership_by_exact_name_then_by_sanitized_name() {
    let f = Fixture::new(
        "\
defaults:
  memory: 1g
default_group: student
groups:
  student:
    members: [Dup.User, carol]
  researcher:
    members: [dup_user, \"Mixed.Case\"]
",
    );
    let c = config(&f);
    assert_eq!(c.resolve("dup_user").group, "researcher");
    assert_eq!(c.resolve("Dup.User").group, "student");
    assert_eq!(c.resolve("carol").group, "student");
    // No exact match: the member whose sanitized name is the same.
    assert_eq!(c.resolve("Dup-User").group, "student");
    assert_eq!(c.resolve("dup.user").group, "researcher");
    assert_eq!(c.resolve("Mixed-Case@example.org").group, "researcher");
    assert_eq!(c.resolve("mixed.case").membership, Membership::Default);
    assert_eq!(c.resolve("nobody").membership, Membership::Default);
}

#[test]
fn container_security_decodes_strictly_and_merges_relaxations() {
    let f = Fixture::new(
        "\
defaults:
  memory: 1g
default_group: student
groups:
  student:
    members: [alice, bob]
  researcher:
    members: [rita]
container_security:
  cap_add: [cap_sys_ptrace]
  bind_roots:
    - \"{home}\"
    - {path: /data, read_only: true}
  groups:
    researcher: {host_namespaces: [ipc], allow_privileged_ports: true}
  users:
    bob: {devices: [/dev/fuse]}
",
    );
    let c = config(&f);
    let s = &c.security;
    let rita = s.policy_for("rita", "rita", "researcher");
    assert_eq!(rita.cap_add, ["SYS_PTRACE"]);
    assert_eq!(rita.host_namespaces, ["ipc"]);
    assert!(rita.allow_privileged_ports && !rita.allow_privileged);
    assert_eq!(rita.bind_roots.len(), 2);
    assert!(rita.bind_roots[1].read_only);
    let bob = s.policy_for("bob", "bob", "student");
    assert_eq!(bob.devices, ["/dev/fuse"]);
    assert!(bob.host_namespaces.is_empty() && !bob.allow_privileged_ports);
    // Without the section: safe defaults.
    let d = ds01::config::security::ContainerSecurity::default().policy_for("x", "x", "g");
    assert!(d.cap_add.is_empty() && !d.allow_privileged && d.bind_roots.len() == 1);

    // Strict: unknown keys, unknown groups, bad namespaces are errors with lines.
    let bad = Fixture::new(
        "\
defaults:
  memory: 1g
groups:
  student:
    members: [alice]
container_security:
  cap_ad: [SYS_ADMIN]
  host_namespaces: [pids]
  bind_roots: [relative/path]
  groups:
    studnet: {allow_privileged: true}
",
    );
    let loaded = load(&bad.config());
    let errs: Vec<String> = loaded
        .diagnostics
        .items
        .iter()
        .filter(|d| d.severity == ds01::config::Severity::Error)
        .map(|d| format!("{}:{} {}", d.line.unwrap_or(0), d.key, d.message))
        .collect();
    let all = errs.join("\n");
    assert!(
        all.contains("7:container_security.cap_ad unknown key (did you mean \"cap_add\"?)"),
        "{all}"
    );
    assert!(all.contains("8:container_security.host_namespaces \"pids\" is not a namespace ds01 knows (did you mean \"pid\"?)"), "{all}");
    assert!(
        all.contains(
            "9:container_security.bind_roots \"relative/path\": a bind root is an absolute path"
        ),
        "{all}"
    );
    assert!(all.contains("11:container_security.groups.studnet no group \"studnet\" in this config (did you mean \"student\"?)"), "{all}");
}
