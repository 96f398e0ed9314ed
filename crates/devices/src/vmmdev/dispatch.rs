//! The request dispatcher: header validation in VirtualBox's order, the per-type size
//! check, and the handlers of the non-HGCM requests. A request is copied out of guest
//! memory once, handled on the copy, and the copy written back with its status, so a guest
//! changing the request while we work on it (another vCPU) cannot make us see two values.

use super::bytes::*;
use super::consts::{event, hvf, mouse, req, *};
use super::guest_info::AdditionsVersion;
use super::{hgcm_req, Core, DisplayDef, PowerRequest, State, MAX_DISPLAYS};
use hgcm::status::*;
use std::sync::Arc;

/// How big a request of a type must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Exact(u32),
    AtLeast(u32),
    /// Checked by the handler (variable-length arrays).
    Handler,
}

fn size_rule(t: u32) -> Option<Size> {
    use Size::*;
    Some(match t {
        req::GET_MOUSE_STATUS | req::SET_MOUSE_STATUS => Exact(36),
        req::SET_POINTER_SHAPE => AtLeast(48),
        req::GET_HOST_VERSION => Exact(40),
        req::IDLE => Exact(24),
        req::GET_HOST_TIME => Exact(32),
        req::GET_HYPERVISOR_INFO | req::SET_HYPERVISOR_INFO => Exact(32),
        req::REGISTER_PATCH_MEMORY | req::DEREGISTER_PATCH_MEMORY => Exact(36),
        req::SET_POWER_STATUS => Exact(28),
        req::ACKNOWLEDGE_EVENTS => Exact(28),
        req::CTL_GUEST_FILTER_MASK => Exact(32),
        req::REPORT_GUEST_INFO => Exact(32),
        req::GET_DISPLAY_CHANGE_REQUEST => Exact(40),
        req::VIDEO_MODE_SUPPORTED => Exact(40),
        req::GET_HEIGHT_REDUCTION => Exact(28),
        req::GET_DISPLAY_CHANGE_REQUEST2 => Exact(44),
        req::REPORT_GUEST_CAPABILITIES => Exact(28),
        req::SET_GUEST_CAPABILITIES => Exact(32),
        req::VIDEO_MODE_SUPPORTED2 => Exact(44),
        req::REPORT_GUEST_INFO2 => Exact(168),
        req::REPORT_GUEST_STATUS => Exact(36),
        req::VIDEO_ACCEL_ENABLE => AtLeast(36),
        req::VIDEO_ACCEL_FLUSH => Exact(24),
        req::VIDEO_SET_VISIBLE_REGION => Handler,
        req::GET_SEAMLESS_CHANGE_REQUEST => Exact(32),
        req::REPORT_GUEST_USER_STATE => AtLeast(44),
        req::GET_DISPLAY_CHANGE_REQUEST_EX => Exact(56),
        req::GET_DISPLAY_CHANGE_REQUEST_MULTI => Handler,
        req::QUERY_CREDENTIALS | req::REPORT_CREDENTIALS_JUDGEMENT => Exact(412),
        req::REPORT_GUEST_STATS => Exact(100),
        req::GET_MEM_BALLOON_CHANGE_REQUEST => Exact(36),
        req::GET_STATISTICS_CHANGE_REQUEST => Exact(32),
        req::CHANGE_MEM_BALLOON => Exact(2080),
        req::GET_VRDP_CHANGE_REQUEST => Exact(32),
        req::LOG_STRING => AtLeast(28),
        req::GET_CPU_HOTPLUG_REQUEST => Exact(36),
        req::SET_CPU_HOTPLUG_STATUS => Exact(28),
        req::REGISTER_SHARED_MODULE..=req::DEBUG_IS_PAGE_SHARED => AtLeast(24),
        req::GET_SESSION_ID => Exact(32),
        req::WRITE_CORE_DUMP => Exact(28),
        req::GUEST_HEARTBEAT => Exact(24),
        req::HEARTBEAT_CONFIGURE => Exact(36),
        req::NT_BUG_CHECK => Handler,
        req::VIDEO_UPDATE_MONITOR_POSITIONS => Handler,
        req::GET_MOUSE_STATUS_EX => Exact(48),
        req::HGCM_CONNECT..=req::HGCM_CANCEL2 => Handler,
        _ => return None,
    })
}

/// Types the host accepts before ReportGuestInfo.
fn allowed_before_report(t: u32) -> bool {
    matches!(
        t,
        req::REPORT_GUEST_INFO
            | req::REPORT_GUEST_INFO2
            | req::WRITE_CORE_DUMP
            | req::GET_HOST_VERSION
    )
}

/// Handle the request at `gpa` (a write of `gpa` to the request port).
pub(super) fn process(core: &Arc<Core>, gpa: u64) {
    let mut hdr = [0u8; HEADER_SIZE as usize];
    if core.memory.read(gpa, &mut hdr).is_err() {
        return;
    }
    let size = u32_at(&hdr, 0);
    if size < HEADER_SIZE || u32_at(&hdr, 4) != REQUEST_HEADER_VERSION {
        return;
    }
    let rtype = u32_at(&hdr, 8);
    let early = |rc: i32| {
        let _ = core.memory.write(gpa + 12, &rc.to_le_bytes());
    };
    if size > MAX_REQUEST_SIZE {
        early(VERR_NOT_SUPPORTED);
        return;
    }
    let (reported, requestor_info) = {
        let s = core.state.lock();
        (s.events.additions_ok, s.requestor_info)
    };
    if !reported && !allowed_before_report(rtype) {
        early(VERR_NOT_SUPPORTED);
        return;
    }
    let Some(rule) = size_rule(rtype) else {
        early(VERR_NOT_IMPLEMENTED);
        return;
    };
    let ok = match rule {
        Size::Exact(n) => size == n,
        Size::AtLeast(n) => size >= n,
        Size::Handler => true,
    };
    if !ok {
        early(VERR_INVALID_PARAMETER);
        return;
    }
    let mut buf = vec![0u8; size as usize];
    if core.memory.read(gpa, &mut buf).is_err() {
        return;
    }
    let requestor = if requestor_info { u32_at(&buf, 20) } else { 0 };
    if (req::HGCM_CONNECT..=req::HGCM_CANCEL2).contains(&rtype) {
        hgcm_req::handle(core, gpa, &buf, requestor);
        return;
    }
    let rc = handle_core(core, rtype, &mut buf);
    put_i32(&mut buf, 12, rc);
    let _ = core.memory.write(gpa, &buf);
}

fn handle_core(core: &Arc<Core>, rtype: u32, b: &mut [u8]) -> i32 {
    let size = b.len();
    let mut s = core.state.lock();
    let rc = match rtype {
        req::GET_MOUSE_STATUS | req::GET_MOUSE_STATUS_EX => {
            let m = s.mouse;
            put_u32(b, 24, m.caps & 0x1ff);
            put_i32(b, 28, m.x);
            put_i32(b, 32, m.y);
            if rtype == req::GET_MOUSE_STATUS_EX {
                put_i32(b, 36, m.dz);
                put_i32(b, 40, m.dw);
                put_u32(b, 44, m.buttons);
                s.mouse.dz = 0;
                s.mouse.dw = 0;
            }
            VINF_SUCCESS
        }
        req::SET_MOUSE_STATUS => {
            let f = u32_at(b, 24);
            let old = s.mouse.caps;
            s.mouse.caps = (old & !mouse::GUEST_MASK) | (f & mouse::GUEST_MASK);
            if (old ^ s.mouse.caps) & (mouse::GUEST_CAN_ABSOLUTE | mouse::GUEST_NEEDS_HOST_CURSOR)
                != 0
            {
                tracing::info!(
                    caps = s.mouse.caps,
                    "VMMDev: guest mouse capabilities changed"
                );
            }
            VINF_SUCCESS
        }
        req::SET_POINTER_SHAPE => pointer_shape(b),
        req::GET_HOST_VERSION => {
            let v = core.cfg.host_version;
            put(b, 24, &v.major.to_le_bytes());
            put(b, 26, &v.minor.to_le_bytes());
            put_u32(b, 28, v.build);
            put_u32(b, 32, v.revision);
            put_u32(
                b,
                36,
                hvf::HGCM_PHYS_PAGE_LIST
                    | hvf::HGCM_EMBEDDED_BUFFERS
                    | hvf::HGCM_CONTIGUOUS_PAGE_LIST
                    | hvf::HGCM_NO_BOUNCE_PAGE_LIST
                    | 0x8000_0000,
            );
            VINF_SUCCESS
        }
        req::IDLE => VINF_SUCCESS,
        req::GET_HOST_TIME => {
            if core.cfg.time_sync {
                put_u64(b, 24, (core.cfg.host_time_ms)());
                VINF_SUCCESS
            } else {
                VERR_NOT_SUPPORTED
            }
        }
        req::GET_HYPERVISOR_INFO => {
            put_u32(b, 28, 0);
            VINF_SUCCESS
        }
        req::SET_HYPERVISOR_INFO => {
            if u32_at(b, 24) == 0 || u32_at(b, 28) == 0 {
                VINF_SUCCESS
            } else {
                VERR_TRY_AGAIN
            }
        }
        // No raw mode, no patch memory (what VirtualBox 7 answers).
        req::REGISTER_PATCH_MEMORY | req::DEREGISTER_PATCH_MEMORY => VERR_NOT_SUPPORTED,
        req::SET_POWER_STATUS => {
            let what = match u32_at(b, 24) {
                1 => Some(PowerRequest::Pause),
                2 => Some(PowerRequest::PowerOff),
                3 => Some(PowerRequest::SaveState),
                _ => None,
            };
            match (what, &core.cfg.power) {
                (None, _) => VERR_INVALID_PARAMETER,
                (Some(PowerRequest::SaveState), _) if !core.cfg.allow_guest_save_state => {
                    VERR_ACCESS_DENIED
                }
                (Some(_), None) => VERR_NOT_SUPPORTED,
                (Some(p), Some(f)) => {
                    let f = f.clone();
                    drop(s);
                    f(p);
                    return VINF_SUCCESS;
                }
            }
        }
        req::ACKNOWLEDGE_EVENTS => {
            let ev = s.events.acknowledge();
            put_u32(b, 24, ev);
            core.sync_irq(&mut s);
            VINF_SUCCESS
        }
        req::CTL_GUEST_FILTER_MASK => {
            s.events.change_filter(u32_at(b, 24), u32_at(b, 28));
            core.sync_irq(&mut s);
            VINF_SUCCESS
        }
        req::REPORT_GUEST_INFO => {
            let iv = u32_at(b, 24);
            if iv >> 16 == 1 && iv & 0xffff <= 4 {
                s.guest.interface_version = iv;
                s.guest.os_type = u32_at(b, 28);
                s.events.guest_reported();
                core.sync_irq(&mut s);
                tracing::info!(
                    "VMMDev: guest additions interface {iv:#x}, OS type {:#x}",
                    s.guest.os_type
                );
                VINF_SUCCESS
            } else {
                VERR_VERSION_MISMATCH
            }
        }
        req::REPORT_GUEST_INFO2 => guest_info2(&mut s, b),
        req::REPORT_GUEST_STATUS => {
            let (fac, st, fl) = (u32_at(b, 24), u32_at(b, 28), u32_at(b, 32));
            if fac == 0 || fac > super::guest_info::facility::ALL || st > 0xffff {
                VERR_OUT_OF_RANGE
            } else {
                s.guest.facilities.insert(fac, (st, fl));
                VINF_SUCCESS
            }
        }
        req::REPORT_GUEST_CAPABILITIES => {
            s.guest.capabilities = (u32_at(b, 24) | GUEST_SUPPORTS_GRAPHICS) & GUEST_CAPS_MASK;
            VINF_SUCCESS
        }
        req::SET_GUEST_CAPABILITIES => {
            let c = (s.guest.capabilities | u32_at(b, 24)) & !u32_at(b, 28);
            s.guest.capabilities = c & GUEST_CAPS_MASK;
            VINF_SUCCESS
        }
        req::GET_DISPLAY_CHANGE_REQUEST
        | req::GET_DISPLAY_CHANGE_REQUEST2
        | req::GET_DISPLAY_CHANGE_REQUEST_EX => display_change(core, &mut s, rtype, b),
        req::GET_DISPLAY_CHANGE_REQUEST_MULTI => display_change_multi(core, &mut s, b),
        req::VIDEO_MODE_SUPPORTED => {
            put(b, 36, &[1]);
            VINF_SUCCESS
        }
        req::VIDEO_MODE_SUPPORTED2 => {
            put(b, 40, &[1]);
            VINF_SUCCESS
        }
        req::GET_HEIGHT_REDUCTION => {
            put_u32(b, 24, 0);
            VINF_SUCCESS
        }
        req::VIDEO_ACCEL_ENABLE | req::VIDEO_ACCEL_FLUSH => VERR_NOT_SUPPORTED,
        req::VIDEO_SET_VISIBLE_REGION => {
            let n = u64::from(u32_at(b, 24));
            if size < 28 || n > 1 << 20 || size as u64 != 28 + 16 * n {
                VERR_INVALID_PARAMETER
            } else {
                VINF_SUCCESS
            }
        }
        req::VIDEO_UPDATE_MONITOR_POSITIONS => {
            let n = u64::from(u32_at(b, 24));
            if size < 28 || size as u64 != 28 + 8 * n {
                VERR_INVALID_PARAMETER
            } else {
                VINF_SUCCESS
            }
        }
        req::GET_SEAMLESS_CHANGE_REQUEST => {
            put_u32(b, 24, u32::from(s.seamless));
            VINF_SUCCESS
        }
        req::REPORT_GUEST_USER_STATE => user_state(&mut s, b),
        req::QUERY_CREDENTIALS => {
            // No credentials are ever configured: zero the strings, report none present.
            if let Some(strings) = b.get_mut(28..) {
                strings.fill(0);
            }
            let flags = u32_at(b, 24) & !0x3_0000;
            put_u32(b, 24, flags);
            VINF_SUCCESS
        }
        req::REPORT_CREDENTIALS_JUDGEMENT => VINF_SUCCESS,
        req::REPORT_GUEST_STATS => VINF_SUCCESS,
        req::GET_MEM_BALLOON_CHANGE_REQUEST => {
            put_u32(b, 24, 0);
            let mib = core.memory.ram_size() >> 20;
            put_u32(b, 28, u32::try_from(mib).unwrap_or(u32::MAX));
            VINF_SUCCESS
        }
        req::CHANGE_MEM_BALLOON => {
            // Ballooning is never requested; refuse a guest that tries on its own.
            VERR_NOT_SUPPORTED
        }
        req::GET_STATISTICS_CHANGE_REQUEST => {
            put_u32(b, 24, 0);
            VINF_SUCCESS
        }
        req::GET_VRDP_CHANGE_REQUEST => {
            put(b, 24, &[0]);
            put_u32(b, 28, 0);
            VINF_SUCCESS
        }
        // Release builds of VirtualBox do not take guest log strings.
        req::LOG_STRING => VERR_NOT_IMPLEMENTED,
        req::GET_CPU_HOTPLUG_REQUEST => {
            put_u32(b, 24, 1); // none
            put_u32(b, 28, 0);
            put_u32(b, 32, 0);
            VINF_SUCCESS
        }
        req::SET_CPU_HOTPLUG_STATUS => match u32_at(b, 24) {
            1 | 2 => VINF_SUCCESS,
            _ => VERR_INVALID_PARAMETER,
        },
        req::REGISTER_SHARED_MODULE..=req::DEBUG_IS_PAGE_SHARED => VERR_NOT_SUPPORTED,
        req::GET_SESSION_ID => {
            put_u64(b, 24, s.session_id);
            VINF_SUCCESS
        }
        req::WRITE_CORE_DUMP => VERR_ACCESS_DENIED,
        req::GUEST_HEARTBEAT => {
            if s.heartbeat {
                s.heartbeats = s.heartbeats.wrapping_add(1);
            }
            VINF_SUCCESS
        }
        req::HEARTBEAT_CONFIGURE => {
            let enable = b.get(32).is_some_and(|&v| v != 0);
            put_u64(b, 24, HEARTBEAT_INTERVAL_NS);
            if enable && !s.heartbeat {
                s.heartbeats = 0;
            }
            s.heartbeat = enable;
            VINF_SUCCESS
        }
        req::NT_BUG_CHECK => {
            if size == 24 || size == 64 {
                tracing::warn!("VMMDev: guest reported a bug check");
                VINF_SUCCESS
            } else {
                VERR_INVALID_PARAMETER
            }
        }
        _ => VERR_NOT_IMPLEMENTED,
    };
    rc
}

fn pointer_shape(b: &[u8]) -> i32 {
    if b.len() == 48 {
        return VINF_SUCCESS;
    }
    let flags = u32_at(b, 24);
    let (w, h) = (u64::from(u32_at(b, 36)), u64::from(u32_at(b, 40)));
    if flags & 0x4 == 0 {
        return VINF_SUCCESS;
    }
    if w > 8192 || h > 8192 {
        return VERR_INVALID_PARAMETER;
    }
    let and_len = w.div_ceil(8) * h;
    let need = ((and_len + 3) & !3) + 4 * w * h;
    if 44 + need > b.len() as u64 {
        return VERR_INVALID_PARAMETER;
    }
    VINF_SUCCESS
}

fn guest_info2(s: &mut State, b: &[u8]) -> i32 {
    let (major, minor) = (u16_at(b, 24), u16_at(b, 26));
    let (build, revision, features) = (u32_at(b, 28), u32_at(b, 32), u32_at(b, 36));
    let Some(name) = cstr_at(b, 40, 128) else {
        return VERR_INVALID_PARAMETER;
    };
    if major < 3 {
        return VERR_INVALID_PARAMETER;
    }
    let prefix = format!("{major}.{minor}.{build}");
    let Some(tail) = name.strip_prefix(&prefix) else {
        return VERR_INVALID_PARAMETER;
    };
    let newer = (major, minor, build) > (4, 1, 50);
    if newer && !(tail.is_empty() || tail.starts_with('_')) {
        return VERR_INVALID_PARAMETER;
    }
    s.requestor_info = features & GSTINFO2_F_REQUESTOR_INFO != 0;
    tracing::info!("VMMDev: Guest Additions {name} r{revision} (features {features:#x})");
    s.guest.additions = Some(AdditionsVersion {
        major,
        minor,
        build,
        revision,
        features,
        name: name.to_string(),
    });
    VINF_SUCCESS
}

fn user_state(s: &mut State, b: &[u8]) -> i32 {
    if b.len() > 2048 {
        return VERR_TOO_MUCH_DATA;
    }
    let state = u32_at(b, 24);
    let (cu, cd, cx) = (
        u64::from(u32_at(b, 28)),
        u64::from(u32_at(b, 32)),
        u64::from(u32_at(b, 36)),
    );
    if cu > 256 || cd > 256 || cx > 1024 {
        return VERR_TOO_MUCH_DATA;
    }
    if cu == 0 || 40 + cu + cd + cx > b.len() as u64 {
        return VERR_INVALID_PARAMETER;
    }
    let Some(user) = cstr_at(b, 40, cu as usize) else {
        return VERR_INVALID_PARAMETER;
    };
    s.guest.user_state = Some((state, user.to_string()));
    VINF_SUCCESS
}

/// Pick the display to report: the lowest pending one when acknowledging, else display 0
/// (51) or the lowest pending / display 0 (54, 80).
fn display_change(core: &Core, s: &mut State, rtype: u32, b: &mut [u8]) -> i32 {
    let ack = u32_at(b, 36) & event::DISPLAY_CHANGE_REQUEST != 0;
    let idx = if rtype == req::GET_DISPLAY_CHANGE_REQUEST {
        0
    } else {
        s.displays.iter().position(|d| d.pending).unwrap_or(0)
    };
    let def = if ack {
        let slot = &mut s.displays[idx];
        slot.pending = false;
        slot.last_read = slot.current;
        let more = s.displays.iter().any(|d| d.pending);
        if more {
            s.events.raise(event::DISPLAY_CHANGE_REQUEST);
            core.sync_irq(s);
        }
        s.displays[idx].current
    } else {
        let slot = &s.displays[idx];
        if slot.last_read == DisplayDef::default() {
            slot.current
        } else {
            slot.last_read
        }
    };
    put_u32(b, 24, def.cx);
    put_u32(b, 28, def.cy);
    put_u32(b, 32, def.bpp);
    if rtype != req::GET_DISPLAY_CHANGE_REQUEST {
        put_u32(b, 40, idx as u32);
    }
    if rtype == req::GET_DISPLAY_CHANGE_REQUEST_EX {
        put_i32(b, 44, def.x);
        put_i32(b, 48, def.y);
        put(
            b,
            52,
            &[
                u8::from(def.flags & 0x4 != 0),
                u8::from(def.flags & 0x2 == 0),
            ],
        );
    }
    VINF_SUCCESS
}

fn display_change_multi(core: &Core, s: &mut State, b: &mut [u8]) -> i32 {
    let cap = u32_at(b, 28) as usize;
    if b.len() < 32 || cap == 0 || cap > MAX_DISPLAYS || b.len() < 32 + 28 * cap {
        return VERR_INVALID_PARAMETER;
    }
    let ack = u32_at(b, 24) & event::DISPLAY_CHANGE_REQUEST != 0;
    let mut n = 0usize;
    for i in 0..MAX_DISPLAYS {
        if n >= cap {
            break;
        }
        let slot = &mut s.displays[i];
        if ack && !slot.pending {
            continue;
        }
        if !ack && slot.current == DisplayDef::default() {
            continue;
        }
        let d = slot.current;
        if ack {
            slot.pending = false;
            slot.last_read = d;
        }
        let o = 32 + 28 * n;
        put_u32(b, o, d.flags);
        put_u32(b, o + 4, i as u32);
        put_i32(b, o + 8, d.x);
        put_i32(b, o + 12, d.y);
        put_u32(b, o + 16, d.cx);
        put_u32(b, o + 20, d.cy);
        put_u32(b, o + 24, d.bpp);
        n += 1;
    }
    put_u32(b, 28, n as u32);
    if ack && s.displays.iter().any(|d| d.pending) {
        s.events.raise(event::DISPLAY_CHANGE_REQUEST);
        core.sync_irq(s);
    }
    VINF_SUCCESS
}
