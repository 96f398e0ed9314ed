//! Lossless XML: a position-tracking parser and a tree that writes back
//! byte-for-byte what it read, except where it was changed.

pub mod parse;
pub mod tree;

pub use parse::{parse, parse_bytes, XmlError};
pub use tree::{Attr, Document, Element, Node, Pos};
