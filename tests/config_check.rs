//! `ds01 config check`: one fixture per error and warning, exit codes, messages with
//! file, line and key path.

mod common;
use common::{Fixture, require, shared_dir};
use predicates::prelude::*;

const BASE: &str = "\
defaults:
  max_cpus: 8
  memory: 16g
  memory_swap: 16g
default_group: student
groups:
  student:
    aggregate:
      cpu_quota: \"2400%\"
      memory_max: \"48G\"
      memory_high: \"43G\"
      tasks_max: 12288
      gpu_limit: 2.0
  admin:
    members: [root_admin]
";

fn check(yaml: &str) -> assert_cmd::assert::Assert {
    Fixture::new(yaml).ds01(&["config", "check"]).assert()
}

/// Assert exit 2 and that stdout has a line containing every fragment.
fn assert_error(yaml: &str, fragments: &[&str]) {
    let out = check(yaml).code(2).get_output().stdout.clone();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("error: ") && fragments.iter().all(|f| l.contains(f))),
        "no error line with {fragments:?} in:\n{text}"
    );
}

#[test]
fn base_fixture_is_valid() {
    check(BASE)
        .success()
        .stdout(predicate::str::contains("OK — 2 groups"));
}

#[test]
fn invalid_yaml_names_the_line() {
    assert_error(
        "defaults:\n  memory: [1, 2\ngroups: {}\n",
        &["resource-limits.yaml:", "invalid YAML"],
    );
}

#[test]
fn unparsable_size_has_file_line_and_key_path() {
    let yaml = BASE.replace("memory_high: \"43G\"", "memory_high: \"86X\"");
    assert_error(
        &yaml,
        &["resource-limits.yaml:11: groups.student.aggregate.memory_high: \"86X\" is not a size"],
    );
}

#[test]
fn unparsable_docker_size() {
    let yaml = BASE.replace("memory: 16g", "memory: 16 gigs");
    assert_error(&yaml, &[":3: defaults.memory:", "not a Docker size"]);
}

#[test]
fn unparsable_cpu_quota() {
    let yaml = BASE.replace("cpu_quota: \"2400%\"", "cpu_quota: 2400");
    assert_error(
        &yaml,
        &[":9: groups.student.aggregate.cpu_quota:", "\"9600%\""],
    );
    let yaml = BASE.replace("cpu_quota: \"2400%\"", "cpu_quota: \"24 CPUs\"");
    assert_error(
        &yaml,
        &["groups.student.aggregate.cpu_quota:", "not a CPU quota"],
    );
}

#[test]
fn wrong_types() {
    let yaml = BASE.replace("max_cpus: 8", "max_cpus: eight");
    assert_error(
        &yaml,
        &[":2: defaults.max_cpus: expected a number, found \"eight\""],
    );
    let yaml = BASE.replace("tasks_max: 12288", "tasks_max: [1]");
    assert_error(
        &yaml,
        &["groups.student.aggregate.tasks_max: expected a whole number, found a list"],
    );
    assert_error(
        "groups: [a, b]\n",
        &[":1: groups: expected a mapping, found a list"],
    );
    assert_error("- just\n- a list\n", &["the config must be a mapping"]);
    let yaml = format!("{BASE}enforcement:\n  aggregate_limits: maybe\n");
    assert_error(
        &yaml,
        &["enforcement.aggregate_limits: expected true or false"],
    );
}

#[test]
fn negative_numbers() {
    let yaml = BASE.replace("max_cpus: 8", "max_cpus: -2");
    assert_error(&yaml, &["defaults.max_cpus: -2 is negative"]);
    let yaml = BASE.replace("tasks_max: 12288", "tasks_max: -5");
    assert_error(
        &yaml,
        &["groups.student.aggregate.tasks_max: -5 is negative"],
    );
    let yaml = BASE.replace("memory_max: \"48G\"", "memory_max: \"-48G\"");
    assert_error(&yaml, &["groups.student.aggregate.memory_max:", "negative"]);
    let yaml = BASE.replace("gpu_limit: 2.0", "gpu_limit: -0.5");
    assert_error(
        &yaml,
        &["groups.student.aggregate.gpu_limit: -0.5 is negative"],
    );
}

#[test]
fn memory_high_above_memory_max() {
    let yaml = BASE.replace("memory_high: \"43G\"", "memory_high: \"50G\"");
    assert_error(
        &yaml,
        &[
            "resource-limits.yaml:11: groups.student.aggregate.memory_high: memory_high (50G) is above memory_max (48G)",
        ],
    );
    // In an override file too: the line of the value in that file.
    let f = Fixture::new(BASE);
    f.file(
        "user-overrides.yaml",
        "alice:\n  aggregate:\n    memory_max: 8G\n    memory_high: 9G\n",
    );
    let out = f.ds01(&["config", "check"]).assert().code(2);
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("user-overrides.yaml:4: user_overrides.alice.aggregate.memory_high"),
        "{text}"
    );
}

#[test]
fn memory_swap_below_memory_points_at_the_value() {
    let yaml = BASE.replace(
        "  student:\n    aggregate:",
        "  student:\n    memory_swap: 8g\n    aggregate:",
    );
    assert_error(
        &yaml,
        &[
            "resource-limits.yaml:8: groups.student.memory_swap: memory_swap (8g) is below memory (16g)",
        ],
    );
}

#[test]
fn group_name_with_dash() {
    let yaml = format!("{BASE}  phd-students:\n    max_cpus: 4\n");
    assert_error(&yaml, &[":16: groups.phd-students:", "contains '-'"]);
}

#[test]
fn default_group_names_no_group() {
    let yaml = BASE.replace("default_group: student", "default_group: students");
    assert_error(
        &yaml,
        &[
            "resource-limits.yaml:5: default_group: \"students\" names no group",
            "did you mean \"student\"?",
        ],
    );
}

#[test]
fn users_sanitizing_to_the_same_slice() {
    let f = Fixture::new(BASE);
    f.file("groups/student.members", "john.doe\njohn_doe\n");
    let out = f
        .ds01(&["config", "check"])
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("student.members:2: groups.student.members: \"john_doe\" and \"john.doe\"")
            && text.contains("both become slice user \"john_doe\""),
        "{text}"
    );
}

#[test]
fn override_colliding_with_a_member_is_an_error_but_alias_is_not() {
    // `h_baker` is the sanitized name of the member: the same person, no error.
    let f = Fixture::new(&format!(
        "{BASE}user_overrides:\n  h_baker:\n    max_cpus: 2\n"
    ));
    f.file("groups/student.members", "h.baker@uni.example\n");
    f.ds01(&["config", "check"]).assert().success();
    // `h-baker` is a different raw name that lands on the same slice as `h.baker`.
    let f = Fixture::new(&format!(
        "{BASE}user_overrides:\n  h-baker:\n    max_cpus: 2\n"
    ));
    f.file("groups/student.members", "h.baker\n");
    f.ds01(&["config", "check"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "user_overrides.h-baker: \"h-baker\" and \"h.baker\"",
        ));
}

#[test]
fn member_in_two_groups() {
    let f = Fixture::new(BASE);
    f.file("groups/student.members", "root_admin\n");
    f.ds01(&["config", "check"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "\"root_admin\" is also a member of group",
        ))
        .stdout(predicate::str::contains("a user may be in one group only"));
}

#[test]
fn unknown_keys_warn_with_suggestion() {
    let yaml = BASE.replace("memory: 16g", "memroy: 16g");
    check(&yaml)
        .success()
        .stdout(predicate::str::contains("warning: "))
        .stdout(predicate::str::contains(
            ":3: defaults.memroy: unknown key, ignored (did you mean \"memory\"?)",
        ))
        .stdout(predicate::str::contains("1 warning"));
    let yaml = format!("{BASE}colour_scheme: dark\n");
    check(&yaml).success().stdout(predicate::str::contains(
        "colour_scheme: unknown key, ignored\n",
    ));
}

#[test]
fn real_server_sections_are_accepted() {
    let yaml = format!(
        "{BASE}gpu_allocation: {{}}\npolicies:\n  gpu_idle_threshold: 5\ncontainer_types:\n  docker: {{max_runtime_h: 48}}\nmonitoring: {{}}\nbare_metal_access: {{}}\naccess_control:\n  admin_users: [x]\n"
    );
    check(&yaml)
        .success()
        .stdout(predicate::str::contains("0 warnings"));
}

#[test]
fn unreadable_members_file_is_an_error_with_the_os_reason() {
    let f = Fixture::new(BASE);
    // A directory where the file should be: unreadable even for root.
    std::fs::create_dir_all(f.path().join("groups/student.members")).expect("mkdir");
    f.ds01(&["config", "check"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "student.members: cannot read the member list of group \"student\"",
        ))
        .stdout(predicate::str::contains("directory"));
}

#[test]
fn members_file_of_unknown_group_warns() {
    let f = Fixture::new(BASE);
    f.file("groups/students.members", "alice\n");
    f.ds01(&["config", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "no group \"students\" in the config",
        ))
        .stdout(predicate::str::contains("did you mean student.members?"));
}

#[test]
fn duplicate_keys_are_errors() {
    let yaml = BASE.replace("  max_cpus: 8\n", "  max_cpus: 8\n  max_cpus: 9\n");
    assert_error(
        &yaml,
        &[":3: max_cpus: duplicate key (first defined on line 2)"],
    );
}

#[test]
fn shadowed_alias_warns() {
    let yaml = BASE.replace(
        "  max_cpus: 8\n",
        "  max_cpus: 8\n  max_mig_instances: 3\n  max_gpu_equivalents: 1.5\n",
    );
    check(&yaml).success().stdout(predicate::str::contains(
        "defaults.max_mig_instances: ignored: max_gpu_equivalents is set in the same section",
    ));
}

#[test]
fn missing_config_file_is_a_config_error() {
    common::ds01()
        .args(["--config", "/nonexistent/ds01.yaml", "config", "check"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "/nonexistent/ds01.yaml: cannot read",
        ));
}

#[test]
fn every_problem_in_one_run() {
    let yaml = BASE
        .replace("memory_high: \"43G\"", "memory_high: \"86X\"")
        .replace("max_cpus: 8", "max_cpus: -1")
        .replace("default_group: student", "default_group: nobody");
    check(&yaml)
        .code(2)
        .stdout(predicate::str::contains("3 errors"));
}

#[test]
fn json_output() {
    let yaml = BASE.replace("memory: 16g", "memroy: 16g");
    let out = Fixture::new(&yaml)
        .ds01(&["config", "check", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["warnings"], 1);
    assert_eq!(v["diagnostics"][0]["line"], 3);
    assert_eq!(v["diagnostics"][0]["key"], "defaults.memroy");
}

#[test]
fn config_from_env_var() {
    let f = Fixture::new(BASE);
    common::ds01()
        .env("DS01_CONFIG", f.config())
        .args(["config", "check"])
        .assert()
        .success();
}

#[test]
fn shared_real_configs_load_unchanged() {
    let Some(shared) = shared_dir() else {
        require(false, "../shared/compat (the planning repo's real configs)");
        return;
    };
    for name in [
        "ds01-infra-resource-limits.yaml",
        "ds01-infra-resource-limits-test.yaml",
    ] {
        let path = shared.join("compat").join(name);
        // Copy next to an empty groups dir so the check reads no host files.
        let f = Fixture::new(&std::fs::read_to_string(&path).expect("read shared config"));
        f.ds01(&["config", "check"])
            .assert()
            .success()
            .stdout(predicate::str::contains("OK —"))
            .stdout(predicate::str::contains("0 warnings"));
    }
}

#[test]
fn monitoring_pressure_is_decoded_and_the_rest_of_monitoring_kept() {
    let yaml = format!(
        "{BASE}monitoring:\n  infrastructure_label: ds01.protected\n  pressure:\n    window_s: 4\n    memory_some_pct: 20\n    memory_full_pct: null\n    cpu_some_pct: 75\n    cooldown_min: 5\n"
    );
    let f = Fixture::new(&yaml);
    let loaded = ds01::config::load(&f.config());
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    let cfg = loaded.config.expect("config");
    assert_eq!(cfg.pressure.window_us, 4_000_000);
    assert_eq!(cfg.pressure.cooldown_s, 300);
    assert_eq!(
        cfg.pressure.triggers(),
        vec![("memory", "some", 800_000), ("cpu", "some", 3_000_000)],
        "null turns the memory full trigger off"
    );
    assert_eq!(
        cfg.sections["monitoring"]["infrastructure_label"],
        "ds01.protected"
    );
    // Without the section: the defaults (2 s window, three triggers).
    let cfg = ds01::config::load(&Fixture::new(BASE).config())
        .config
        .expect("config");
    assert_eq!(
        cfg.pressure.triggers(),
        vec![
            ("memory", "some", 200_000),
            ("memory", "full", 100_000),
            ("cpu", "some", 1_000_000)
        ]
    );
}

#[test]
fn monitoring_pressure_bad_values_are_errors_with_their_key() {
    let with = |body: &str| format!("{BASE}monitoring:\n  pressure:\n{body}");
    assert_error(
        &with("    window_s: 30\n"),
        &["monitoring.pressure.window_s", "0.5 to 10 seconds"],
    );
    assert_error(
        &with("    cpu_some_pct: 0\n"),
        &[
            "monitoring.pressure.cpu_some_pct",
            "above 0 and at most 100",
        ],
    );
    assert_error(
        &with("    memory_some_pct: 150\n"),
        &["monitoring.pressure.memory_some_pct"],
    );
    assert_error(
        &with("    enabled: maybe\n"),
        &["monitoring.pressure.enabled", "true or false"],
    );
    assert_error(
        &format!("{BASE}monitoring:\n  pressure: 5\n"),
        &["monitoring.pressure", "expected a mapping"],
    );
}

#[test]
fn monitoring_pressure_warnings_unknown_key_and_odd_window() {
    let yaml = format!("{BASE}monitoring:\n  pressure:\n    window_s: 1\n    cooldwn_min: 3\n");
    let out = check(&yaml).success().get_output().stdout.clone();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains(
            "monitoring.pressure.cooldwn_min: unknown key, ignored (did you mean \"cooldown_min\"?)"
        ),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("warning: ")
            && l.contains("monitoring.pressure.window_s")
            && l.contains("CAP_SYS_RESOURCE")),
        "{text}"
    );
}
