//! Quantities exactly as systemd, Docker and the kernel read them.
//!
//! * systemd sizes (`MemoryMax=96G`): an integer or decimal number with an optional
//!   suffix `K M G T P E` (base 1024, upper case only, as systemd's `parse_size`), or
//!   `infinity`.
//! * Docker sizes (`--memory=32g`): as Docker's `RAMInBytes`: a number, an optional
//!   space, an optional `k m g t p` in either case, then an optional `i` and `b`.
//!   Base 1024.
//! * systemd `CPUQuota=` percentages (`9600%` = 96 CPUs), kept exactly in hundredths
//!   of a percent.
//! * GPU-equivalents: a finite, non-negative float.
//!
//! Every parser returns a [`UnitError`]; none panics on any input (property-tested).

use std::fmt;

/// Why a quantity did not parse. The message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{0:?} is not a size (expected e.g. 96G, 512M, 1T, 1073741824 or infinity)")]
    NotSystemdSize(String),
    #[error("{0:?} is not a Docker size (expected e.g. 32g, 2048m, 512k)")]
    NotDockerSize(String),
    #[error("{0:?} is not a CPU quota (expected a percentage such as \"9600%\", 100% = 1 CPU)")]
    NotCpuQuota(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
    #[error("{0:?} is negative")]
    Negative(String),
}

/// A limit that may be "no limit" (`infinity` for systemd, `max` in cgroupfs,
/// `null` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit<T> {
    Max,
    Value(T),
}

impl<T: Copy> Limit<T> {
    pub fn value(self) -> Option<T> {
        match self {
            Limit::Max => None,
            Limit::Value(v) => Some(v),
        }
    }
}

const SUFFIXES: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];

/// Split `"1.5G"` into the numeric part and the rest. The numeric part is digits
/// with at most one `.`; it must start with a digit.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(s.len(), |(i, _)| i);
    s.split_at(end)
}

/// `number * 1024^exp`, exact for integers, floored for decimals (as systemd does).
fn scale(num: &str, exp: u32, orig: &str, bad: fn(String) -> UnitError) -> Result<u64, UnitError> {
    if num.is_empty() || !num.as_bytes()[0].is_ascii_digit() || num.matches('.').count() > 1 {
        return Err(bad(orig.to_string()));
    }
    let mult = 1024u128.pow(exp);
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if frac.is_empty() && num.ends_with('.') {
        return Err(bad(orig.to_string()));
    }
    let int: u128 = int
        .parse()
        .map_err(|_| UnitError::TooLarge(orig.to_string()))?;
    let mut total = int
        .checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(orig.to_string()))?;
    if !frac.is_empty() {
        // Exact decimal arithmetic on at most 18 fractional digits.
        let digits: String = frac.chars().take(18).collect();
        let f: u128 = digits.parse().map_err(|_| bad(orig.to_string()))?;
        let denom = 10u128.pow(digits.len() as u32);
        total += f * mult / denom;
    }
    u64::try_from(total).map_err(|_| UnitError::TooLarge(orig.to_string()))
}

/// Parse a systemd size (`MemoryMax=`): `96G`, `512M`, `1.5K`, `1073741824`, `infinity`.
pub fn parse_systemd_size(s: &str) -> Result<Limit<u64>, UnitError> {
    let t = s.trim();
    if t == "infinity" {
        return Ok(Limit::Max);
    }
    if t.starts_with('-') {
        return Err(UnitError::Negative(s.to_string()));
    }
    let (num, rest) = split_number(t);
    let exp = match rest {
        "" | "B" => 0,
        r => {
            let mut chars = r.chars();
            let c = chars.next().unwrap_or(' ');
            match SUFFIXES.iter().position(|&x| x == c) {
                Some(p) if chars.as_str().is_empty() => p as u32 + 1,
                _ => return Err(UnitError::NotSystemdSize(s.to_string())),
            }
        }
    };
    scale(num, exp, s, UnitError::NotSystemdSize).map(Limit::Value)
}

/// Format bytes as systemd reads them: the largest suffix that divides exactly.
pub fn format_systemd_size(limit: Limit<u64>) -> String {
    match limit {
        Limit::Max => "infinity".to_string(),
        Limit::Value(b) => format_binary(b, &SUFFIXES),
    }
}

fn format_binary(bytes: u64, suffixes: &[char]) -> String {
    if bytes == 0 {
        return "0".to_string();
    }
    let mut v = bytes;
    let mut idx = None;
    for (i, _) in suffixes.iter().enumerate() {
        if v.is_multiple_of(1024) {
            v /= 1024;
            idx = Some(i);
        } else {
            break;
        }
    }
    match idx {
        Some(i) => format!("{v}{}", suffixes[i]),
        None => v.to_string(),
    }
}

/// Parse a Docker size (`--memory=32g`), as Docker's `RAMInBytes`.
pub fn parse_docker_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(UnitError::Negative(s.to_string()));
    }
    let (num, rest) = split_number(t);
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let lower = rest.to_ascii_lowercase();
    let mut chars = lower.chars().peekable();
    let exp = match chars.peek() {
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        Some('p') => 5,
        _ => 0,
    };
    if exp > 0 {
        chars.next();
        if chars.peek() == Some(&'i') {
            chars.next();
        }
    }
    if chars.peek() == Some(&'b') {
        chars.next();
    }
    if chars.next().is_some() {
        return Err(UnitError::NotDockerSize(s.to_string()));
    }
    scale(num, exp, s, UnitError::NotDockerSize)
}

/// Format bytes as a Docker size: `32g`, `2047m`, `1536` (bytes).
pub fn format_docker_size(bytes: u64) -> String {
    format_binary(bytes, &['k', 'm', 'g', 't', 'p'])
}

/// A systemd `CPUQuota=` value in hundredths of a percent (`9600%` = 960000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuQuota {
    centi_percent: u64,
}

impl CpuQuota {
    pub fn from_percent(p: u64) -> Self {
        CpuQuota {
            centi_percent: p.saturating_mul(100),
        }
    }
    pub fn from_centi_percent(c: u64) -> Self {
        CpuQuota { centi_percent: c }
    }
    pub fn centi_percent(self) -> u64 {
        self.centi_percent
    }
    /// How many CPUs the quota is worth (`9600%` → 96.0).
    pub fn cpus(self) -> f64 {
        self.centi_percent as f64 / 10_000.0
    }
    /// The kernel's `cpu.max` quota for a period of `period_us` (systemd uses 100 ms).
    pub fn quota_us(self, period_us: u64) -> u64 {
        (u128::from(self.centi_percent) * u128::from(period_us) / 10_000)
            .try_into()
            .unwrap_or(u64::MAX)
    }
}

/// Parse `"9600%"` or `"12.5%"` (at most two decimals, as systemd's permyriad).
pub fn parse_cpu_quota(s: &str) -> Result<CpuQuota, UnitError> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(UnitError::Negative(s.to_string()));
    }
    let bad = || UnitError::NotCpuQuota(s.to_string());
    let num = t.strip_suffix('%').ok_or_else(bad)?;
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || (num.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let int: u64 = int
        .parse()
        .map_err(|_| UnitError::TooLarge(s.to_string()))?;
    let frac_val: u64 = if frac.is_empty() {
        0
    } else {
        let f: u64 = frac.parse().map_err(|_| bad())?;
        if frac.len() == 1 { f * 10 } else { f }
    };
    let c = int
        .checked_mul(100)
        .and_then(|v| v.checked_add(frac_val))
        .ok_or_else(|| UnitError::TooLarge(s.to_string()))?;
    Ok(CpuQuota { centi_percent: c })
}

impl fmt::Display for CpuQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.centi_percent / 100;
        let frac = self.centi_percent % 100;
        if frac == 0 {
            write!(f, "{int}%")
        } else if frac.is_multiple_of(10) {
            write!(f, "{int}.{}%", frac / 10)
        } else {
            write!(f, "{int}.{frac:02}%")
        }
    }
}

/// Format a float the way a person writes it: `2`, `0.5`, `1.25` (no `2.0`).
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Format a byte count for people: `80.0 GiB`, `512 MiB`, `17 B`.
pub fn format_human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn systemd_sizes() {
        let g = 1024u64.pow(3);
        assert_eq!(parse_systemd_size("96G"), Ok(Limit::Value(96 * g)));
        assert_eq!(parse_systemd_size("512M"), Ok(Limit::Value(512 << 20)));
        assert_eq!(parse_systemd_size("1T"), Ok(Limit::Value(1 << 40)));
        assert_eq!(parse_systemd_size("1536"), Ok(Limit::Value(1536)));
        assert_eq!(parse_systemd_size("1.5K"), Ok(Limit::Value(1536)));
        assert_eq!(parse_systemd_size("infinity"), Ok(Limit::Max));
        assert_eq!(
            parse_systemd_size("16E"),
            Err(UnitError::TooLarge("16E".into()))
        );
        assert!(matches!(
            parse_systemd_size("86X"),
            Err(UnitError::NotSystemdSize(_))
        ));
        assert!(matches!(
            parse_systemd_size("96g"),
            Err(UnitError::NotSystemdSize(_))
        ));
        assert!(matches!(
            parse_systemd_size(""),
            Err(UnitError::NotSystemdSize(_))
        ));
        assert!(matches!(
            parse_systemd_size("G"),
            Err(UnitError::NotSystemdSize(_))
        ));
        assert!(matches!(
            parse_systemd_size("1.G"),
            Err(UnitError::NotSystemdSize(_))
        ));
        assert!(matches!(
            parse_systemd_size("-1G"),
            Err(UnitError::Negative(_))
        ));
        assert_eq!(format_systemd_size(Limit::Value(96 * g)), "96G");
        assert_eq!(format_systemd_size(Limit::Value(1536)), "1536");
        assert_eq!(format_systemd_size(Limit::Value(0)), "0");
        assert_eq!(format_systemd_size(Limit::Max), "infinity");
    }

    #[test]
    fn docker_sizes() {
        assert_eq!(parse_docker_size("32g"), Ok(32 << 30));
        assert_eq!(parse_docker_size("32G"), Ok(32 << 30));
        assert_eq!(parse_docker_size("2048m"), Ok(2048 << 20));
        assert_eq!(parse_docker_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_docker_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_docker_size("1 g"), Ok(1 << 30));
        assert_eq!(parse_docker_size("100"), Ok(100));
        assert_eq!(parse_docker_size("100b"), Ok(100));
        assert_eq!(parse_docker_size("0.5g"), Ok(512 << 20));
        assert!(parse_docker_size("32x").is_err());
        assert!(parse_docker_size("g").is_err());
        assert!(parse_docker_size("-1").is_err());
        assert_eq!(format_docker_size(32 << 30), "32g");
        assert_eq!(format_docker_size(2047 << 20), "2047m");
        assert_eq!(format_docker_size(100), "100");
    }

    #[test]
    fn cpu_quotas() {
        assert_eq!(parse_cpu_quota("9600%").map(|q| q.cpus()), Ok(96.0));
        assert_eq!(
            parse_cpu_quota("12.5%").map(|q| q.centi_percent()),
            Ok(1250)
        );
        assert_eq!(parse_cpu_quota("0.05%").map(|q| q.centi_percent()), Ok(5));
        assert!(parse_cpu_quota("9600").is_err());
        assert!(parse_cpu_quota("%").is_err());
        assert!(parse_cpu_quota("1.234%").is_err());
        assert!(parse_cpu_quota("1.%").is_err());
        assert!(parse_cpu_quota("-5%").is_err());
        assert_eq!(CpuQuota::from_percent(9600).to_string(), "9600%");
        assert_eq!(CpuQuota::from_centi_percent(1250).to_string(), "12.5%");
        assert_eq!(CpuQuota::from_centi_percent(1205).to_string(), "12.05%");
        // systemd writes cpu.max with a 100 ms period.
        assert_eq!(CpuQuota::from_percent(9600).quota_us(100_000), 9_600_000);
    }

    #[test]
    fn human_and_numbers() {
        assert_eq!(format_number(2.0), "2");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_human_bytes(17), "17 B");
        assert_eq!(format_human_bytes(512 << 20), "512 MiB");
        assert_eq!(format_human_bytes(80 * (1 << 30) + (1 << 29)), "80.5 GiB");
    }

    proptest! {
        #[test]
        fn systemd_size_round_trip(b in any::<u64>()) {
            prop_assert_eq!(parse_systemd_size(&format_systemd_size(Limit::Value(b))), Ok(Limit::Value(b)));
        }
        #[test]
        fn systemd_size_round_trip_units(n in 0u64..100_000, e in 0u32..5) {
            let b = n * 1024u64.pow(e);
            prop_assert_eq!(parse_systemd_size(&format_systemd_size(Limit::Value(b))), Ok(Limit::Value(b)));
        }
        #[test]
        fn docker_size_round_trip(b in any::<u64>()) {
            prop_assert_eq!(parse_docker_size(&format_docker_size(b)), Ok(b));
        }
        #[test]
        fn cpu_quota_round_trip(c in 0u64..u64::MAX / 200) {
            let q = CpuQuota::from_centi_percent(c);
            prop_assert_eq!(parse_cpu_quota(&q.to_string()), Ok(q));
        }
        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_systemd_size(&s);
            let _ = parse_docker_size(&s);
            let _ = parse_cpu_quota(&s);
        }
        #[test]
        fn parsers_never_panic_numeric(s in "[0-9.]{0,30}[KMGTPEkmgtpib% ]{0,3}") {
            let _ = parse_systemd_size(&s);
            let _ = parse_docker_size(&s);
            let _ = parse_cpu_quota(&s);
        }
    }
}
