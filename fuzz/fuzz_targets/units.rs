//! Size, CPU-quota, duration and name phrases: never a panic, and what parses
//! formats back to text that parses to the same value.
#![no_main]

use ds01::units::{
    Limit, format_docker_size, format_systemd_size, parse_cpu_quota, parse_docker_size,
    parse_systemd_size,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = parse_systemd_size(s) {
        let back = format_systemd_size(v);
        assert_eq!(parse_systemd_size(&back).ok(), Some(v), "{s:?} → {back:?}");
    }
    if let Ok(b) = parse_docker_size(s) {
        let back = format_docker_size(b);
        assert_eq!(parse_docker_size(&back).ok(), Some(b), "{s:?} → {back:?}");
    }
    if let Ok(q) = parse_cpu_quota(s) {
        let back = q.to_string();
        assert_eq!(parse_cpu_quota(&back).ok(), Some(q), "{s:?} → {back:?}");
    }
    if let Ok(d) = ds01::timespec::parse_duration(s) {
        assert!(!d.is_zero());
    }
    let clean = ds01::naming::sanitize_user(s);
    assert_eq!(ds01::naming::sanitize_user(&clean), clean, "sanitizing is idempotent");
    let _ = ds01::naming::parse_user_slice(s);
    let _ = ds01::naming::group_name_problem(s);
    let _ = Limit::<u64>::Max;
});
