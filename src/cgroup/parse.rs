//! Pure parsers for cgroup v2 interface files. Unknown keys are ignored; nothing
//! panics on any input (property-tested).

use crate::units::Limit;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("expected a number or \"max\", found {0:?}")]
    Single(String),
    #[error("line {0:?} is not `key value`")]
    Flat(String),
    #[error("line {0:?} is not a PSI line (`some|full avg10=… avg60=… avg300=… total=…`)")]
    Psi(String),
}

/// `123` or `max` (a single-value file such as `memory.max`, `pids.current`).
pub fn single(text: &str) -> Result<Limit<u64>, ParseError> {
    let t = text.trim();
    if t == "max" {
        return Ok(Limit::Max);
    }
    t.parse::<u64>()
        .map(Limit::Value)
        .map_err(|_| ParseError::Single(t.chars().take(40).collect()))
}

/// `key value` lines (`memory.events`, `cpu.stat`, `pids.events`, v1
/// `memory.oom_control`). Values that are not unsigned integers are errors; blank
/// lines are skipped.
pub fn flat(text: &str) -> Result<Vec<(&str, u64)>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        match (it.next(), it.next(), it.next()) {
            (Some(k), Some(v), None) => match v.parse::<u64>() {
                Ok(n) => out.push((k, n)),
                Err(_) => return Err(ParseError::Flat(line.chars().take(60).collect())),
            },
            _ => return Err(ParseError::Flat(line.chars().take(60).collect())),
        }
    }
    Ok(out)
}

pub fn flat_get(kv: &[(&str, u64)], key: &str) -> Option<u64> {
    kv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time, µs.
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Psi {
    pub some: PsiLine,
    /// Absent for `cpu.pressure` on older kernels.
    pub full: Option<PsiLine>,
}

/// A PSI file: a `some` line and usually a `full` line.
pub fn psi(text: &str) -> Result<Psi, ParseError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || ParseError::Psi(line.chars().take(80).collect());
        let mut it = line.split_whitespace();
        let kind = it.next().ok_or_else(bad)?;
        let mut p = PsiLine::default();
        let mut seen = 0;
        for field in it {
            let (k, v) = field.split_once('=').ok_or_else(bad)?;
            match k {
                "avg10" => p.avg10 = v.parse().map_err(|_| bad())?,
                "avg60" => p.avg60 = v.parse().map_err(|_| bad())?,
                "avg300" => p.avg300 = v.parse().map_err(|_| bad())?,
                "total" => p.total = v.parse().map_err(|_| bad())?,
                _ => continue,
            }
            seen += 1;
        }
        if seen < 4 || !(p.avg10.is_finite() && p.avg60.is_finite() && p.avg300.is_finite()) {
            return Err(bad());
        }
        match kind {
            "some" => some = Some(p),
            "full" => full = Some(p),
            _ => {}
        }
    }
    some.map(|some| Psi { some, full }).ok_or_else(|| {
        ParseError::Psi(text.lines().next().unwrap_or("").chars().take(80).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn singles() {
        assert_eq!(single("123\n"), Ok(Limit::Value(123)));
        assert_eq!(single("max\n"), Ok(Limit::Max));
        assert!(single("").is_err());
        assert!(single("-1").is_err());
        assert!(single("12 34").is_err());
    }

    #[test]
    fn flats() {
        let text =
            "low 0\nhigh 278\nmax 103\noom 3\noom_kill 3\noom_group_kill 0\nsomething_new 9\n";
        let kv = flat(text).expect("parses");
        assert_eq!(flat_get(&kv, "oom_kill"), Some(3));
        assert_eq!(flat_get(&kv, "something_new"), Some(9));
        assert_eq!(flat_get(&kv, "absent"), None);
        assert!(flat("oom_kill x\n").is_err());
        assert!(flat("just_a_key\n").is_err());
        // v1 memory.oom_control
        let v1 = flat("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").expect("v1");
        assert_eq!(flat_get(&v1, "oom_kill"), Some(2));
    }

    #[test]
    fn psi_files() {
        let text = "some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\nfull avg10=0.50 avg60=0.25 avg300=0.00 total=6543\n";
        let p = psi(text).expect("psi");
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.total, 123_456);
        assert_eq!(p.full.map(|f| f.avg60), Some(0.25));
        let cpu_old = psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").expect("some only");
        assert_eq!(cpu_old.full, None);
        assert!(psi("").is_err());
        assert!(psi("some avg10=x avg60=0 avg300=0 total=0\n").is_err());
        assert!(psi("some avg10=1 total=0\n").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}") {
            let _ = single(&s);
            let _ = flat(&s);
            let _ = psi(&s);
        }
        #[test]
        fn psi_like_never_panics(s in "(some|full|x)( (avg10|avg60|avg300|total)=[0-9.a-z]{0,6}){0,5}\n?") {
            let _ = psi(&s);
        }
    }
}
