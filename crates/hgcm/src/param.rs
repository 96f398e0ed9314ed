//! What a service sees of an HGCM call's parameters: 32-bit values, 64-bit values and
//! buffers (VirtualBox's VBOXHGCMSVCPARM). The VMMDev turns every guest parameter form
//! (linear address, page list, embedded) into one of these host copies before the call and
//! writes the values and "from host" buffers back afterwards, so a service never touches
//! guest memory.

/// Direction of a buffer's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    /// The guest's data is copied into the host buffer before the call.
    pub to_host: bool,
    /// The host buffer is copied back to the guest after the call.
    pub from_host: bool,
}

impl Direction {
    /// In and out.
    pub const BOTH: Direction = Direction {
        to_host: true,
        from_host: true,
    };
    /// Guest to host only.
    pub const IN: Direction = Direction {
        to_host: true,
        from_host: false,
    };
    /// Host to guest only.
    pub const OUT: Direction = Direction {
        to_host: false,
        from_host: true,
    };
}

/// One call parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// A 32-bit value (in and out).
    U32(u32),
    /// A 64-bit value (in and out).
    U64(u64),
    /// A buffer of exactly the guest's declared size; a service may change the bytes but
    /// not the length (the write-back copies `data.len()` bytes).
    Buffer {
        /// Direction.
        dir: Direction,
        /// The host copy.
        data: Vec<u8>,
    },
}

impl Param {
    /// A buffer with both directions (tests and host-side callers).
    pub fn buf(data: impl Into<Vec<u8>>) -> Param {
        Param::Buffer {
            dir: Direction::BOTH,
            data: data.into(),
        }
    }

    /// The 32-bit value, if this is one.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Param::U32(v) => Some(*v),
            _ => None,
        }
    }

    /// The 64-bit value, if this is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Param::U64(v) => Some(*v),
            _ => None,
        }
    }

    /// The buffer bytes, if this is a buffer.
    pub fn as_buf(&self) -> Option<&[u8]> {
        match self {
            Param::Buffer { data, .. } => Some(data),
            _ => None,
        }
    }

    /// The buffer bytes for writing, if this is a buffer.
    pub fn as_buf_mut(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            Param::Buffer { data, .. } => Some(data),
            _ => None,
        }
    }

    /// Replace a 32-bit value (no effect on other kinds, which a service checked before).
    pub fn set_u32(&mut self, v: u32) {
        if let Param::U32(x) = self {
            *x = v;
        }
    }

    /// Replace a 64-bit value.
    pub fn set_u64(&mut self, v: u64) {
        if let Param::U64(x) = self {
            *x = v;
        }
    }
}
