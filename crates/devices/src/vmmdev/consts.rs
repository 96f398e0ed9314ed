//! Numbers of the VMMDev interface (VirtualBox VMMDev.h / VMMDevCoreTypes.h, Linux
//! vbox_vmmdev_types.h): request types, event bits, mouse and capability bits, limits.

/// Request header version the guest must send.
pub const REQUEST_HEADER_VERSION: u32 = 0x10001;
/// Size of the request header.
pub const HEADER_SIZE: u32 = 24;
/// Largest request the host processes.
pub const MAX_REQUEST_SIZE: u32 = 1 << 20;
/// `VMMDevMemory.u32Version`.
pub const MEMORY_VERSION: u32 = 1;
/// `VMMDevMemory.u32Size` as VirtualBox writes it (includes the legacy VBVA area).
pub const MEMORY_SIZE_FIELD: u32 = 0x3F_FD28;
/// Interface version of VirtualBox 1.4+ additions (`VMMDEV_VERSION`).
pub const INTERFACE_VERSION_1_04: u32 = 0x0001_0004;

/// Request types (`VMMDevRequestType`).
#[allow(missing_docs)]
pub mod req {
    pub const GET_MOUSE_STATUS: u32 = 1;
    pub const SET_MOUSE_STATUS: u32 = 2;
    pub const SET_POINTER_SHAPE: u32 = 3;
    pub const GET_HOST_VERSION: u32 = 4;
    pub const IDLE: u32 = 5;
    pub const GET_HOST_TIME: u32 = 10;
    pub const GET_HYPERVISOR_INFO: u32 = 20;
    pub const SET_HYPERVISOR_INFO: u32 = 21;
    pub const REGISTER_PATCH_MEMORY: u32 = 22;
    pub const DEREGISTER_PATCH_MEMORY: u32 = 23;
    pub const SET_POWER_STATUS: u32 = 30;
    pub const ACKNOWLEDGE_EVENTS: u32 = 41;
    pub const CTL_GUEST_FILTER_MASK: u32 = 42;
    pub const REPORT_GUEST_INFO: u32 = 50;
    pub const GET_DISPLAY_CHANGE_REQUEST: u32 = 51;
    pub const VIDEO_MODE_SUPPORTED: u32 = 52;
    pub const GET_HEIGHT_REDUCTION: u32 = 53;
    pub const GET_DISPLAY_CHANGE_REQUEST2: u32 = 54;
    pub const REPORT_GUEST_CAPABILITIES: u32 = 55;
    pub const SET_GUEST_CAPABILITIES: u32 = 56;
    pub const VIDEO_MODE_SUPPORTED2: u32 = 57;
    pub const REPORT_GUEST_INFO2: u32 = 58;
    pub const REPORT_GUEST_STATUS: u32 = 59;
    pub const HGCM_CONNECT: u32 = 60;
    pub const HGCM_DISCONNECT: u32 = 61;
    pub const HGCM_CALL32: u32 = 62;
    pub const HGCM_CALL64: u32 = 63;
    pub const HGCM_CANCEL: u32 = 64;
    pub const HGCM_CANCEL2: u32 = 65;
    pub const VIDEO_ACCEL_ENABLE: u32 = 70;
    pub const VIDEO_ACCEL_FLUSH: u32 = 71;
    pub const VIDEO_SET_VISIBLE_REGION: u32 = 72;
    pub const GET_SEAMLESS_CHANGE_REQUEST: u32 = 73;
    pub const REPORT_GUEST_USER_STATE: u32 = 74;
    pub const GET_DISPLAY_CHANGE_REQUEST_EX: u32 = 80;
    pub const GET_DISPLAY_CHANGE_REQUEST_MULTI: u32 = 81;
    pub const QUERY_CREDENTIALS: u32 = 100;
    pub const REPORT_CREDENTIALS_JUDGEMENT: u32 = 101;
    pub const REPORT_GUEST_STATS: u32 = 110;
    pub const GET_MEM_BALLOON_CHANGE_REQUEST: u32 = 111;
    pub const GET_STATISTICS_CHANGE_REQUEST: u32 = 112;
    pub const CHANGE_MEM_BALLOON: u32 = 113;
    pub const GET_VRDP_CHANGE_REQUEST: u32 = 150;
    pub const LOG_STRING: u32 = 200;
    pub const GET_CPU_HOTPLUG_REQUEST: u32 = 210;
    pub const SET_CPU_HOTPLUG_STATUS: u32 = 211;
    pub const REGISTER_SHARED_MODULE: u32 = 212;
    pub const UNREGISTER_SHARED_MODULE: u32 = 213;
    pub const CHECK_SHARED_MODULES: u32 = 214;
    pub const GET_PAGE_SHARING_STATUS: u32 = 215;
    pub const DEBUG_IS_PAGE_SHARED: u32 = 216;
    pub const GET_SESSION_ID: u32 = 217;
    pub const WRITE_CORE_DUMP: u32 = 218;
    pub const GUEST_HEARTBEAT: u32 = 219;
    pub const HEARTBEAT_CONFIGURE: u32 = 220;
    pub const NT_BUG_CHECK: u32 = 221;
    pub const VIDEO_UPDATE_MONITOR_POSITIONS: u32 = 222;
    pub const GET_MOUSE_STATUS_EX: u32 = 223;
}

/// Event bits (`VMMDEV_EVENT_*`).
#[allow(missing_docs)]
pub mod event {
    pub const MOUSE_CAPABILITIES_CHANGED: u32 = 1 << 0;
    pub const HGCM: u32 = 1 << 1;
    pub const DISPLAY_CHANGE_REQUEST: u32 = 1 << 2;
    pub const JUDGE_CREDENTIALS: u32 = 1 << 3;
    pub const RESTORED: u32 = 1 << 4;
    pub const SEAMLESS_MODE_CHANGE_REQUEST: u32 = 1 << 5;
    pub const BALLOON_CHANGE_REQUEST: u32 = 1 << 6;
    pub const STATISTICS_INTERVAL_CHANGE_REQUEST: u32 = 1 << 7;
    pub const VRDP: u32 = 1 << 8;
    pub const MOUSE_POSITION_CHANGED: u32 = 1 << 9;
    pub const CPU_HOTPLUG: u32 = 1 << 10;
    /// Every defined event.
    pub const VALID_MASK: u32 = 0x7ff;
}

/// Mouse feature bits (`VMMDEV_MOUSE_*`).
#[allow(missing_docs)]
pub mod mouse {
    pub const GUEST_CAN_ABSOLUTE: u32 = 1 << 0;
    pub const HOST_WANTS_ABSOLUTE: u32 = 1 << 1;
    pub const GUEST_NEEDS_HOST_CURSOR: u32 = 1 << 2;
    pub const HOST_CANNOT_HWPOINTER: u32 = 1 << 3;
    pub const NEW_PROTOCOL: u32 = 1 << 4;
    pub const HOST_RECHECKS_NEEDS_HOST_CURSOR: u32 = 1 << 5;
    pub const HOST_HAS_ABS_DEV: u32 = 1 << 6;
    pub const GUEST_USES_FULL_STATE_PROTOCOL: u32 = 1 << 7;
    pub const HOST_SUPPORTS_FULL_STATE_PROTOCOL: u32 = 1 << 8;
    /// Bits the guest owns.
    pub const GUEST_MASK: u32 = 0x95;
    /// Bits the host owns.
    pub const HOST_MASK: u32 = 0x16a;
    /// Largest absolute coordinate.
    pub const RANGE_MAX: i32 = 0xffff;
}

/// Host feature bits returned by GetHostVersion (`VMMDEV_HVF_*`).
#[allow(missing_docs)]
pub mod hvf {
    pub const HGCM_PHYS_PAGE_LIST: u32 = 1 << 0;
    pub const HGCM_EMBEDDED_BUFFERS: u32 = 1 << 1;
    pub const HGCM_CONTIGUOUS_PAGE_LIST: u32 = 1 << 2;
    pub const HGCM_NO_BOUNCE_PAGE_LIST: u32 = 1 << 3;
}

/// Guest capability bits (`VMMDEV_GUEST_*`).
pub const GUEST_CAPS_MASK: u32 = 0x7;
/// `VMMDEV_GUEST_SUPPORTS_GRAPHICS`.
pub const GUEST_SUPPORTS_GRAPHICS: u32 = 0x4;
/// `VBOXGSTINFO2_F_REQUESTOR_INFO`: the header's fRequestor is meaningful.
pub const GSTINFO2_F_REQUESTOR_INFO: u32 = 0x1;

/// Default heartbeat interval VirtualBox reports (2 s).
pub const HEARTBEAT_INTERVAL_NS: u64 = 2_000_000_000;

/// HGCM limits (`VMMDEV_MAX_HGCM_PARMS`, `VMMDEV_MAX_HGCM_DATA_SIZE`).
pub const HGCM_MAX_PARMS: u32 = 32;
/// Most buffer bytes one HGCM call may carry.
pub const HGCM_MAX_DATA: u64 = 128 << 20;
/// HGCM request flag: done (set by the host).
pub const HGCM_REQ_DONE: u32 = 0x1;
/// HGCM request flag: cancelled (set by the guest).
pub const HGCM_REQ_CANCELLED: u32 = 0x2;

/// Legacy debug-log port ("backdoor"): the guest writes characters.
pub const BACKDOOR_LOG_PORT: u16 = 0x504;
