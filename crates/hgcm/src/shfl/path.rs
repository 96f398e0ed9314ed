//! Guest path names to confined component lists.
//!
//! The guest sends paths relative to the mapping root, separated by its delimiter (`/` for
//! Linux, `\` for Windows), usually with a leading delimiter. We split them into plain
//! components and resolve `.` and `..` lexically, refusing any `..` that would climb above
//! the root. The result never contains `.`, `..`, an empty name, a NUL or a host
//! separator, so every later step can hand the components to the kernel one directory
//! handle at a time (see `fsops`), where symlinks are confined as well.

use crate::status::*;

/// Longest component the host accepts (Linux NAME_MAX).
pub const MAX_COMPONENT: usize = 255;
/// Longest path the host accepts (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// A path inside a share: zero components is the share root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharePath {
    /// The components, each a single host file name.
    pub components: Vec<String>,
}

impl SharePath {
    /// The root.
    pub fn root() -> SharePath {
        SharePath::default()
    }

    /// True for the share root.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The path relative to the root, as the kernel takes it ("." for the root).
    pub fn relative(&self) -> String {
        if self.components.is_empty() {
            ".".to_string()
        } else {
            self.components.join("/")
        }
    }

    /// The parent's path and the last component (None for the root).
    pub fn split_last(&self) -> Option<(SharePath, &str)> {
        let (last, rest) = self.components.split_last()?;
        Some((
            SharePath {
                components: rest.to_vec(),
            },
            last.as_str(),
        ))
    }

    /// This path with `name` appended (a name read from a host directory).
    pub fn join(&self, name: &str) -> SharePath {
        let mut c = self.components.clone();
        c.push(name.to_string());
        SharePath { components: c }
    }
}

/// Parse a guest path using `delimiter`. Errors are IPRT statuses.
pub fn parse(path: &str, delimiter: char) -> Result<SharePath, i32> {
    if path.len() > MAX_PATH {
        return Err(VERR_FILENAME_TOO_LONG);
    }
    let mut components: Vec<String> = Vec::new();
    for comp in path.split(delimiter) {
        match comp {
            "" | "." => continue,
            ".." => {
                if components.pop().is_none() {
                    return Err(VERR_INVALID_NAME);
                }
            }
            c => {
                // The host separator and NUL may not appear inside a component.
                if c.contains('/') || c.contains('\0') {
                    return Err(VERR_INVALID_NAME);
                }
                if c.len() > MAX_COMPONENT {
                    return Err(VERR_FILENAME_TOO_LONG);
                }
                components.push(c.to_string());
            }
        }
    }
    Ok(SharePath { components })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn linux_paths() {
        assert_eq!(parse("/", '/').unwrap(), SharePath::root());
        assert_eq!(parse("", '/').unwrap(), SharePath::root());
        assert_eq!(parse("/a/b", '/').unwrap().components, ["a", "b"]);
        assert_eq!(parse("//a/./b/", '/').unwrap().components, ["a", "b"]);
        assert_eq!(parse("/a/../b", '/').unwrap().components, ["b"]);
        assert_eq!(parse("/a/b", '/').unwrap().relative(), "a/b");
        assert_eq!(SharePath::root().relative(), ".");
    }

    #[test]
    fn escapes_are_refused() {
        assert_eq!(parse("/..", '/'), Err(VERR_INVALID_NAME));
        assert_eq!(parse("/a/../..", '/'), Err(VERR_INVALID_NAME));
        assert_eq!(parse("../etc/passwd", '/'), Err(VERR_INVALID_NAME));
        assert_eq!(parse("\\..\\x", '\\'), Err(VERR_INVALID_NAME));
        // A Windows guest may not smuggle a host separator inside a component.
        assert_eq!(parse("\\a/..\\..\\x", '\\'), Err(VERR_INVALID_NAME));
        assert_eq!(parse("\\a/b", '\\'), Err(VERR_INVALID_NAME));
        assert_eq!(parse("/a\0b", '/'), Err(VERR_INVALID_NAME));
        assert_eq!(
            parse(&format!("/{}", "x".repeat(256)), '/'),
            Err(VERR_FILENAME_TOO_LONG)
        );
        assert_eq!(parse(&"/x".repeat(3000), '/'), Err(VERR_FILENAME_TOO_LONG));
    }

    proptest! {
        #[test]
        fn components_are_always_plain_names(s in "[a-z./\\\\\0]{0,40}", win in any::<bool>()) {
            let d = if win { '\\' } else { '/' };
            if let Ok(p) = parse(&s, d) {
                for c in &p.components {
                    prop_assert!(!c.is_empty() && c != "." && c != "..");
                    prop_assert!(!c.contains('/') && !c.contains('\0'));
                }
            }
        }
    }
}
