//! User-name sanitization and systemd slice names (COMPAT.md "Slice names").
//!
//! `ds01.slice` → `ds01-<group>.slice` → `ds01-<group>-<user>.slice`. In a slice name
//! `-` means nesting, so neither part may contain one.

use sha2::{Digest, Sha256};

/// The longest sanitized user name; longer names are cut and given a hash suffix.
pub const MAX_USER_LEN: usize = 32;
/// Length of the hex hash suffix for cut names.
const HASH_LEN: usize = 8;

/// Sanitize a raw login name for use in a slice name.
///
/// Everything from `@` on is dropped; `.` and every character outside
/// `[A-Za-z0-9_:]` become `_`; runs of `_` collapse; leading and trailing `_` go.
/// Names longer than 32 characters keep their first 23 characters, then `_` and the
/// first 8 hex digits of the SHA-256 of the *raw* name, so two long names that share
/// a prefix still get different slices. The result may be empty (e.g. `@x`); callers
/// treat that as an invalid name.
pub fn sanitize_user(raw: &str) -> String {
    let base = raw.split('@').next().unwrap_or("");
    let mut out = String::with_capacity(base.len());
    for c in base.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' {
            c
        } else {
            '_'
        };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.len() > MAX_USER_LEN {
        let digest = Sha256::digest(raw.as_bytes());
        let hex: String = digest
            .iter()
            .take(HASH_LEN / 2)
            .map(|b| format!("{b:02x}"))
            .collect();
        out.truncate(MAX_USER_LEN - HASH_LEN - 1);
        while out.ends_with('_') {
            out.pop();
        }
        out.push('_');
        out.push_str(&hex);
    }
    out
}

/// Why a group name cannot be used in a slice name, if it cannot.
pub fn group_name_problem(group: &str) -> Option<String> {
    if group.is_empty() {
        return Some("a group name must not be empty".into());
    }
    if group.contains('-') {
        return Some(format!(
            "group name {group:?} contains '-', which systemd reads as slice nesting (use '_')"
        ));
    }
    if let Some(c) = group
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':'))
    {
        return Some(format!(
            "group name {group:?} contains {c:?}; only letters, digits, '_' and ':' are allowed"
        ));
    }
    None
}

/// The top slice every ds01 user slice lives under.
pub const ROOT_SLICE: &str = "ds01.slice";

pub fn group_slice(group: &str) -> String {
    format!("ds01-{group}.slice")
}

/// The slice of a user whose name is already sanitized.
pub fn user_slice(group: &str, sanitized_user: &str) -> String {
    format!("ds01-{group}-{sanitized_user}.slice")
}

/// Split `ds01-<group>-<user>.slice` into group and user (the inverse of
/// [`user_slice`]); `None` for anything else.
pub fn parse_user_slice(name: &str) -> Option<(&str, &str)> {
    let inner = name.strip_prefix("ds01-")?.strip_suffix(".slice")?;
    let (group, user) = inner.split_once('-')?;
    if group.is_empty() || user.is_empty() || user.contains('-') {
        return None;
    }
    Some((group, user))
}

/// Split `ds01-<group>.slice` into the group; `None` for anything else.
pub fn parse_group_slice(name: &str) -> Option<&str> {
    let group = name.strip_prefix("ds01-")?.strip_suffix(".slice")?;
    if group.is_empty() || group.contains('-') {
        return None;
    }
    Some(group)
}

/// The container id of a `docker-<id>.scope` directory name (Docker's systemd
/// cgroup driver); `None` for anything else.
pub fn parse_scope(name: &str) -> Option<&str> {
    name.strip_prefix("docker-")?.strip_suffix(".scope")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sanitizes_like_compat() {
        assert_eq!(sanitize_user("alice"), "alice");
        assert_eq!(sanitize_user("h.baker@uni.example"), "h_baker");
        assert_eq!(sanitize_user("john.doe"), "john_doe");
        assert_eq!(sanitize_user("john_doe"), "john_doe");
        assert_eq!(sanitize_user("a--b..c"), "a_b_c");
        assert_eq!(sanitize_user("_x_"), "x");
        assert_eq!(sanitize_user("dom:user"), "dom:user");
        assert_eq!(sanitize_user("Jörg"), "J_rg");
        assert_eq!(sanitize_user("@nobody"), "");
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let a = "a_very_long_user_name_that_goes_on_and_on_1";
        let b = "a_very_long_user_name_that_goes_on_and_on_2";
        let sa = sanitize_user(a);
        let sb = sanitize_user(b);
        assert_eq!(sa.len(), MAX_USER_LEN);
        assert_ne!(sa, sb);
        assert!(sa.starts_with("a_very_long_user_name_t"));
        // Stable across runs and versions: the suffix is part of the on-disk contract.
        assert_eq!(sa, sanitize_user(a));
        let exactly = "abcdefghijabcdefghijabcdefghij12";
        assert_eq!(sanitize_user(exactly), exactly);
    }

    #[test]
    fn slice_names() {
        assert_eq!(user_slice("student", "alice"), "ds01-student-alice.slice");
        assert_eq!(
            parse_user_slice("ds01-student-alice.slice"),
            Some(("student", "alice"))
        );
        assert_eq!(parse_user_slice("ds01-student.slice"), None);
        assert_eq!(parse_user_slice("ds01-a-b-c.slice"), None);
        assert_eq!(parse_group_slice("ds01-student.slice"), Some("student"));
        assert_eq!(parse_group_slice("ds01-student-alice.slice"), None);
        assert!(group_name_problem("my-group").is_some());
        assert!(group_name_problem("my group").is_some());
        assert!(group_name_problem("student").is_none());
    }

    proptest! {
        #[test]
        fn sanitized_names_are_slice_safe(raw in "\\PC{0,60}") {
            let s = sanitize_user(&raw);
            prop_assert!(s.len() <= MAX_USER_LEN);
            prop_assert!(!s.contains('-'));
            prop_assert!(!s.starts_with('_') && !s.ends_with('_'));
            prop_assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            if !s.is_empty() {
                let slice = user_slice("g", &s);
                prop_assert_eq!(parse_user_slice(&slice), Some(("g", s.as_str())));
            }
        }
    }
}
