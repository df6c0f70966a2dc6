//! A fast path for the flat JSON objects of ds01's line logs (one object of scalar
//! values per line, as the collector writes its stats lines).
//!
//! [`scan`] walks such a line once, handing each `key: value` pair to the caller
//! without building anything, and gives up (`None`) on whatever is outside the
//! plain subset it knows exactly: escapes, control characters, nested objects or
//! arrays, anything malformed. The caller then parses the line with serde_json, so
//! the fast path never decides a line differently — it only decides the common
//! lines sooner (a property test holds it to that). serde_json's borrowed parse was
//! most of the time of `ds01 stats --summary` (docs in BENCHMARKS.md).

/// One value of a flat object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// A string without escapes, as it stands between its quotes.
    Str(&'a str),
    /// A number's text, checked against JSON's number grammar.
    Num(&'a str),
    Bool(bool),
    Null,
}

impl Scalar<'_> {
    /// A non-negative integer that fits `T` (`1.0`, `1e3` and `-0` are left to
    /// the full parser).
    pub fn unsigned<T: std::str::FromStr>(self) -> Option<T> {
        match self {
            Scalar::Num(t) if t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok(),
            _ => None,
        }
    }

    pub fn float(self) -> Option<f64> {
        match self {
            Scalar::Num(t) => Some(decimal(t).unwrap_or_else(|| t.parse().unwrap_or(f64::NAN)))
                .filter(|v| !v.is_nan()),
            _ => None,
        }
    }
}

/// `10^k`, exact in an `f64` up to `10^22`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A plain decimal (`-12.345`, no exponent) whose digits fit 2^53 exactly, as
/// `digits / 10^k`: both exact, so the one division rounds correctly (Clinger's
/// fast path, as the standard parser takes for such numbers, without its general
/// machinery). `None` for anything else.
fn decimal(t: &str) -> Option<f64> {
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t),
    };
    let mut m: u64 = 0;
    let mut frac = None;
    for (i, c) in digits.bytes().enumerate() {
        match c {
            b'0'..=b'9' => m = m.checked_mul(10)?.checked_add(u64::from(c - b'0'))?,
            b'.' if frac.is_none() => frac = Some(digits.len() - i - 1),
            _ => return None,
        }
    }
    if m > 1 << 53 {
        return None;
    }
    let v = m as f64 / POW10.get(frac.unwrap_or(0))?;
    Some(if neg { -v } else { v })
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The string starting at the quote `b[i]`: its text and the index after it, or
/// `None` for a string with an escape or a control character. No `memchr`: the
/// strings are short, and a call costs more than it saves.
fn string(line: &str, i: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    let start = i + 1;
    let mut j = start;
    // Eight bytes at a time while none is a quote, a backslash or a control
    // character (the profile's hot loop; keys and values are 5–40 bytes).
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(w) = b.get(j..j + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let x = u64::from_le_bytes(word);
        let special = zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if special != 0 {
            break;
        }
        j += 8;
    }
    loop {
        match *b.get(j)? {
            b'"' => break,
            b'\\' => return None,
            c if c < 0x20 => return None,
            _ => j += 1,
        }
    }
    // The quotes are ASCII, so the cut is on character boundaries.
    Some((line.get(start..j)?, j + 1))
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// The number starting at `b[i]` (JSON's grammar): the index after it, and whether
/// it has an exponent.
fn number(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if !matches!(b.get(i), Some(b'e' | b'E')) {
        return Some((i, false));
    }
    i += 1;
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let end = digits(b, i);
    (end > i).then_some((end, true))
}

/// Walk the flat object `line`, calling `pair` with each key and value in order.
/// `Some(())` when the whole line is one such object and `pair` accepted every
/// pair (it returns `false` to give up); `None` otherwise, and then the line must
/// be parsed by a full JSON parser.
pub fn scan<'a>(line: &'a str, mut pair: impl FnMut(&'a str, Scalar<'a>) -> bool) -> Option<()> {
    let b = line.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (ws(b, i + 1) == b.len()).then_some(());
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key, next) = string(line, i)?;
        i = ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        let (value, next) = match b.get(i)? {
            b'"' => {
                let (s, next) = string(line, i)?;
                (Scalar::Str(s), next)
            }
            b'-' | b'0'..=b'9' => {
                let (end, exponent) = number(b, i)?;
                let text = line.get(i..end)?;
                // serde_json refuses a number out of f64's range (1e400): so
                // does this, for any number that could be one.
                if (exponent || text.len() > 300) && !text.parse::<f64>().is_ok_and(f64::is_finite)
                {
                    return None;
                }
                (Scalar::Num(text), end)
            }
            b't' if b[i..].starts_with(b"true") => (Scalar::Bool(true), i + 4),
            b'f' if b[i..].starts_with(b"false") => (Scalar::Bool(false), i + 5),
            b'n' if b[i..].starts_with(b"null") => (Scalar::Null, i + 4),
            _ => return None,
        };
        if !pair(key, value) {
            return None;
        }
        i = ws(b, next);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => return (ws(b, i + 1) == b.len()).then_some(()),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(line: &str) -> Option<Vec<(String, Scalar<'_>)>> {
        let mut v = Vec::new();
        scan(line, |k, s| {
            v.push((k.to_string(), s));
            true
        })?;
        Some(v)
    }

    #[test]
    fn plain_objects() {
        assert_eq!(
            pairs(r#"{"a":"x","b":-1.5e3,"c":null,"d":true,"e":false,"f":0}"#),
            Some(vec![
                ("a".into(), Scalar::Str("x")),
                ("b".into(), Scalar::Num("-1.5e3")),
                ("c".into(), Scalar::Null),
                ("d".into(), Scalar::Bool(true)),
                ("e".into(), Scalar::Bool(false)),
                ("f".into(), Scalar::Num("0")),
            ])
        );
        // Python's json.dumps spacing (the scripts' lines).
        assert_eq!(
            pairs(r#" { "a" : "ü" , "b": 2 } "#),
            Some(vec![
                ("a".into(), Scalar::Str("ü")),
                ("b".into(), Scalar::Num("2")),
            ])
        );
        assert_eq!(pairs("{}"), Some(vec![]));
    }

    #[test]
    fn what_it_leaves_to_the_full_parser() {
        for line in [
            r#"{"a":"x\"y"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":{"b":1}}"#,
            r#"{"a":[1]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e400}"#,
            r#"{"a":NaN}"#,
            r#"{"a":nul}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"["a"]"#,
            "",
        ] {
            assert_eq!(pairs(line), None, "{line}");
        }
    }

    #[test]
    fn scalars_convert_only_when_exact() {
        assert_eq!(Scalar::Num("42").unsigned::<u64>(), Some(42));
        assert_eq!(Scalar::Num("42.0").unsigned::<u64>(), None);
        assert_eq!(Scalar::Num("-0").unsigned::<u64>(), None);
        assert_eq!(Scalar::Num("4294967296").unsigned::<u32>(), None);
        assert_eq!(Scalar::Num("1e2").float(), Some(100.0));
        assert_eq!(Scalar::Null.float(), None);
        assert_eq!(Scalar::Num("94.47").float(), Some(94.47));
        assert_eq!(Scalar::Num("-0.5").float(), Some(-0.5));
        assert_eq!(
            Scalar::Num("12345678901234567890.5").float(),
            Some(12345678901234567890.5)
        );
    }

    proptest::proptest! {
        /// The fast decimal path gives the standard parser's (correctly rounded)
        /// answer.
        #[test]
        fn decimals_as_the_standard_parser(m in 0u64..(1 << 53), k in 0usize..23, neg: bool) {
            let digits = format!("{m:0>w$}", w = k + 1);
            let (int, frac) = digits.split_at(digits.len() - k);
            let text = format!("{}{int}{}{frac}", if neg { "-" } else { "" }, if k > 0 { "." } else { "" });
            proptest::prop_assert_eq!(Scalar::Num(&text).float(), text.parse::<f64>().ok(), "{}", text);
        }
    }
}
