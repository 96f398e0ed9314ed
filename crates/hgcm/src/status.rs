//! VirtualBox (IPRT) status codes that travel between host and guest: `0` success,
//! negative = error, positive = informational success. The values are the ones guests
//! compare against (the Linux drivers map them to errno with a fixed table), so they
//! must be exact.

/// Success.
pub const VINF_SUCCESS: i32 = 0;
/// Buffer too small; data truncated or not copied (informational).
pub const VINF_BUFFER_OVERFLOW: i32 = 41;
/// Try again (informational).
pub const VINF_TRY_AGAIN: i32 = 52;
/// Not found (warning).
pub const VWRN_NOT_FOUND: i32 = 78;
/// Nothing changed.
pub const VINF_NO_CHANGE: i32 = 95;
/// The HGCM request completes asynchronously.
pub const VINF_HGCM_ASYNC_EXECUTE: i32 = 2903;

/// General failure.
pub const VERR_GENERAL_FAILURE: i32 = -1;
/// Invalid parameter.
pub const VERR_INVALID_PARAMETER: i32 = -2;
/// Invalid handle.
pub const VERR_INVALID_HANDLE: i32 = -4;
/// Invalid pointer.
pub const VERR_INVALID_POINTER: i32 = -6;
/// Out of memory.
pub const VERR_NO_MEMORY: i32 = -8;
/// Permission denied.
pub const VERR_PERMISSION_DENIED: i32 = -10;
/// Version mismatch.
pub const VERR_VERSION_MISMATCH: i32 = -11;
/// Not implemented.
pub const VERR_NOT_IMPLEMENTED: i32 = -12;
/// Invalid flags.
pub const VERR_INVALID_FLAGS: i32 = -13;
/// Invalid function.
pub const VERR_INVALID_FUNCTION: i32 = -36;
/// Not supported.
pub const VERR_NOT_SUPPORTED: i32 = -37;
/// Access denied.
pub const VERR_ACCESS_DENIED: i32 = -38;
/// Interrupted.
pub const VERR_INTERRUPTED: i32 = -39;
/// Timeout.
pub const VERR_TIMEOUT: i32 = -40;
/// Buffer overflow.
pub const VERR_BUFFER_OVERFLOW: i32 = -41;
/// Too much data.
pub const VERR_TOO_MUCH_DATA: i32 = -42;
/// Try again.
pub const VERR_TRY_AGAIN: i32 = -52;
/// Out of range.
pub const VERR_OUT_OF_RANGE: i32 = -54;
/// No translation (invalid string encoding).
pub const VERR_NO_TRANSLATION: i32 = -58;
/// Cancelled.
pub const VERR_CANCELLED: i32 = -70;
/// Not found.
pub const VERR_NOT_FOUND: i32 = -78;
/// Invalid state.
pub const VERR_INVALID_STATE: i32 = -79;
/// Out of resources.
pub const VERR_OUT_OF_RESOURCES: i32 = -80;
/// File not found.
pub const VERR_FILE_NOT_FOUND: i32 = -102;
/// Path not found.
pub const VERR_PATH_NOT_FOUND: i32 = -103;
/// Invalid name.
pub const VERR_INVALID_NAME: i32 = -104;
/// Already exists.
pub const VERR_ALREADY_EXISTS: i32 = -105;
/// Too many open files.
pub const VERR_TOO_MANY_OPEN_FILES: i32 = -106;
/// Write protected.
pub const VERR_WRITE_PROTECT: i32 = -113;
/// Sharing violation.
pub const VERR_SHARING_VIOLATION: i32 = -114;
/// File lock failed.
pub const VERR_FILE_LOCK_FAILED: i32 = -115;
/// File lock violation.
pub const VERR_FILE_LOCK_VIOLATION: i32 = -116;
/// Not the same device (cross-device rename).
pub const VERR_NOT_SAME_DEVICE: i32 = -119;
/// File name too long.
pub const VERR_FILENAME_TOO_LONG: i32 = -120;
/// Directory not empty.
pub const VERR_DIR_NOT_EMPTY: i32 = -125;
/// Not a directory.
pub const VERR_NOT_A_DIRECTORY: i32 = -126;
/// Is a directory.
pub const VERR_IS_A_DIRECTORY: i32 = -127;
/// File too big.
pub const VERR_FILE_TOO_BIG: i32 = -128;
/// Resource busy.
pub const VERR_RESOURCE_BUSY: i32 = -138;
/// Disk full.
pub const VERR_DISK_FULL: i32 = -152;
/// Too many symbolic links.
pub const VERR_TOO_MANY_SYMLINKS: i32 = -156;
/// No more files (end of directory).
pub const VERR_NO_MORE_FILES: i32 = -201;
/// Internal error.
pub const VERR_INTERNAL_ERROR: i32 = -225;
/// Device I/O error.
pub const VERR_DEV_IO_ERROR: i32 = -250;
/// No data.
pub const VERR_NO_DATA: i32 = -304;
/// HGCM service not found.
pub const VERR_HGCM_SERVICE_NOT_FOUND: i32 = -2900;
/// HGCM: invalid command address.
pub const VERR_HGCM_INVALID_CMD_ADDRESS: i32 = -2902;
/// HGCM: invalid client id.
pub const VERR_HGCM_INVALID_CLIENT_ID: i32 = -2905;
/// Wrong parameter count.
pub const VERR_WRONG_PARAMETER_COUNT: i32 = -22415;
/// Wrong parameter type.
pub const VERR_WRONG_PARAMETER_TYPE: i32 = -22416;
/// Invalid client id.
pub const VERR_INVALID_CLIENT_ID: i32 = -22417;

/// The IPRT status for a host OS error number (what IPRT's RTErrConvertFromErrno does for
/// the errors a file system produces).
pub fn from_errno(errno: i32) -> i32 {
    match errno {
        0 => VINF_SUCCESS,
        1 => VERR_ACCESS_DENIED,             // EPERM
        2 => VERR_FILE_NOT_FOUND,            // ENOENT
        5 => VERR_DEV_IO_ERROR,              // EIO
        9 => VERR_INVALID_HANDLE,            // EBADF
        11 => VERR_TRY_AGAIN,                // EAGAIN
        12 => VERR_NO_MEMORY,                // ENOMEM
        13 => VERR_ACCESS_DENIED,            // EACCES
        16 => VERR_RESOURCE_BUSY,            // EBUSY
        17 => VERR_ALREADY_EXISTS,           // EEXIST
        18 => VERR_NOT_SAME_DEVICE,          // EXDEV
        20 => VERR_NOT_A_DIRECTORY,          // ENOTDIR
        21 => VERR_IS_A_DIRECTORY,           // EISDIR
        22 => VERR_INVALID_PARAMETER,        // EINVAL
        23 | 24 => VERR_TOO_MANY_OPEN_FILES, // ENFILE, EMFILE
        26 => VERR_RESOURCE_BUSY,            // ETXTBSY
        27 => VERR_FILE_TOO_BIG,             // EFBIG
        28 => VERR_DISK_FULL,                // ENOSPC
        30 => VERR_WRITE_PROTECT,            // EROFS
        36 => VERR_FILENAME_TOO_LONG,        // ENAMETOOLONG
        39 => VERR_DIR_NOT_EMPTY,            // ENOTEMPTY
        40 => VERR_TOO_MANY_SYMLINKS,        // ELOOP
        95 => VERR_NOT_SUPPORTED,            // EOPNOTSUPP
        _ => VERR_GENERAL_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping_matches_iprt() {
        assert_eq!(from_errno(2), VERR_FILE_NOT_FOUND);
        assert_eq!(from_errno(17), VERR_ALREADY_EXISTS);
        assert_eq!(from_errno(39), VERR_DIR_NOT_EMPTY);
        assert_eq!(from_errno(30), VERR_WRITE_PROTECT);
        assert_eq!(from_errno(9999), VERR_GENERAL_FAILURE);
    }
}
