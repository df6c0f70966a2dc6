//! Event-log and stats-log lines and time phrases: v1 and legacy events, stats
//! samples, log timestamps, `--since` phrases. Never a panic; the fast timestamp
//! parser agrees with the general one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(r) = ds01::events::read::parse_line(s) {
        let _ = format!("{r:?}");
    }
    let _ = ds01::events::read::leading_timestamp(s);
    let _ = ds01::stats::parse_sample(s);
    if let Some(t) = ds01::timespec::fast_utc(s) {
        assert_eq!(ds01::timespec::parse_log_time(s), Some(t), "{s:?}");
    }
    let now = jiff::Timestamp::UNIX_EPOCH
        .checked_add(jiff::SignedDuration::from_hours(500_000))
        .expect("time")
        .to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let _ = ds01::timespec::parse_time(s, &now);
});
