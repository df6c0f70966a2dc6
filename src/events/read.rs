//! Parsing event lines, v1 and legacy, without building a full JSON tree: only the
//! fields queries use are borrowed from the line (fast enough for 1 M lines).

use crate::timespec::parse_log_time;
use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// The original line, without its newline.
    pub line: &'a str,
    pub ts: Option<Timestamp>,
    pub event_type: Cow<'a, str>,
    pub user: Option<Cow<'a, str>>,
    /// The top-level `container`, else `details.container`.
    pub container: Option<Cow<'a, str>>,
    /// A flat legacy line (`ts`, `event`).
    pub legacy: bool,
}

/// A string, or anything else (kept as `None`, consumed without allocating).
#[derive(Debug, Default)]
enum Loose<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    #[default]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Loose<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Loose::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Loose::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Loose::Num(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'a> Loose<'a> {
    fn string(self) -> Option<Cow<'a, str>> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// `details`: only `container` is read; anything that is not an object is ignored.
#[derive(Debug, Default)]
struct Details<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Details<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Details<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut container = None;
                while let Some(IsContainer(is)) = a.next_key::<IsContainer>()? {
                    if is {
                        container = a.next_value::<Loose<'a>>()?.string();
                    } else {
                        a.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Details(container))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Details(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Details(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Details(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Details(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Details(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Details(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Details(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A map key, compared with `container` without allocating.
struct IsContainer(bool);

impl<'de> Deserialize<'de> for IsContainer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IsContainer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IsContainer(v == "container"))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(default, borrow)]
    timestamp: Loose<'a>,
    #[serde(default, borrow)]
    ts: Loose<'a>,
    #[serde(default, borrow)]
    event_type: Loose<'a>,
    #[serde(default, borrow)]
    event: Loose<'a>,
    #[serde(default, borrow)]
    user: Loose<'a>,
    #[serde(default, borrow)]
    container: Loose<'a>,
    #[serde(default, borrow)]
    details: Details<'a>,
}

/// The timestamp of a line written by ds01 (`{"timestamp":"…Z",…`), read from its
/// first bytes without parsing the JSON; `None` for any other line (legacy, another
/// key order, malformed), which callers then parse in full.
pub fn leading_timestamp(line: &str) -> Option<Timestamp> {
    line.strip_prefix("{\"timestamp\":\"")
        .and_then(|r| r.split('"').next())
        .and_then(crate::timespec::fast_utc)
}

/// Parse one line; `None` when it is not an event (malformed, truncated, no type).
pub fn parse_line(line: &str) -> Option<Record<'_>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let raw: Raw = serde_json::from_str(line).ok()?;
    let (event_type, legacy) = match (raw.event_type.string(), raw.event.string()) {
        (Some(t), _) => (t, false),
        (None, Some(t)) => (t, true),
        (None, None) => return None,
    };
    let ts = match (raw.timestamp, raw.ts) {
        (Loose::Str(t), _) | (_, Loose::Str(t)) => parse_log_time(&t),
        // Legacy epoch seconds.
        (Loose::Num(s), _) | (_, Loose::Num(s)) if s.is_finite() => {
            Timestamp::from_microsecond((s * 1e6) as i64).ok()
        }
        _ => None,
    };
    Some(Record {
        line,
        ts,
        event_type,
        user: raw.user.string(),
        container: raw.container.string().or(raw.details.0),
        legacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v1_and_legacy() {
        let r = parse_line(r#"{"timestamp":"2026-01-30T14:30:00.123456Z","event_type":"container.create","schema_version":"1","user":"alice","details":{"image":"x","container":"alice-proj"}}"#).expect("v1");
        assert_eq!(r.event_type, "container.create");
        assert_eq!(r.user.as_deref(), Some("alice"));
        assert_eq!(r.container.as_deref(), Some("alice-proj"));
        assert!(!r.legacy);
        assert!(r.ts.is_some());
        let l = parse_line(r#"{"ts":"2026-01-30T14:30:00","event":"gpu.allocated","user":"bob","container":"bob-1","gpu":"0"}"#).expect("legacy");
        assert_eq!(l.event_type, "gpu.allocated");
        assert_eq!(l.container.as_deref(), Some("bob-1"));
        assert!(l.legacy);
        let e = parse_line(r#"{"ts":1769783400,"event":"x.y"}"#).expect("epoch");
        assert_eq!(e.ts, Some("2026-01-30T14:30:00Z".parse().expect("ts")));
        // Escaped strings are decoded.
        let esc = parse_line(r#"{"event_type":"a.b","user":"al\"ice"}"#).expect("escaped");
        assert_eq!(esc.user.as_deref(), Some("al\"ice"));
    }

    #[test]
    fn not_events() {
        for bad in [
            "",
            "{",
            "not json",
            "[]",
            "{}",
            r#"{"user":"x"}"#,
            r#"{"timestamp":"2026-01-30T14:30:00Z","event_type":"a.b""#,
        ] {
            assert!(parse_line(bad).is_none(), "{bad:?}");
        }
        // Odd field types do not make a line malformed.
        assert!(parse_line(r#"{"event_type":"a.b","user":5,"details":"text"}"#).is_some());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,120}") {
            let _ = parse_line(&s);
        }
    }
}
