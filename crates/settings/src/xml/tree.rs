//! The lossless XML tree: every byte of the source is kept (attribute order,
//! quoting, whitespace, comments), so an unmodified tree serialises back to
//! exactly the bytes it was parsed from, and a modified one differs only where
//! it was changed.

/// A 1-based line and column (in characters) inside the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number, starting at 1.
    pub col: u32,
}

/// One attribute, kept with its surrounding syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Whitespace before the attribute name (at least one character).
    pub(crate) ws_before: String,
    /// Qualified attribute name as written.
    pub name: String,
    /// The `=` with any whitespace around it, as written.
    pub(crate) eq: String,
    /// Quote character used (`"` or `'`).
    pub(crate) quote: char,
    /// The value as written between the quotes (still escaped).
    pub(crate) raw: String,
    /// The decoded value.
    pub value: String,
    /// Where the attribute name starts.
    pub pos: Pos,
}

/// A child of an element (or of the document outside the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// An element.
    Element(Element),
    /// Character data as written (still escaped), including whitespace.
    Text(String),
    /// Any other markup kept verbatim: comments, processing instructions,
    /// the XML declaration, CDATA sections and DOCTYPE.
    Markup(String),
}

/// An element with its attributes and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Qualified name as written (may carry a prefix such as `vbox:`).
    pub name: String,
    /// Attributes in source order.
    pub attrs: Vec<Attr>,
    /// Whitespace after the last attribute, before `>` or `/>`.
    pub(crate) ws_end: String,
    /// Written as `<x/>` (only meaningful while there are no children).
    pub(crate) self_closing: bool,
    /// Whitespace inside the end tag (`</x  >`).
    pub(crate) end_ws: String,
    /// Children in source order.
    pub children: Vec<Node>,
    /// Where the start tag begins (`<`).
    pub pos: Pos,
    /// Created by novabox rather than read from a file: the indentation pass
    /// lays out fresh elements the way VirtualBox does.
    pub(crate) fresh: bool,
}

/// A whole document: markup before the root, the root, markup after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Declaration, comments, whitespace before the root element.
    pub prolog: Vec<Node>,
    /// The root element.
    pub root: Element,
    /// Whitespace and comments after the root element.
    pub epilog: Vec<Node>,
    /// The source was ISO-8859-1 (written back in that encoding).
    pub latin1: bool,
}

/// Escape text for use inside a double-quoted attribute value.
pub fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escape character data.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// The local part of a possibly prefixed name (`vbox:Machine` → `Machine`).
pub fn local_name(name: &str) -> &str {
    match name.rfind(':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

impl Element {
    /// A new, empty element created by novabox.
    pub fn new(name: &str) -> Element {
        Element {
            name: name.to_string(),
            attrs: Vec::new(),
            ws_end: String::new(),
            self_closing: true,
            end_ws: String::new(),
            children: Vec::new(),
            pos: Pos::default(),
            fresh: true,
        }
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: &str, value: &str) -> Element {
        self.set_attr(name, value);
        self
    }

    /// The local name (without namespace prefix).
    pub fn local(&self) -> &str {
        local_name(&self.name)
    }

    /// The decoded value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    /// The attribute record (for its position).
    pub fn attr_node(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// Set an attribute's value: in place when it exists (keeping its
    /// position and quoting), appended after the others otherwise.
    pub fn set_attr(&mut self, name: &str, value: &str) {
        if let Some(a) = self.attrs.iter_mut().find(|a| a.name == name) {
            if a.value != value {
                a.value = value.to_string();
                a.raw = if a.quote == '\'' {
                    escape_attr(value).replace('\'', "&apos;")
                } else {
                    escape_attr(value)
                };
            }
            return;
        }
        self.attrs.push(Attr {
            ws_before: " ".to_string(),
            name: name.to_string(),
            eq: "=".to_string(),
            quote: '"',
            raw: escape_attr(value),
            value: value.to_string(),
            pos: Pos::default(),
        });
    }

    /// Remove an attribute; true when it was there.
    pub fn remove_attr(&mut self, name: &str) -> bool {
        let before = self.attrs.len();
        self.attrs.retain(|a| a.name != name);
        before != self.attrs.len()
    }

    /// Child elements in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// Mutable child elements in order.
    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// First child element with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.local() == name)
    }

    /// First child element with this local name, mutable.
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.local() == name)
    }

    /// All child elements with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.elements().filter(move |e| e.local() == name)
    }

    /// The child element `<local attr="value">`, mutable.
    pub fn find_mut(&mut self, local: &str, attr: &str, value: &str) -> Option<&mut Element> {
        self.elements_mut()
            .find(|e| e.local() == local && e.attr(attr) == Some(value))
    }

    /// The child element `<local attr="value">`, appended from `make` when
    /// there is none.
    pub fn upsert(
        &mut self,
        local: &str,
        attr: &str,
        value: &str,
        make: impl FnOnce() -> Element,
    ) -> &mut Element {
        if !self
            .elements()
            .any(|e| e.local() == local && e.attr(attr) == Some(value))
        {
            self.push_element(make());
        }
        self.find_mut(local, attr, value).expect("present")
    }

    /// First child element with this name, created (appended) when missing.
    pub fn child_or_insert(&mut self, name: &str) -> &mut Element {
        if self.child(name).is_none() {
            self.push_element(Element::new(name));
        }
        self.child_mut(name).expect("just inserted")
    }

    /// Append an element as the last child element (before trailing
    /// whitespace, so the closing tag keeps its indentation).
    pub fn push_element(&mut self, el: Element) {
        let at = match self.children.last() {
            Some(Node::Text(t)) if t.trim().is_empty() => self.children.len() - 1,
            _ => self.children.len(),
        };
        self.children.insert(at, Node::Element(el));
    }

    /// Insert an element right after the last child element named `after`
    /// (or append when there is none).
    pub fn insert_element_after(&mut self, after: &str, el: Element) {
        let idx = self
            .children
            .iter()
            .rposition(|n| matches!(n, Node::Element(e) if e.local() == after));
        match idx {
            Some(i) => self.children.insert(i + 1, Node::Element(el)),
            None => self.push_element(el),
        }
    }

    /// Remove child elements for which `pred` is true, together with the
    /// indentation text that precedes each.
    pub fn remove_elements(&mut self, mut pred: impl FnMut(&Element) -> bool) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.children.len() {
            let hit = matches!(&self.children[i], Node::Element(e) if pred(e));
            if hit {
                self.children.remove(i);
                removed += 1;
                if i > 0 {
                    if let Node::Text(t) = &self.children[i - 1] {
                        if t.trim().is_empty() {
                            self.children.remove(i - 1);
                            i -= 1;
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
        removed
    }

    /// Concatenated decoded text content (for elements such as `Description`).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(&crate::xml::parse::decode_entities(t).unwrap_or_else(|_| t.clone()));
            } else if let Node::Markup(m) = n {
                if let Some(inner) = m
                    .strip_prefix("<![CDATA[")
                    .and_then(|s| s.strip_suffix("]]>"))
                {
                    out.push_str(inner);
                }
            }
        }
        out
    }

    /// Replace the content by a single text node.
    pub fn set_text(&mut self, s: &str) {
        self.children = vec![Node::Text(escape_text(s))];
        self.self_closing = false;
    }

    fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for a in &self.attrs {
            out.push_str(&a.ws_before);
            out.push_str(&a.name);
            out.push_str(&a.eq);
            out.push(a.quote);
            out.push_str(&a.raw);
            out.push(a.quote);
        }
        out.push_str(&self.ws_end);
        if self.children.is_empty() && self.self_closing {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            write_node(c, out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push_str(&self.end_ws);
        out.push('>');
    }

    /// Lay out elements created by novabox: indentation before each fresh
    /// element and before the closing tag of a parent that was empty.
    pub(crate) fn indent_fresh(&mut self, depth: usize) {
        let child_indent = format!("\n{}", "  ".repeat(depth + 1));
        let close_indent = format!("\n{}", "  ".repeat(depth));
        let has_fresh = self
            .children
            .iter()
            .any(|n| matches!(n, Node::Element(e) if e.fresh));
        if has_fresh {
            let mut i = 0;
            while i < self.children.len() {
                let fresh = matches!(&self.children[i], Node::Element(e) if e.fresh);
                if fresh {
                    let preceded = i > 0
                        && matches!(&self.children[i - 1], Node::Text(t) if t.trim().is_empty() && t.contains('\n'));
                    if !preceded {
                        self.children.insert(i, Node::Text(child_indent.clone()));
                        i += 1;
                    }
                }
                i += 1;
            }
            let ends_ws = matches!(self.children.last(), Some(Node::Text(t)) if t.trim().is_empty() && t.contains('\n'));
            if !ends_ws {
                self.children.push(Node::Text(close_indent));
            }
            self.self_closing = false;
        }
        for n in &mut self.children {
            if let Node::Element(e) = n {
                e.indent_fresh(depth + 1);
                e.fresh = false;
            }
        }
    }
}

fn write_node(n: &Node, out: &mut String) {
    match n {
        Node::Element(e) => e.write(out),
        Node::Text(t) | Node::Markup(t) => out.push_str(t),
    }
}

impl Document {
    /// Serialise: byte-identical to the source for an unmodified tree.
    pub fn to_xml(&mut self) -> String {
        self.root.indent_fresh(0);
        self.root.fresh = false;
        let mut out = String::new();
        for n in &self.prolog {
            write_node(n, &mut out);
        }
        self.root.write(&mut out);
        for n in &self.epilog {
            write_node(n, &mut out);
        }
        out
    }

    /// Serialise to bytes in the document's own encoding.
    pub fn to_bytes(&mut self) -> Vec<u8> {
        let s = self.to_xml();
        if self.latin1 {
            // Characters outside Latin-1 become character references.
            let mut out = Vec::with_capacity(s.len());
            for c in s.chars() {
                if (c as u32) < 256 {
                    out.push(c as u32 as u8);
                } else {
                    out.extend_from_slice(format!("&#{};", c as u32).as_bytes());
                }
            }
            out
        } else {
            s.into_bytes()
        }
    }
}
