//! Walking a position-marked YAML tree, collecting every problem with its line
//! and field path instead of stopping at the first.

use super::Problem;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};

/// The first problem with the document's shape, before a tree is built: a
/// mapping or list nested deeper than `max_depth` (a deep tree overflows the
/// stack when dropped), or more than `max_nodes` values (each costs ~200 bytes
/// in the tree: 2M tiny ones in a 4 MiB file took 390 MB). `None` when it is
/// fine or not valid YAML (the loader then reports the syntax error). Streams
/// parser events, so nothing here recurses or grows.
pub(super) fn shape_problem(text: &str, max_depth: usize, max_nodes: usize) -> Option<Problem> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    let mut nodes = 0usize;
    let problem = |line: usize, message: String| Problem {
        line,
        field: "(document)".into(),
        message,
    };
    loop {
        let (event, mark) = parser.next_token().ok()?;
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) | Event::Scalar(..) => {
                nodes += 1;
                if nodes > max_nodes {
                    return Some(problem(
                        mark.line(),
                        format!("more than {max_nodes} values (use `generate:` for large meshes)"),
                    ));
                }
                if !matches!(event, Event::Scalar(..)) {
                    depth += 1;
                    if depth > max_depth {
                        return Some(problem(
                            mark.line(),
                            format!(
                                "nested more than {max_depth} levels deep (a scenario needs at most 5)"
                            ),
                        ));
                    }
                }
            }
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            // Only the first document is loaded.
            Event::DocumentEnd | Event::StreamEnd => return None,
            _ => {}
        }
    }
}

pub(super) fn span_line(span: &Span) -> usize {
    span.start().map(|m| m.line()).unwrap_or(0)
}

pub(super) fn line(node: &Node) -> usize {
    span_line(node.span())
}

/// Collected problems.
#[derive(Default)]
pub(super) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn add(&mut self, line: usize, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            line,
            field: field.into(),
            message: message.into(),
        });
    }
}

fn kind(node: &Node) -> &'static str {
    match node {
        Node::Scalar(_) => "a scalar",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

/// A mapping at a field path.
pub(super) struct Map<'a> {
    pub node: &'a MarkedMappingNode,
    pub path: String,
}

impl<'a> Map<'a> {
    /// `node` as a mapping, or a problem.
    pub fn of(node: &'a Node, path: &str, p: &mut Problems) -> Option<Map<'a>> {
        match node {
            Node::Mapping(m) => Some(Map {
                node: m,
                path: path.to_string(),
            }),
            other => {
                p.add(
                    line(other),
                    path,
                    format!("expected a mapping, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn line(&self) -> usize {
        span_line(self.node.span())
    }

    /// Reports every key not in `allowed`.
    pub fn only(&self, allowed: &[&str], p: &mut Problems) {
        for (k, _) in self.node.iter() {
            if !allowed.contains(&k.as_str()) {
                p.add(
                    span_line(k.span()),
                    self.field(k.as_str()),
                    format!("unknown field; expected one of: {}", allowed.join(", ")),
                );
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.node.get_node(key)
    }

    /// A present, non-null scalar as text.
    pub fn scalar(&self, key: &str, p: &mut Problems) -> Option<(&'a MarkedScalarNode, usize)> {
        let node = self.get(key)?;
        match node {
            Node::Scalar(s) => Some((s, span_line(s.span()))),
            other => {
                p.add(
                    line(other),
                    self.field(key),
                    format!("expected a single value, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub fn string(&self, key: &str, p: &mut Problems) -> Option<(String, usize)> {
        self.scalar(key, p)
            .map(|(s, l)| (s.as_str().to_string(), l))
    }

    /// A required string; a problem when missing or empty.
    pub fn required_string(&self, key: &str, p: &mut Problems) -> Option<(String, usize)> {
        match self.string(key, p) {
            Some((s, l)) if !s.trim().is_empty() => Some((s, l)),
            Some((_, l)) => {
                p.add(l, self.field(key), "must not be empty");
                None
            }
            None if self.get(key).is_none() => {
                p.add(self.line(), self.field(key), "missing required field");
                None
            }
            None => None,
        }
    }

    pub fn bool(&self, key: &str, p: &mut Problems) -> Option<bool> {
        let (s, l) = self.scalar(key, p)?;
        match s.as_bool() {
            Some(b) => Some(b),
            None => {
                p.add(
                    l,
                    self.field(key),
                    format!("expected true or false, found {:?}", s.as_str()),
                );
                None
            }
        }
    }

    pub fn u64(&self, key: &str, p: &mut Problems) -> Option<(u64, usize)> {
        let (s, l) = self.scalar(key, p)?;
        match s.as_str().trim().parse::<u64>() {
            Ok(n) => Some((n, l)),
            Err(_) => {
                p.add(
                    l,
                    self.field(key),
                    format!(
                        "expected a non-negative whole number, found {:?}",
                        s.as_str()
                    ),
                );
                None
            }
        }
    }

    pub fn list(&self, key: &str, p: &mut Problems) -> Option<&'a [Node]> {
        match self.get(key)? {
            Node::Sequence(s) => Some(s.as_slice()),
            other => {
                p.add(
                    line(other),
                    self.field(key),
                    format!("expected a list, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of strings.
    pub fn strings(&self, key: &str, p: &mut Problems) -> Option<Vec<(String, usize)>> {
        let items = self.list(key, p)?;
        let mut out = Vec::new();
        for (i, n) in items.iter().enumerate() {
            match n {
                Node::Scalar(s) => out.push((s.as_str().to_string(), span_line(s.span()))),
                other => p.add(
                    line(other),
                    format!("{}[{i}]", self.field(key)),
                    format!("expected a single value, found {}", kind(other)),
                ),
            }
        }
        Some(out)
    }
}
