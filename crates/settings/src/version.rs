//! Settings versions (`1.3-linux` … `1.22-…`): parsing, comparison, and the
//! platform suffix that is kept when the version is raised.

use std::fmt;

/// The oldest settings version the reader accepts.
pub const OLDEST: SettingsVersion = SettingsVersion { minor: 3 };
/// The newest settings version this crate knows.
pub const NEWEST: SettingsVersion = SettingsVersion { minor: 22 };

/// A settings version `1.minor`. Newer-than-known files are read with the
/// newest rules (as VirtualBox does) but keep their own number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SettingsVersion {
    /// The minor number (major is always 1 for known versions).
    pub minor: u32,
}

impl SettingsVersion {
    /// `1.minor`.
    pub const fn v(minor: u32) -> SettingsVersion {
        SettingsVersion { minor }
    }

    /// True when this version is newer than any this crate knows.
    pub fn is_future(self) -> bool {
        self > NEWEST
    }
}

impl fmt::Display for SettingsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor)
    }
}

/// A parsed `version` attribute: number plus the suffix as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionString {
    /// The number.
    pub version: SettingsVersion,
    /// Everything after the minor number, kept verbatim (e.g. `-linux`).
    pub suffix: String,
}

impl VersionString {
    /// Parse with VirtualBox's rules: longer than 3 characters, digits `.`
    /// digits, anything after the minor ignored; major 1 with minor ≥ 3, or
    /// a newer major (read as future).
    pub fn parse(s: &str) -> Result<VersionString, String> {
        if s.chars().count() <= 3 {
            return Err(format!("invalid settings version \"{s}\""));
        }
        let (major, rest) = split_digits(s);
        let rest = rest
            .strip_prefix('.')
            .ok_or_else(|| format!("invalid settings version \"{s}\""))?;
        let (minor, suffix) = split_digits(rest);
        let (Some(major), Some(minor)) = (major, minor) else {
            return Err(format!("invalid settings version \"{s}\""));
        };
        let version = match major {
            0 => return Err(format!("cannot handle settings version \"{s}\"")),
            1 if minor < 3 => {
                return Err(format!(
                    "cannot handle settings version \"{s}\" (oldest readable is 1.3)"
                ))
            }
            1 => SettingsVersion::v(minor),
            // A newer major: read with the newest rules, remember it as future.
            _ => SettingsVersion::v(u32::MAX / 2),
        };
        Ok(VersionString {
            version,
            suffix: suffix.to_string(),
        })
    }

    /// Render `1.minor` + suffix.
    pub fn render(&self) -> String {
        format!("{}{}", self.version, self.suffix)
    }
}

fn split_digits(s: &str) -> (Option<u32>, &str) {
    let n = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (s[..n].parse().ok(), &s[n..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_virtualbox() {
        let v = VersionString::parse("1.16-linux").unwrap();
        assert_eq!(v.version, SettingsVersion::v(16));
        assert_eq!(v.suffix, "-linux");
        assert_eq!(v.render(), "1.16-linux");
        assert_eq!(
            VersionString::parse("1.3.pre-linux").unwrap().version.minor,
            3
        );
        assert!(VersionString::parse("1.3").is_err());
        assert!(VersionString::parse("1.2-linux").is_err());
        assert!(VersionString::parse("x.16-linux").is_err());
        assert!(VersionString::parse("1.99-linux")
            .unwrap()
            .version
            .is_future());
        assert!(VersionString::parse("2.0-linux")
            .unwrap()
            .version
            .is_future());
    }
}
