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
    // The flat-object fast path vouches only for what serde_json reads the same.
    let mut pairs = std::collections::HashMap::new();
    if ds01::flatjson::scan(s, |k, v| {
        pairs.insert(k, v); // the last of a duplicate key, as serde_json keeps
        true
    })
    .is_some()
    {
        use ds01::flatjson::Scalar;
        let v: serde_json::Value = serde_json::from_str(s).expect("scan took a line serde refuses");
        let obj = v.as_object().expect("an object");
        assert_eq!(obj.len(), pairs.len(), "{s:?}");
        for (k, val) in pairs {
            let got = obj.get(k).expect("every key");
            match val {
                Scalar::Str(t) => assert_eq!(got.as_str(), Some(t), "{s:?}"),
                Scalar::Bool(b) => assert_eq!(got.as_bool(), Some(b), "{s:?}"),
                Scalar::Null => assert!(got.is_null(), "{s:?}"),
                Scalar::Num(_) => {
                    let (a, b) = (val.float().expect("a number"), got.as_f64().expect("a number"));
                    assert!(a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()), "{s:?}");
                }
            }
        }
    }
    if let Some(t) = ds01::timespec::fast_utc(s) {
        assert_eq!(ds01::timespec::parse_log_time(s), Some(t), "{s:?}");
    }
    let now = jiff::Timestamp::UNIX_EPOCH
        .checked_add(jiff::SignedDuration::from_hours(500_000))
        .expect("time")
        .to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let _ = ds01::timespec::parse_time(s, &now);
});
