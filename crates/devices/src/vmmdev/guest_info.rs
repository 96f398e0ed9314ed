//! What the Guest Additions told the host about themselves: interface and additions
//! version, OS type, facility status (from which the run level follows), capabilities.

use std::collections::BTreeMap;

/// Facility ids (`VBoxGuestFacilityType`).
#[allow(missing_docs)]
pub mod facility {
    pub const VBOX_GUEST_DRIVER: u32 = 20;
    pub const AUTO_LOGON: u32 = 90;
    pub const VBOX_SERVICE: u32 = 100;
    pub const VBOX_TRAY_CLIENT: u32 = 101;
    pub const SEAMLESS: u32 = 1000;
    pub const GRAPHICS: u32 = 1100;
    pub const MONITOR_ATTACH: u32 = 1101;
    pub const ALL: u32 = 0x7fff_fffe;
}

/// Facility status values (`VBoxGuestFacilityStatus`).
#[allow(missing_docs)]
pub mod facility_status {
    pub const INACTIVE: u32 = 0;
    pub const PAUSED: u32 = 1;
    pub const PRE_INIT: u32 = 20;
    pub const INIT: u32 = 30;
    pub const ACTIVE: u32 = 50;
    pub const TERMINATING: u32 = 100;
    pub const TERMINATED: u32 = 101;
    pub const FAILED: u32 = 800;
    pub const UNKNOWN: u32 = 999;
}

/// The Additions version from ReportGuestInfo2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionsVersion {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Build.
    pub build: u32,
    /// Source revision.
    pub revision: u32,
    /// `VBOXGSTINFO2_F_*` feature bits.
    pub features: u32,
    /// The version string the guest sent (e.g. "6.0.0").
    pub name: String,
}

impl std::fmt::Display for AdditionsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} r{}", self.name, self.revision)
    }
}

/// Run level of the Additions, as VirtualBox's `AdditionsRunLevelType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunLevel {
    /// Nothing reported.
    None,
    /// The kernel driver is active.
    System,
    /// VBoxService is active.
    Userland,
    /// The desktop client (VBoxClient / VBoxTray) is active.
    Desktop,
}

impl RunLevel {
    /// The number VirtualBox shows (0-3).
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

/// Everything the guest reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestInfo {
    /// `interfaceVersion` from ReportGuestInfo (0 until reported).
    pub interface_version: u32,
    /// `VBOXOSTYPE` from ReportGuestInfo.
    pub os_type: u32,
    /// From ReportGuestInfo2.
    pub additions: Option<AdditionsVersion>,
    /// Facility -> (status, flags), from ReportGuestStatus.
    pub facilities: BTreeMap<u32, (u32, u32)>,
    /// `VMMDEV_GUEST_*` capabilities.
    pub capabilities: u32,
    /// Last ReportGuestUserState (state, user name).
    pub user_state: Option<(u32, String)>,
}

impl GuestInfo {
    fn active(&self, f: u32) -> bool {
        matches!(
            self.facilities.get(&f),
            Some((s, _)) if *s == facility_status::ACTIVE || *s == facility_status::INIT
        )
    }

    /// The run level the reported facilities imply.
    pub fn run_level(&self) -> RunLevel {
        if self.active(facility::VBOX_TRAY_CLIENT) {
            RunLevel::Desktop
        } else if self.active(facility::VBOX_SERVICE) {
            RunLevel::Userland
        } else if self.active(facility::VBOX_GUEST_DRIVER) || self.interface_version != 0 {
            RunLevel::System
        } else {
            RunLevel::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_level_follows_facilities() {
        let mut g = GuestInfo::default();
        assert_eq!(g.run_level(), RunLevel::None);
        g.interface_version = 0x10004;
        assert_eq!(g.run_level(), RunLevel::System);
        g.facilities
            .insert(facility::VBOX_SERVICE, (facility_status::ACTIVE, 0));
        assert_eq!(g.run_level(), RunLevel::Userland);
        g.facilities
            .insert(facility::VBOX_TRAY_CLIENT, (facility_status::TERMINATED, 0));
        assert_eq!(g.run_level(), RunLevel::Userland);
        g.facilities
            .insert(facility::VBOX_TRAY_CLIENT, (facility_status::ACTIVE, 0));
        assert_eq!(g.run_level(), RunLevel::Desktop);
    }
}
