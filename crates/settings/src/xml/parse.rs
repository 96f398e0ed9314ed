//! A small, strict, position-tracking XML 1.0 parser producing the lossless
//! tree of [`super::tree`]. It is iterative (no recursion on nesting depth),
//! so hostile files cannot exhaust the stack, and it never panics on input.

use super::tree::{Attr, Document, Element, Node, Pos};

/// Deepest element nesting accepted. VirtualBox's own limits (snapshot tree
/// 250, medium tree 300) need a few levels each, so this leaves ample room
/// while keeping recursive consumers of the tree safe.
pub const MAX_DEPTH: usize = 2000;

/// A well-formedness error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// Where the problem was detected.
    pub pos: Pos,
    /// What is wrong.
    pub msg: String,
}

type R<T> = Result<T, XmlError>;

struct Cursor<'a> {
    src: &'a str,
    i: usize,
    line: u32,
    col: u32,
}

impl<'a> Cursor<'a> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }
    fn rest(&self) -> &'a str {
        &self.src[self.i..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn starts(&self, s: &str) -> bool {
        self.rest().starts_with(s)
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }
    fn advance(&mut self, n_bytes: usize) -> &'a str {
        let start = self.i;
        let end = start + n_bytes;
        while self.i < end {
            self.bump();
        }
        &self.src[start..end]
    }
    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(XmlError {
            pos: self.pos(),
            msg: msg.into(),
        })
    }
    fn err_at<T>(&self, pos: Pos, msg: impl Into<String>) -> R<T> {
        Err(XmlError {
            pos,
            msg: msg.into(),
        })
    }
    /// Consume up to (and including) `end`; returns the text before it.
    fn until(&mut self, end: &str, what: &str) -> R<&'a str> {
        let start_pos = self.pos();
        match self.rest().find(end) {
            Some(n) => {
                let s = self.advance(n);
                check_chars(s, start_pos)?;
                self.advance(end.len());
                Ok(s)
            }
            None => self.err_at(start_pos, format!("unterminated {what}")),
        }
    }
    fn ws(&mut self) -> &'a str {
        let n = self
            .rest()
            .find(|c: char| !is_ws(c))
            .unwrap_or(self.rest().len());
        self.advance(n)
    }
    fn name(&mut self) -> R<&'a str> {
        let first = match self.peek() {
            Some(c) if is_name_start(c) => c,
            Some(c) => {
                return self.err(format!("invalid character {c:?} where a name should start"))
            }
            None => return self.err("unexpected end of file where a name should start"),
        };
        let _ = first;
        let n = self
            .rest()
            .find(|c: char| !is_name_char(c))
            .unwrap_or(self.rest().len());
        Ok(self.advance(n))
    }
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}
fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (c as u32) >= 0xC0
}
fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit() || c == '-' || c == '.' || c == '\u{B7}'
}
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

fn check_chars(s: &str, start: Pos) -> R<()> {
    let mut pos = start;
    for c in s.chars() {
        if !is_xml_char(c) {
            return Err(XmlError {
                pos,
                msg: format!("character U+{:04X} is not allowed in XML", c as u32),
            });
        }
        if c == '\n' {
            pos.line = pos.line.saturating_add(1);
            pos.col = 1;
        } else {
            pos.col = pos.col.saturating_add(1);
        }
    }
    Ok(())
}

/// Decode the five predefined entities and character references.
pub fn decode_entities(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let semi = rest
            .find(';')
            .ok_or_else(|| "'&' without a terminating ';'".to_string())?;
        let ent = &rest[..semi];
        rest = &rest[semi + 1..];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    return Err(format!("unknown entity &{ent};"));
                };
                match code.and_then(char::from_u32) {
                    Some(c) if is_xml_char(c) => c,
                    _ => return Err(format!("invalid character reference &{ent};")),
                }
            }
        };
        out.push(c);
    }
    out.push_str(rest);
    Ok(out)
}

/// Attribute-value normalisation (XML 1.0 §3.3.3): literal tab, CR and LF
/// become spaces before references are decoded.
fn decode_attr(raw: &str) -> Result<String, String> {
    let normalised: String = if raw.contains(['\t', '\n', '\r']) {
        raw.replace("\r\n", " ").replace(['\t', '\n', '\r'], " ")
    } else {
        raw.to_string()
    };
    decode_entities(&normalised)
}

/// Parse a document from bytes: UTF-8 (optional BOM), or ISO-8859-1 when the
/// declaration says so and the bytes are not UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> R<Document> {
    match std::str::from_utf8(bytes) {
        Ok(s) => parse(s),
        Err(e) => {
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_ascii_lowercase();
            let decl_end = head.find("?>").unwrap_or(0);
            let decl = &head[..decl_end];
            if decl.contains("iso-8859-1") || decl.contains("latin1") {
                let s: String = bytes.iter().map(|&b| b as char).collect();
                let mut doc = parse(&s)?;
                doc.latin1 = true;
                Ok(doc)
            } else {
                // Report the position of the first invalid byte.
                let good = &bytes[..e.valid_up_to()];
                let text = String::from_utf8_lossy(good);
                let line = 1 + text.matches('\n').count() as u32;
                let col = 1 + text.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32;
                Err(XmlError {
                    pos: Pos { line, col },
                    msg: "file is not valid UTF-8".into(),
                })
            }
        }
    }
}

/// Parse a document from text.
pub fn parse(src: &str) -> R<Document> {
    let mut c = Cursor {
        src,
        i: 0,
        line: 1,
        col: 1,
    };
    let mut prolog = Vec::new();
    if c.starts("\u{FEFF}") {
        c.i += 3;
        prolog.push(Node::Markup("\u{FEFF}".into()));
    }
    if c.starts("<?xml") && c.rest()[5..].starts_with(|ch: char| is_ws(ch)) {
        let start = c.i;
        c.until("?>", "XML declaration")?;
        prolog.push(Node::Markup(src[start..c.i].to_string()));
    }
    // Prolog: whitespace, comments, PIs, DOCTYPE.
    loop {
        let w = c.ws();
        if !w.is_empty() {
            prolog.push(Node::Text(w.to_string()));
        }
        if c.starts("<!--") || c.starts("<?") || c.starts("<!DOCTYPE") {
            prolog.push(Node::Markup(misc(&mut c)?));
        } else if c.starts("<") {
            break;
        } else if c.peek().is_none() {
            return c.err("no root element");
        } else {
            return c.err("text before the root element");
        }
    }
    let root = element_tree(&mut c)?;
    let mut epilog = Vec::new();
    loop {
        let w = c.ws();
        if !w.is_empty() {
            epilog.push(Node::Text(w.to_string()));
        }
        if c.peek().is_none() {
            break;
        }
        if c.starts("<!--") || (c.starts("<?") && !c.starts("<?xml ")) {
            epilog.push(Node::Markup(misc(&mut c)?));
        } else {
            return c.err("content after the root element");
        }
    }
    Ok(Document {
        prolog,
        root,
        epilog,
        latin1: false,
    })
}

/// A comment, PI or DOCTYPE, returned verbatim.
fn misc(c: &mut Cursor) -> R<String> {
    let start = c.i;
    let pos = c.pos();
    if c.starts("<!--") {
        c.advance(4);
        let body = c.until("-->", "comment")?;
        if body.contains("--") || body.ends_with('-') {
            return c.err_at(pos, "'--' is not allowed inside a comment");
        }
    } else if c.starts("<?") {
        c.advance(2);
        let target = c.name()?;
        if target.eq_ignore_ascii_case("xml") {
            return c.err_at(
                pos,
                "XML declaration is only allowed at the start of the file",
            );
        }
        c.until("?>", "processing instruction")?;
    } else {
        // DOCTYPE without internal subset support beyond bracket matching.
        c.advance(9);
        let mut depth = 0i32;
        loop {
            match c.bump() {
                None => return c.err_at(pos, "unterminated DOCTYPE"),
                Some('[') => depth += 1,
                Some(']') => depth -= 1,
                Some('>') if depth <= 0 => break,
                Some(_) => {}
            }
        }
    }
    Ok(c.src[start..c.i].to_string())
}

/// Parse the start tag at the cursor (`<` is next).
fn start_tag(c: &mut Cursor) -> R<Element> {
    let pos = c.pos();
    c.bump(); // '<'
    let name = c.name()?.to_string();
    let mut el = Element::new(&name);
    el.fresh = false;
    el.pos = pos;
    loop {
        let w = c.ws();
        if c.starts("/>") {
            c.advance(2);
            el.ws_end = w.to_string();
            el.self_closing = true;
            return Ok(el);
        }
        if c.starts(">") {
            c.advance(1);
            el.ws_end = w.to_string();
            el.self_closing = false;
            return Ok(el);
        }
        if c.peek().is_none() {
            return c.err_at(pos, format!("unterminated start tag <{name}>"));
        }
        if w.is_empty() {
            return c.err("expected whitespace, '>' or '/>' in start tag");
        }
        let apos = c.pos();
        let aname = c.name()?.to_string();
        let eq_start = c.i;
        c.ws();
        if c.peek() != Some('=') {
            return c.err(format!("expected '=' after attribute name {aname}"));
        }
        c.bump();
        c.ws();
        let eq = c.src[eq_start..c.i].to_string();
        let quote = match c.peek() {
            Some(q @ ('"' | '\'')) => q,
            _ => return c.err(format!("expected a quoted value for attribute {aname}")),
        };
        c.bump();
        let vpos = c.pos();
        let raw = match c.rest().find(quote) {
            Some(n) => c.advance(n),
            None => return c.err_at(vpos, format!("unterminated value of attribute {aname}")),
        };
        c.bump();
        check_chars(raw, vpos)?;
        if raw.contains('<') {
            return c.err_at(vpos, format!("'<' in the value of attribute {aname}"));
        }
        let value = decode_attr(raw).map_err(|m| XmlError { pos: vpos, msg: m })?;
        if el.attrs.iter().any(|a| a.name == aname) {
            return c.err_at(apos, format!("duplicate attribute {aname}"));
        }
        el.attrs.push(Attr {
            ws_before: w.to_string(),
            name: aname,
            eq,
            quote,
            raw: raw.to_string(),
            value,
            pos: apos,
        });
    }
}

/// Parse one element and everything inside it, iteratively.
fn element_tree(c: &mut Cursor) -> R<Element> {
    let root = start_tag(c)?;
    if root.self_closing {
        return Ok(root);
    }
    let mut stack: Vec<Element> = vec![root];
    loop {
        let Some(top) = stack.last_mut() else {
            return c.err("internal parser state");
        };
        if c.peek().is_none() {
            let (n, p) = (top.name.clone(), top.pos);
            return c.err_at(p, format!("element <{n}> is not closed"));
        }
        if c.starts("</") {
            let epos = c.pos();
            c.advance(2);
            let name = c.name()?;
            let w = c.ws();
            if c.peek() != Some('>') {
                return c.err("expected '>' to close the end tag");
            }
            c.bump();
            let Some(mut done) = stack.pop() else {
                return c.err("internal parser state");
            };
            if name != done.name {
                return c.err_at(
                    epos,
                    format!(
                        "end tag </{name}> does not match <{}> opened at {}:{}",
                        done.name, done.pos.line, done.pos.col
                    ),
                );
            }
            done.end_ws = w.to_string();
            match stack.last_mut() {
                Some(parent) => parent.children.push(Node::Element(done)),
                None => return Ok(done),
            }
        } else if c.starts("<!--") || c.starts("<?") {
            let m = misc(c)?;
            top.children.push(Node::Markup(m));
        } else if c.starts("<![CDATA[") {
            let start = c.i;
            c.advance(9);
            c.until("]]>", "CDATA section")?;
            let s = c.src[start..c.i].to_string();
            if let Some(t) = stack.last_mut() {
                t.children.push(Node::Markup(s));
            }
        } else if c.starts("<!") {
            return c.err("unexpected markup declaration inside an element");
        } else if c.starts("<") {
            let el = start_tag(c)?;
            if el.self_closing {
                if let Some(t) = stack.last_mut() {
                    t.children.push(Node::Element(el));
                }
            } else {
                if stack.len() >= MAX_DEPTH {
                    return c.err_at(el.pos, format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(el);
            }
        } else {
            let pos = c.pos();
            let n = c.rest().find('<').unwrap_or(c.rest().len());
            let t = c.advance(n);
            check_chars(t, pos)?;
            if t.contains("]]>") {
                return c.err_at(pos, "']]>' is not allowed in text");
            }
            decode_entities(t).map_err(|m| XmlError { pos, msg: m })?;
            if let Some(top) = stack.last_mut() {
                top.children.push(Node::Text(t.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) {
        let mut d = parse(s).unwrap();
        assert_eq!(d.to_xml(), s);
    }

    #[test]
    fn round_trips_bytes() {
        rt("<?xml version=\"1.0\"?>\n<!-- c -->\n<a x='1' y = \"&amp;2\"  >\n  <b/>\n  t&lt;<![CDATA[x<y]]><?p q?>\n</a >\n");
        rt("<r/>");
    }

    #[test]
    fn positions_in_errors() {
        let e = parse("<a>\n  <b>\n</a>").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (3, 1));
        assert!(e.msg.contains("does not match"), "{}", e.msg);
        let e = parse("<a x=\"1\" x=\"2\"/>").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (1, 10));
        let e = parse("<a>&bogus;</a>").unwrap_err();
        assert!(e.msg.contains("unknown entity"));
        assert!(parse("<a></a><b/>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a><!-- x -- y --></a>").is_err());
        assert!(parse("<a>\u{1}</a>").is_err());
    }

    #[test]
    fn decodes_attributes() {
        let d = parse("<a v=\"x&#10;&lt;&#x41;\tz\"/>").unwrap();
        assert_eq!(d.root.attr("v"), Some("x\n<A z"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "<a>".repeat(MAX_DEPTH + 5);
        assert!(parse(&s).is_err());
    }

    #[test]
    fn fresh_elements_are_indented() {
        let mut d = parse("<a>\n  <b/>\n</a>").unwrap();
        d.root.push_element(Element::new("c").with_attr("k", "v\""));
        d.root
            .child_mut("b")
            .unwrap()
            .push_element(Element::new("d"));
        assert_eq!(
            d.to_xml(),
            "<a>\n  <b>\n    <d/>\n  </b>\n  <c k=\"v&quot;\"/>\n</a>"
        );
    }
}
