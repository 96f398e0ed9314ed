//! `VBoxGuestPropSvc`: named string properties shared by host and guest, guest-visible-
//! compatible with VirtualBox's guest property service (GuestPropertySvc.h): get, set, set
//! value, delete, enumerate with `|`-separated glob patterns, and the blocking notification
//! wait. The host side ([`GuestProperties::host_set`] and friends) backs
//! `novabox guestproperty`.

use crate::param::Param;
use crate::service::{Call, Service};
use crate::status::*;
use std::collections::{BTreeMap, VecDeque};

/// The service name guests connect to.
pub const SERVICE_NAME: &str = "VBoxGuestPropSvc";
/// Longest name, including the terminator.
pub const MAX_NAME: usize = 64;
/// Longest value, including the terminator.
pub const MAX_VALUE: usize = 1024;
/// Longest pattern list.
pub const MAX_PATTERN: usize = 1024;
/// Most properties.
pub const MAX_PROPS: usize = 256;
/// Most parked notification waits.
pub const MAX_WAITS: usize = 16;

/// Property flags (`GUEST_PROP_F_*`).
#[allow(missing_docs)]
pub mod flags {
    pub const TRANSIENT: u32 = 0x2;
    pub const RDONLYGUEST: u32 = 0x4;
    pub const RDONLYHOST: u32 = 0x8;
    pub const READONLY: u32 = 0xc;
    pub const TRANSRESET: u32 = 0x10;
}

/// Function numbers.
#[allow(missing_docs)]
pub mod func {
    pub const GET_PROP: u32 = 1;
    pub const SET_PROP: u32 = 2;
    pub const SET_PROP_VALUE: u32 = 3;
    pub const DEL_PROP: u32 = 4;
    pub const ENUM_PROPS: u32 = 5;
    pub const GET_NOTIFICATION: u32 = 6;
}

/// One property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Last change, ns since the epoch.
    pub timestamp: u64,
    /// `flags::*`.
    pub flags: u32,
}

/// Parse a flag list ("TRANSIENT, RDONLYGUEST").
pub fn parse_flags(s: &str) -> Result<u32, i32> {
    let mut f = 0;
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        f |= match w.to_ascii_uppercase().as_str() {
            "TRANSIENT" => flags::TRANSIENT,
            "RDONLYGUEST" => flags::RDONLYGUEST,
            "RDONLYHOST" => flags::RDONLYHOST,
            "READONLY" => flags::READONLY,
            "TRANSRESET" => flags::TRANSRESET | flags::TRANSIENT,
            _ => return Err(VERR_INVALID_PARAMETER),
        };
    }
    Ok(f)
}

/// Write flags as VirtualBox does (READONLY before the single RDONLY flags).
pub fn write_flags(f: u32) -> String {
    let mut out = Vec::new();
    if f & flags::TRANSIENT != 0 {
        out.push("TRANSIENT");
    }
    if f & flags::READONLY == flags::READONLY {
        out.push("READONLY");
    } else {
        if f & flags::RDONLYGUEST != 0 {
            out.push("RDONLYGUEST");
        }
        if f & flags::RDONLYHOST != 0 {
            out.push("RDONLYHOST");
        }
    }
    if f & flags::TRANSRESET != 0 {
        out.push("TRANSRESET");
    }
    out.join(", ")
}

/// `RTStrSimplePatternMatch` over `|`-separated alternatives; empty patterns match all.
///
/// Patterns come from the guest, so matching must not backtrack exponentially (a pattern
/// of many `*` against a long non-matching name would stall the service thread): this is
/// the greedy matcher that only ever returns to the last `*`, O(pattern × name).
pub fn matches(patterns: &str, name: &str) -> bool {
    fn glob(p: &[u8], s: &[u8]) -> bool {
        let (mut pi, mut si) = (0, 0);
        // Where to resume after the most recent `*`: (pattern index after it, name index).
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some(b'*') => {
                    pi += 1;
                    star = Some((pi, si));
                }
                Some(&c) if c == b'?' || c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => match star {
                    // Let the last `*` swallow one more byte and try again from there.
                    Some((sp, ss)) => {
                        pi = sp;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
    patterns.is_empty()
        || patterns
            .split('|')
            .any(|p| glob(p.as_bytes(), name.as_bytes()))
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A NUL-terminated UTF-8 string parameter (VirtualBox HGCMSvcGetCStr).
fn cstr(p: &Param) -> Result<&str, i32> {
    let b = p.as_buf().ok_or(VERR_INVALID_PARAMETER)?;
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(VERR_INVALID_PARAMETER)?;
    std::str::from_utf8(&b[..end]).map_err(|_| VERR_INVALID_PARAMETER)
}

fn valid_name(n: &str) -> Result<(), i32> {
    if n.is_empty() || n.len() + 1 > MAX_NAME || n.contains(['*', '?', '|']) {
        return Err(VERR_INVALID_PARAMETER);
    }
    Ok(())
}

/// Names only the host may write (VirtualBox's checkHostReserved).
fn host_reserved(n: &str) -> bool {
    n.starts_with("/VirtualBox/HostInfo/") || n.starts_with("/VirtualBox/HostGuest/")
}

/// Told once about a matching change.
pub type HostWaiter = Box<dyn FnOnce(Property) + Send>;

/// The guest property store and service.
#[derive(Default)]
pub struct GuestProperties {
    props: BTreeMap<String, Property>,
    /// Recent changes, for notification waits that name a timestamp.
    history: VecDeque<(Property, bool)>,
    waits: Vec<Call>,
    host_waiters: Vec<(String, HostWaiter)>,
    last_ts: u64,
}

impl std::fmt::Debug for GuestProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestProperties")
            .field("props", &self.props.len())
            .finish()
    }
}

impl GuestProperties {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with the properties a .vbox holds.
    pub fn with(props: Vec<Property>) -> Self {
        let mut s = Self::new();
        for p in props {
            s.props.insert(p.name.clone(), p);
        }
        s
    }

    fn stamp(&mut self) -> u64 {
        // Unique, increasing timestamps: notification waits identify changes by them.
        self.last_ts = now_ns().max(self.last_ts + 1);
        self.last_ts
    }

    /// A property.
    pub fn get(&self, name: &str) -> Option<Property> {
        self.props.get(name).cloned()
    }

    /// Properties whose names match `patterns`.
    pub fn enumerate(&self, patterns: &str) -> Vec<Property> {
        self.props
            .values()
            .filter(|p| matches(patterns, &p.name))
            .cloned()
            .collect()
    }

    /// The non-transient properties (what is saved in the .vbox).
    pub fn persistent(&self) -> Vec<Property> {
        self.props
            .values()
            .filter(|p| p.flags & flags::TRANSIENT == 0)
            .cloned()
            .collect()
    }

    /// Set from the host (None deletes).
    pub fn host_set(&mut self, name: &str, value: Option<&str>, f: u32) -> Result<(), i32> {
        self.set(name, value, Some(f), false)
    }

    /// Get told (once) about the next change of a property matching `patterns`.
    pub fn host_wait(&mut self, patterns: &str, tell: HostWaiter) {
        self.host_waiters.push((patterns.to_string(), tell));
    }

    fn set(
        &mut self,
        name: &str,
        value: Option<&str>,
        f: Option<u32>,
        guest: bool,
    ) -> Result<(), i32> {
        valid_name(name)?;
        if let Some(v) = value {
            if v.len() + 1 > MAX_VALUE {
                return Err(VERR_TOO_MUCH_DATA);
            }
        }
        if let Some(p) = self.props.get(name) {
            let denied = if guest {
                flags::RDONLYGUEST
            } else {
                flags::RDONLYHOST
            };
            if p.flags & denied != 0 {
                return Err(VERR_PERMISSION_DENIED);
            }
        }
        let mut f = f.unwrap_or_else(|| self.props.get(name).map(|p| p.flags).unwrap_or(0));
        if host_reserved(name) {
            if guest {
                return Err(VERR_PERMISSION_DENIED);
            }
            f |= flags::RDONLYGUEST;
        }
        let ts = self.stamp();
        let (prop, deleted) = match value {
            Some(v) => {
                if !self.props.contains_key(name) && self.props.len() >= MAX_PROPS {
                    return Err(VERR_TOO_MUCH_DATA);
                }
                let p = Property {
                    name: name.to_string(),
                    value: v.to_string(),
                    timestamp: ts,
                    flags: f,
                };
                self.props.insert(name.to_string(), p.clone());
                (p, false)
            }
            None => match self.props.remove(name) {
                Some(mut p) => {
                    p.timestamp = ts;
                    p.value.clear();
                    (p, true)
                }
                None => return Ok(()),
            },
        };
        self.notify(prop, deleted);
        Ok(())
    }

    fn notify(&mut self, prop: Property, deleted: bool) {
        self.history.push_back((prop.clone(), deleted));
        while self.history.len() > 64 {
            self.history.pop_front();
        }
        let (hit, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.host_waiters)
            .into_iter()
            .partition(|(pat, _)| matches(pat, &prop.name));
        self.host_waiters = keep;
        for (_, tell) in hit {
            tell(prop.clone());
        }
        let waits = std::mem::take(&mut self.waits);
        for mut w in waits {
            if w.is_cancelled() {
                continue;
            }
            let pat = w
                .params
                .first()
                .and_then(|p| cstr(p).ok())
                .unwrap_or("")
                .to_string();
            if matches(&pat, &prop.name) {
                let rc = write_notification(&mut w.params, &prop, deleted);
                w.complete(rc);
            } else {
                self.waits.push(w);
            }
        }
    }

    fn guest_call(&mut self, call: &mut Call) -> Option<i32> {
        let p = &mut call.params;
        let r = match call.function {
            func::GET_PROP => (|| {
                if p.len() != 4 {
                    return Err(VERR_INVALID_PARAMETER);
                }
                let name = cstr(&p[0])?.to_string();
                valid_name(&name)?;
                let prop = self.props.get(&name).ok_or(VERR_NOT_FOUND)?.clone();
                let mut out = prop.value.into_bytes();
                out.push(0);
                out.extend_from_slice(write_flags(prop.flags).as_bytes());
                out.push(0);
                p[3].set_u32(out.len() as u32);
                let buf = p[1].as_buf_mut().ok_or(VERR_INVALID_PARAMETER)?;
                if buf.len() < out.len() {
                    return Err(VERR_BUFFER_OVERFLOW);
                }
                buf[..out.len()].copy_from_slice(&out);
                p[2].set_u64(prop.timestamp);
                Ok(VINF_SUCCESS)
            })(),
            func::SET_PROP | func::SET_PROP_VALUE => (|| {
                let want = if call.function == func::SET_PROP {
                    3
                } else {
                    2
                };
                if p.len() != want {
                    return Err(VERR_INVALID_PARAMETER);
                }
                let name = cstr(&p[0])?.to_string();
                let value = cstr(&p[1])?.to_string();
                let f = if want == 3 {
                    Some(parse_flags(cstr(&p[2])?)?)
                } else {
                    None
                };
                self.set(&name, Some(&value), f, true).map(|_| VINF_SUCCESS)
            })(),
            func::DEL_PROP => (|| {
                if p.len() != 1 {
                    return Err(VERR_INVALID_PARAMETER);
                }
                let name = cstr(&p[0])?.to_string();
                self.set(&name, None, None, true).map(|_| VINF_SUCCESS)
            })(),
            func::ENUM_PROPS => (|| {
                if p.len() != 3 {
                    return Err(VERR_INVALID_PARAMETER);
                }
                let raw = p[0].as_buf().ok_or(VERR_INVALID_PARAMETER)?;
                if raw.len() > MAX_PATTERN {
                    return Err(VERR_TOO_MUCH_DATA);
                }
                // Patterns may be NUL-separated as well as '|'-separated.
                let body = raw.strip_suffix(&[0]).unwrap_or(raw);
                let pats: String = std::str::from_utf8(body)
                    .map_err(|_| VERR_INVALID_PARAMETER)?
                    .replace('\0', "|");
                let mut out = Vec::new();
                for pr in self.enumerate(pats.trim_end_matches('|')) {
                    for s in [
                        pr.name,
                        pr.value,
                        pr.timestamp.to_string(),
                        write_flags(pr.flags),
                    ] {
                        out.extend_from_slice(s.as_bytes());
                        out.push(0);
                    }
                }
                out.extend_from_slice(&[0, 0, 0, 0]);
                p[2].set_u32(out.len() as u32);
                let buf = p[1].as_buf_mut().ok_or(VERR_INVALID_PARAMETER)?;
                if buf.len() < out.len() {
                    return Err(VERR_BUFFER_OVERFLOW);
                }
                buf[..out.len()].copy_from_slice(&out);
                Ok(VINF_SUCCESS)
            })(),
            func::GET_NOTIFICATION => {
                let r = (|| {
                    if p.len() != 4 || p[1].as_u64().is_none() || p[3].as_u32().is_none() {
                        return Err(VERR_INVALID_PARAMETER);
                    }
                    let pat = cstr(&p[0])?.to_string();
                    if pat.len() >= MAX_PATTERN {
                        return Err(VERR_TOO_MUCH_DATA);
                    }
                    let since = p[1].as_u64().unwrap_or(0);
                    if since != 0 {
                        let next = self
                            .history
                            .iter()
                            .find(|(pr, _)| pr.timestamp > since && matches(&pat, &pr.name))
                            .cloned();
                        if let Some((pr, deleted)) = next {
                            return Ok(Some(write_notification(p, &pr, deleted)));
                        }
                    }
                    Ok(None)
                })();
                match r {
                    Ok(Some(rc)) => Ok(rc),
                    Ok(None) => {
                        self.waits.retain(|w| !w.is_cancelled());
                        if self.waits.len() >= MAX_WAITS {
                            Err(VERR_OUT_OF_RESOURCES)
                        } else {
                            return None; // park
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Err(VERR_NOT_IMPLEMENTED),
        };
        Some(r.unwrap_or_else(|e| e))
    }
}

/// Notification payload: Name\0Value\0Flags\0WasDeleted\0, timestamp in parameter 1.
fn write_notification(p: &mut [Param], prop: &Property, deleted: bool) -> i32 {
    let mut out = Vec::new();
    for s in [
        prop.name.as_str(),
        prop.value.as_str(),
        &write_flags(prop.flags),
    ] {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(if deleted { b"1\0" } else { b"0\0" });
    if p.len() != 4 {
        return VERR_INVALID_PARAMETER;
    }
    p[1].set_u64(prop.timestamp);
    p[3].set_u32(out.len() as u32);
    match p[2].as_buf_mut() {
        Some(b) if b.len() >= out.len() => {
            b[..out.len()].copy_from_slice(&out);
            VINF_SUCCESS
        }
        Some(_) => VERR_BUFFER_OVERFLOW,
        None => VERR_INVALID_PARAMETER,
    }
}

impl Service for GuestProperties {
    fn name(&self) -> &'static str {
        SERVICE_NAME
    }

    fn disconnect(&mut self, client: u32) {
        self.waits.retain(|w| w.client != client);
    }

    fn call(&mut self, mut call: Call) {
        match self.guest_call(&mut call) {
            Some(rc) => call.complete(rc),
            None => self.waits.push(call),
        }
    }

    fn reset(&mut self) {
        self.waits.clear();
        self.props.retain(|_, p| p.flags & flags::TRANSRESET == 0);
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Reply;
    use crate::CancelToken;
    use proptest::prelude::*;

    fn cs(s: &str) -> Param {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        Param::buf(b)
    }

    fn call(svc: &mut GuestProperties, f: u32, params: Vec<Param>) -> Option<(i32, Vec<Param>)> {
        let (tx, rx) = crossbeam_channel::bounded::<Reply>(1);
        svc.call(Call::new(1, f, params, 0, CancelToken::new(), Box::new(tx)));
        rx.try_recv().ok().map(|r| (r.result, r.params))
    }

    #[test]
    fn set_get_enumerate_delete() {
        let mut s = GuestProperties::new();
        let (rc, _) = call(
            &mut s,
            func::SET_PROP,
            vec![
                cs("/VirtualBox/GuestAdd/Version"),
                cs("7.1.12"),
                cs("TRANSIENT, RDONLYGUEST"),
            ],
        )
        .unwrap();
        assert_eq!(rc, 0);
        let (rc, p) = call(
            &mut s,
            func::GET_PROP,
            vec![
                cs("/VirtualBox/GuestAdd/Version"),
                Param::buf(vec![0; 64]),
                Param::U64(0),
                Param::U32(0),
            ],
        )
        .unwrap();
        assert_eq!(rc, 0);
        let need = p[3].as_u32().unwrap() as usize;
        assert_eq!(
            &p[1].as_buf().unwrap()[..need],
            b"7.1.12\0TRANSIENT, RDONLYGUEST\0"
        );
        // The guest may not change a RDONLYGUEST property; the host may.
        let (rc, _) = call(
            &mut s,
            func::SET_PROP_VALUE,
            vec![cs("/VirtualBox/GuestAdd/Version"), cs("x")],
        )
        .unwrap();
        assert_eq!(rc, VERR_PERMISSION_DENIED);
        assert_eq!(
            s.host_set("/VirtualBox/GuestAdd/Version", Some("8"), 0),
            Ok(())
        );
        // Too small a buffer: needed size reported.
        let (rc, p) = call(
            &mut s,
            func::GET_PROP,
            vec![
                cs("/VirtualBox/GuestAdd/Version"),
                Param::buf(vec![0; 2]),
                Param::U64(0),
                Param::U32(0),
            ],
        )
        .unwrap();
        assert_eq!((rc, p[3].as_u32()), (VERR_BUFFER_OVERFLOW, Some(3)));
        s.host_set("/a/b", Some("1"), 0).unwrap();
        let (rc, p) = call(
            &mut s,
            func::ENUM_PROPS,
            vec![cs("/a/*"), Param::buf(vec![0; 256]), Param::U32(0)],
        )
        .unwrap();
        assert_eq!(rc, 0);
        let b = p[1].as_buf().unwrap();
        assert!(b.starts_with(b"/a/b\x001\0"));
        let (rc, _) = call(&mut s, func::DEL_PROP, vec![cs("/a/b")]).unwrap();
        assert_eq!(rc, 0);
        assert!(s.get("/a/b").is_none());
        // Guests cannot write host-reserved names; bad names are refused.
        assert_eq!(
            call(
                &mut s,
                func::SET_PROP_VALUE,
                vec![cs("/VirtualBox/HostInfo/X"), cs("1")]
            )
            .unwrap()
            .0,
            VERR_PERMISSION_DENIED
        );
        assert_eq!(
            call(&mut s, func::SET_PROP_VALUE, vec![cs("a*b"), cs("1")])
                .unwrap()
                .0,
            VERR_INVALID_PARAMETER
        );
        assert_eq!(
            call(
                &mut s,
                func::SET_PROP_VALUE,
                vec![Param::buf(b"abc".to_vec()), cs("1")]
            )
            .unwrap()
            .0,
            VERR_INVALID_PARAMETER
        );
        assert_eq!(
            call(
                &mut s,
                func::SET_PROP_VALUE,
                vec![cs("/v"), cs(&"x".repeat(1024))]
            )
            .unwrap()
            .0,
            VERR_TOO_MUCH_DATA
        );
    }

    #[test]
    fn notification_wait_parks_until_a_change() {
        let mut s = GuestProperties::new();
        let (tx, rx) = crossbeam_channel::bounded::<Reply>(1);
        s.call(Call::new(
            1,
            func::GET_NOTIFICATION,
            vec![
                cs("/test/*"),
                Param::U64(0),
                Param::buf(vec![0; 128]),
                Param::U32(0),
            ],
            0,
            CancelToken::new(),
            Box::new(tx),
        ));
        assert!(rx.try_recv().is_err(), "parked");
        s.host_set("/other", Some("1"), 0).unwrap();
        assert!(rx.try_recv().is_err(), "not matching");
        s.host_set("/test/x", Some("v"), flags::TRANSIENT).unwrap();
        let r = rx.try_recv().unwrap();
        assert_eq!(r.result, 0);
        let n = r.params[3].as_u32().unwrap() as usize;
        assert_eq!(
            &r.params[2].as_buf().unwrap()[..n],
            b"/test/x\0v\0TRANSIENT\x000\0"
        );
        assert!(s.persistent().iter().all(|p| p.name != "/test/x"));
    }

    #[test]
    fn patterns_and_flags() {
        assert!(matches("", "/x"));
        assert!(matches("/a/*|/b", "/b"));
        assert!(matches("/a/?", "/a/z"));
        assert!(!matches("/a/?", "/a/zz"));
        assert!(matches("*", ""));
        assert!(!matches("?", ""));
        assert!(matches("/a/*/c*", "/a/b/x/cd"));
        assert!(!matches("/a/*/c?", "/a/b/x/c"));
    }

    /// A guest-supplied pattern of many stars against a long name that does not match
    /// must not backtrack exponentially (the old recursive matcher never returned here).
    #[test]
    fn many_stars_do_not_stall_the_service() {
        let pattern = format!("{}X", "*".repeat(200));
        let name = "/".repeat(MAX_NAME - 1);
        assert!(!matches(&pattern, &name));
        assert!(matches(&format!("{}/", "*".repeat(200)), &name));
    }

    /// The reference: dynamic programming over (pattern, name) prefixes.
    fn matches_reference(p: &[u8], s: &[u8]) -> bool {
        let mut m = vec![vec![false; s.len() + 1]; p.len() + 1];
        m[0][0] = true;
        for i in 1..=p.len() {
            for j in 0..=s.len() {
                m[i][j] = match p[i - 1] {
                    b'*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                    b'?' => j > 0 && m[i - 1][j - 1],
                    c => j > 0 && c == s[j - 1] && m[i - 1][j - 1],
                };
            }
        }
        m[p.len()][s.len()]
    }

    #[test]
    fn flags_parse_and_print() {
        assert_eq!(parse_flags("transient,RDONLYHOST").unwrap(), 0xa);
        assert!(parse_flags("bogus").is_err());
        assert_eq!(
            write_flags(flags::READONLY | flags::TRANSIENT),
            "TRANSIENT, READONLY"
        );
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_reference(p in "[ab*?]{0,12}", s in "[ab]{0,12}") {
            // `|` is not in the alphabet, so one alternative; an empty pattern matches all.
            let want = p.is_empty() || matches_reference(p.as_bytes(), s.as_bytes());
            proptest::prop_assert_eq!(matches(&p, &s), want);
        }

        #[test]
        fn random_calls_never_panic(f in 0u32..8, params in proptest::collection::vec(
            proptest::prop_oneof![
                any::<u32>().prop_map(Param::U32),
                any::<u64>().prop_map(Param::U64),
                proptest::collection::vec(any::<u8>(), 0..80).prop_map(Param::buf),
            ], 0..5)) {
            let mut s = GuestProperties::new();
            let _ = call(&mut s, f, params);
        }
    }
}
