//! A small YAML tree that remembers the line of every node, so that config errors
//! can say `resource-limits.yaml:42: groups.student.aggregate.memory_high: …`.
//!
//! Built from `saphyr-parser` events. Scalars keep their text and whether they were
//! plain (unquoted): only plain scalars are resolved to null/bool/number, as in the
//! YAML 1.2 core schema. Aliases are expanded. Duplicate keys are reported.

use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line of the node's first character.
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A plain scalar resolved as the YAML 1.2 core schema does.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        match &self.kind {
            Kind::Scalar { text, plain: false } => Some(Scalar::Str(text)),
            Kind::Scalar { text, plain: true } => Some(resolve_plain(text)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }

    /// The text of a scalar key or value, whatever its type.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages ("a mapping", "a list", …).
    pub fn describe(&self) -> String {
        match (&self.kind, self.scalar()) {
            (Kind::Map(_), _) => "a mapping".into(),
            (Kind::Seq(_), _) => "a list".into(),
            (_, Some(Scalar::Null)) => "null".into(),
            (_, Some(Scalar::Bool(b))) => format!("{b}"),
            (_, Some(Scalar::Int(i))) => format!("{i}"),
            (_, Some(Scalar::Float(f))) => format!("{f}"),
            (_, Some(Scalar::Str(s))) => format!("{s:?}"),
            (_, None) => "?".into(),
        }
    }

    /// Convert to JSON, for config sections ds01 keeps but does not interpret.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
            Kind::Scalar { .. } => match self.scalar() {
                Some(Scalar::Null) | None => Value::Null,
                Some(Scalar::Bool(b)) => Value::Bool(b),
                Some(Scalar::Int(i)) => Value::from(i),
                Some(Scalar::Float(f)) => serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                Some(Scalar::Str(s)) => Value::String(s.to_string()),
            },
        }
    }
}

fn resolve_plain(text: &str) -> Scalar<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return Scalar::Int(i);
    }
    let looks_float = !digits.is_empty()
        && digits.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+'
        })
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.as_bytes()[0] != b'e'
        && digits.as_bytes()[0] != b'E';
    if looks_float && let Ok(f) = text.parse::<f64>() {
        return Scalar::Float(f);
    }
    Scalar::Str(text)
}

/// A YAML syntax error, with its 1-based line.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Problems found while building the tree that do not stop it (duplicate keys).
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub line: usize,
    pub key: String,
    pub first_line: usize,
}

/// Parse the first document of `src`. An empty document is `None`.
pub fn parse(src: &str) -> Result<(Option<Node>, Vec<Duplicate>), SyntaxError> {
    enum Frame {
        Seq(usize, usize, Vec<Node>),
        Map(usize, usize, Vec<(Node, Node)>, Option<Node>),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut dups = Vec::new();

    // Attach a finished node to its parent (or make it the root). Returns the node
    // back when it is the root.
    fn attach(stack: &mut [Frame], node: Node, dups: &mut Vec<Duplicate>) -> Option<Node> {
        match stack.last_mut() {
            None => Some(node),
            Some(Frame::Seq(_, _, items)) => {
                items.push(node);
                None
            }
            Some(Frame::Map(_, _, entries, pending)) => {
                match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => {
                        if let Some(text) = key.text()
                            && let Some((first, _)) =
                                entries.iter().find(|(k, _)| k.text() == Some(text))
                        {
                            dups.push(Duplicate {
                                line: key.line,
                                key: text.to_string(),
                                first_line: first.line,
                            });
                        }
                        entries.push((key, node));
                    }
                }
                None
            }
        }
    }

    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(|e| SyntaxError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        let line = span.start.line();
        let finished = match event {
            Event::DocumentEnd => {
                // Only the first document is read.
                break;
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let node = Node {
                    line,
                    kind: Kind::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => Some(Node { line, ..n.clone() }),
                None => {
                    return Err(SyntaxError {
                        line,
                        message: "alias to an unknown anchor".into(),
                    });
                }
            },
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(line, anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(line, anchor, Vec::new(), None));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Seq(l, a, items)) => (
                        Node {
                            line: l,
                            kind: Kind::Seq(items),
                        },
                        a,
                    ),
                    Some(Frame::Map(l, a, entries, _)) => (
                        Node {
                            line: l,
                            kind: Kind::Map(entries),
                        },
                        a,
                    ),
                    None => {
                        return Err(SyntaxError {
                            line,
                            message: "unbalanced YAML structure".into(),
                        });
                    }
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) | Event::Nothing => {
                None
            }
        };
        if let Some(node) = finished
            && let Some(r) = attach(&mut stack, node, &mut dups)
        {
            root = Some(r);
        }
    }
    Ok((root, dups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_and_types() {
        let src = "a: 1\nb:\n  c: \"2\"\n  d: ~\n  e: [x, 1.5]\nf: true\n";
        let (root, dups) = parse(src).expect("parses");
        assert!(dups.is_empty());
        let root = root.expect("has a document");
        let m = root.as_map().expect("map");
        assert_eq!(m[0].0.text(), Some("a"));
        assert_eq!(m[0].1.scalar(), Some(Scalar::Int(1)));
        let b = m[1].1.as_map().expect("b is a map");
        assert_eq!(b[0].1.line, 3);
        assert_eq!(b[0].1.scalar(), Some(Scalar::Str("2")));
        assert!(b[1].1.is_null());
        assert_eq!(b[2].1.line, 5);
        assert_eq!(m[2].1.scalar(), Some(Scalar::Bool(true)));
    }

    #[test]
    fn scalars_resolve_like_core_schema() {
        assert_eq!(resolve_plain("32g"), Scalar::Str("32g"));
        assert_eq!(resolve_plain("-3"), Scalar::Int(-3));
        assert_eq!(resolve_plain("0.5"), Scalar::Float(0.5));
        assert_eq!(resolve_plain("1e3"), Scalar::Float(1000.0));
        assert_eq!(resolve_plain("e3"), Scalar::Str("e3"));
        assert_eq!(resolve_plain("9600%"), Scalar::Str("9600%"));
        assert_eq!(resolve_plain("yes"), Scalar::Str("yes"));
    }

    #[test]
    fn duplicates_and_errors() {
        let (_, dups) = parse("a: 1\na: 2\n").expect("parses");
        assert_eq!(
            dups,
            vec![Duplicate {
                line: 2,
                key: "a".into(),
                first_line: 1
            }]
        );
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed flow sequence");
        assert!(err.line >= 1);
        assert_eq!(parse("").expect("empty ok").0, None);
    }

    #[test]
    fn aliases_expand() {
        let (root, _) = parse("x: &a {k: 1}\ny: *a\n").expect("parses");
        let root = root.expect("doc");
        let m = root.as_map().expect("map");
        assert_eq!(m[1].1.as_map().map(|m| m.len()), Some(1));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }
        #[test]
        fn never_panics_yamlish(s in "[a-z:\\-\\[\\]{}&*!|>'\" \n#0-9]{0,200}") {
            let _ = parse(&s);
        }
    }
}
