//! Where each key of a YAML file is: key path → line number.
//!
//! serde_yaml_ng reports a location only for syntax errors; the semantic
//! checks (an undefined destination, an unreadable PEM file, two spellings
//! of one setting) happen on the parsed value, which has no spans. This
//! small pass over the text follows block-style indentation and records the
//! line of every mapping key and sequence item, under the same dotted paths
//! the validator uses (`destinations.es.urls[1]`). Flow-style collections
//! (`{a: 1}`, `[a, b]`) are not split: their entries resolve to the line of
//! the key that holds them, which still points the operator at the place.

use std::collections::HashMap;

/// Key path → 1-based line.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

struct Frame {
    indent: usize,
    path: String,
    /// A sequence item (`- `) rather than a mapping key.
    item: bool,
    /// Items seen so far in the sequence this key holds.
    next_item: usize,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut index = LineIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        // Lines more indented than this belong to a block scalar (`|`, `>`).
        let mut block_scalar: Option<usize> = None;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let content = strip_comment(raw);
            let trimmed = content.trim_start();
            if trimmed.is_empty() || trimmed.starts_with("---") || trimmed.starts_with("...") {
                continue;
            }
            let mut indent = content.len() - trimmed.len();
            if let Some(b) = block_scalar {
                if indent > b {
                    continue;
                }
                block_scalar = None;
            }
            let mut rest = trimmed;
            // Sequence items, possibly several on one line (`- - a`).
            while rest == "-" || rest.starts_with("- ") {
                while stack
                    .last()
                    .is_some_and(|f| f.indent > indent || (f.indent == indent && f.item))
                {
                    stack.pop();
                }
                let parent_path = match stack.last_mut() {
                    Some(parent) => {
                        let i = parent.next_item;
                        parent.next_item += 1;
                        format!("{}[{i}]", parent.path)
                    }
                    None => format!("[{}]", 0),
                };
                index.lines.entry(parent_path.clone()).or_insert(line_no);
                stack.push(Frame {
                    indent,
                    path: parent_path,
                    item: true,
                    next_item: 0,
                });
                let after = rest[1..].trim_start();
                indent += rest.len() - after.len();
                rest = after;
            }
            if rest.is_empty() {
                continue;
            }
            let Some((key, value)) = split_key(rest) else {
                continue;
            };
            while stack.last().is_some_and(|f| f.indent >= indent) {
                stack.pop();
            }
            let path = match stack.last() {
                Some(parent) => format!("{}.{key}", parent.path),
                None => key.to_owned(),
            };
            index.lines.entry(path.clone()).or_insert(line_no);
            let value = value.trim();
            if value.starts_with('|') || value.starts_with('>') {
                block_scalar = Some(indent);
            }
            stack.push(Frame {
                indent,
                path,
                item: false,
                next_item: 0,
            });
        }
        index
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(&l) = self.lines.get(p) {
                return Some(l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// The line without a trailing `# comment` (a `#` outside quotes that starts
/// the line or follows a space).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return &line[..i],
            None => {}
        }
        prev = c;
    }
    line
}

/// `key: value` → (key without quotes, value). None for a plain scalar.
fn split_key(s: &str) -> Option<(&str, &str)> {
    let (key, rest) = if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = s[1..].find(q)? + 1;
        (&s[1..end], &s[end + 1..])
    } else {
        if s.starts_with('{') || s.starts_with('[') {
            return None;
        }
        let colon = s
            .char_indices()
            .find(|&(i, c)| c == ':' && s[i + 1..].chars().next().is_none_or(|n| n == ' '))?
            .0;
        (s[..colon].trim_end(), &s[colon..])
    };
    let value = rest.trim_start().strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with(' ')) {
        return None;
    }
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
service:            # the listener
  port: 8901
  manage:
    port: 8902
destinations:
  es:
    urls:
      - http://a:1/x
      - \"http://b:2/y\"
    headers: {a: b}
    script: |
      not: a key
    protocol: HTTP_1_1
routing:
  mode: static-multi-destination
  destinations:
  - es
  - name: x
    other: y
\"quoted key\": 1
";

    #[test]
    fn finds_keys_and_items() {
        let idx = LineIndex::new(TEXT);
        assert_eq!(idx.line_of("service"), Some(1));
        assert_eq!(idx.line_of("service.port"), Some(2));
        assert_eq!(idx.line_of("service.manage.port"), Some(4));
        assert_eq!(idx.line_of("destinations.es.urls"), Some(7));
        assert_eq!(idx.line_of("destinations.es.urls[0]"), Some(8));
        assert_eq!(idx.line_of("destinations.es.urls[1]"), Some(9));
        // Flow mapping: its entries resolve to the key that holds it.
        assert_eq!(idx.line_of("destinations.es.headers.a"), Some(10));
        // A block scalar's text is not keys.
        assert_eq!(idx.line_of("destinations.es.script.not"), Some(11));
        assert_eq!(idx.line_of("destinations.es.protocol"), Some(13));
        assert_eq!(idx.line_of("routing.destinations[0]"), Some(17));
        assert_eq!(idx.line_of("routing.destinations[1]"), Some(18));
        assert_eq!(idx.line_of("routing.destinations[1].other"), Some(19));
        assert_eq!(idx.line_of("quoted key"), Some(20));
        assert_eq!(idx.line_of("nothing"), None);
    }
}
