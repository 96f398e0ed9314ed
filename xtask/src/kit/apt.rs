//! The Debian side: package versions from apt's lists, `apt-get update`
//! only when the lists are missing or stale, `apt-get download` of exact
//! versions, and `dpkg-deb -x` extraction. Nothing is installed on the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use super::progress::{DownloadWatch, Steps};

/// apt's package lists directory.
const LISTS: &str = "/var/lib/apt/lists";
/// Lists older than this are refreshed before resolving versions.
const MAX_LIST_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where apt-get download would fetch a package from, as `--print-uris`
/// tells (local only, no network).
#[derive(Debug, Clone)]
pub struct Uri {
    /// Download URL.
    pub url: String,
    /// File name apt saves it as.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// Expected SHA-256 (lower-case hex).
    pub sha256: String,
}

/// Why the package lists need an `apt-get update`, or `None` if they are fine.
pub fn lists_need_update() -> Option<String> {
    let Ok(rd) = std::fs::read_dir(LISTS) else {
        return Some(format!("{LISTS} is missing"));
    };
    let mut newest_release: Option<SystemTime> = None;
    let mut have_packages = false;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains("_Packages") {
            have_packages = true;
        }
        if name.ends_with("InRelease") || name.ends_with("_Release") {
            if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                newest_release = newest_release.max(Some(t));
            }
        }
    }
    if !have_packages {
        return Some("no package lists".into());
    }
    let age = newest_release
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::MAX);
    if age > MAX_LIST_AGE {
        return Some(format!(
            "package lists are {} days old",
            age.as_secs() / 86400
        ));
    }
    None
}

/// Runs `apt-get update` with its output shown.
pub fn update() -> Result<()> {
    let st = Command::new("apt-get")
        .args(["update", "-q"])
        .status()
        .context("running apt-get update")?;
    if !st.success() {
        bail!("apt-get update failed ({st}); are you root?");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The candidate version of `pkg` (what `apt-get install` would take).
pub fn candidate(pkg: &str) -> Result<Option<String>> {
    let text = output(Command::new("apt-cache").args(["policy", pkg]))?;
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| *v != "(none)")
        .map(str::to_string))
}

/// Package names in the `Depends:` field of `pkg` at `version`.
pub fn depends(pkg: &str, version: &str) -> Result<Vec<String>> {
    let text = output(Command::new("apt-cache").args(["show", &format!("{pkg}={version}")]))?;
    let field = text
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .unwrap_or("");
    Ok(parse_depends(field))
}

/// Splits a Debian `Depends:` value into package names (first alternative
/// of each, version constraints and arch qualifiers dropped).
pub fn parse_depends(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|alt| alt.split('|').next())
        .map(|d| {
            d.trim()
                .split(|c: char| c.is_whitespace() || c == '(' || c == ':')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|d| !d.is_empty())
        .collect()
}

/// Where `pkg` at `version` would be downloaded from (no network).
pub fn print_uri(pkg: &str, version: &str) -> Result<Uri> {
    let text = output(Command::new("apt-get").args([
        "download",
        "--print-uris",
        &format!("{pkg}={version}"),
    ]))?;
    parse_print_uris(&text).with_context(|| format!("apt-get --print-uris for {pkg}={version}"))
}

/// Parses a line of `apt-get download --print-uris`:
/// `'URL' FILENAME SIZE SHA256:HEX`.
pub fn parse_print_uris(text: &str) -> Result<Uri> {
    let line = text
        .lines()
        .find(|l| l.starts_with('\''))
        .context("no URI line")?;
    let mut it = line.split_whitespace();
    let url = it.next().context("no url")?.trim_matches('\'').to_string();
    let filename = it.next().context("no file name")?.to_string();
    let size = it.next().context("no size")?.parse().context("bad size")?;
    let sha256 = it
        .next()
        .and_then(|h| h.strip_prefix("SHA256:"))
        .context("no SHA256 (apt gave another hash)")?
        .to_ascii_lowercase();
    if filename.contains('/') || filename.starts_with('.') {
        bail!("suspicious file name {filename:?}");
    }
    Ok(Uri {
        url,
        filename,
        size,
        sha256,
    })
}

/// Downloads `pkg` at `version` into `dir` with apt-get, showing progress,
/// and returns the path of the `.deb`.
pub fn download(pkg: &str, version: &str, uri: &Uri, dir: &Path, steps: &Steps) -> Result<PathBuf> {
    let dest = dir.join(&uri.filename);
    steps.note(&format!(
        "apt-get download {pkg}={version} ({:.1} MB from {})",
        uri.size as f64 / 1e6,
        uri.url
    ));
    let watch = DownloadWatch::start(
        pkg.to_string(),
        vec![dest.clone(), dir.join("partial").join(&uri.filename)],
        uri.size,
    );
    let out = Command::new("apt-get")
        // Root downloading into a directory _apt cannot write: tell apt to
        // stay root rather than warn about it.
        .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
        .arg(format!("{pkg}={version}"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    watch.finish();
    let out = out.context("running apt-get download")?;
    if !out.status.success() {
        bail!(
            "apt-get download {pkg}={version} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(dest)
}

/// Extracts a `.deb` into `dest` (replaced atomically) with `dpkg-deb -x`.
pub fn extract(deb: &Path, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&tmp)
        .status()
        .context("running dpkg-deb")?;
    if !st.success() {
        bail!("dpkg-deb -x {} failed ({st})", deb.display());
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_meta_depends() {
        assert_eq!(
            parse_depends(" linux-image-6.1.0-48-amd64 (= 6.1.172-1)"),
            ["linux-image-6.1.0-48-amd64"]
        );
        assert_eq!(
            parse_depends("kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, libc6:any"),
            ["kmod", "linux-base", "initramfs-tools", "libc6"]
        );
        assert!(parse_depends("").is_empty());
    }

    #[test]
    fn parses_print_uris_line() {
        let u = parse_print_uris("'http://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1.35.0-4%2bdeb12u1%2bb1_amd64.deb' busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb 928188 SHA256:3D3fdbe9\n").unwrap();
        assert_eq!(
            u.filename,
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
        );
        assert_eq!(u.size, 928188);
        assert_eq!(u.sha256, "3d3fdbe9");
        assert!(parse_print_uris("").is_err());
        assert!(parse_print_uris("'u' f 12 MD5Sum:abc").is_err());
        assert!(parse_print_uris("'u' ../evil 12 SHA256:ab").is_err());
    }
}
