//! hgcm: the host side of VirtualBox's host-guest communication manager.
//!
//! The VMMDev (crate `devices`) decodes the guest's HGCM requests and hands them to an
//! [`HgcmHost`], which routes each to a [`Service`] running on its own thread: a slow host
//! file system or a call that waits for a host event never stalls a vCPU. A service sees
//! only host copies of the parameters ([`Param`]) and completes each [`Call`] when it is
//! done; the VMMDev then writes the results back and raises the HGCM event.
//!
//! Services, one module each, guest-visible-compatible with VirtualBox's of the same name:
//! [`shfl`] (`VBoxSharedFolders`), [`guestprop`] (`VBoxGuestPropSvc`),
//! [`clipboard`] (`VBoxSharedClipboard`).

pub mod clipboard;
pub mod guestprop;
pub mod host;
pub mod param;
pub mod service;
pub mod shfl;
pub mod status;

pub use host::HgcmHost;
pub use param::{Direction, Param};
pub use service::{Call, CancelToken, Completion, Reply, Service};
