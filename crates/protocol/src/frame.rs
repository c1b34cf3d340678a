//! Length-prefixed framing: every Kafka request and response is an `i32` byte
//! count followed by that many bytes.
//!
//! Framing is two-phase (check, then read): the length is validated before a
//! buffer for the body is allocated, so a hostile prefix costs nothing.

/// Default upper bound on one request frame, as Kafka's `socket.request.max.bytes`.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// Bytes in the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame of length 0 has no request header")]
    Empty,
}

/// Validates a frame's length prefix; returns the body length to read.
pub fn check_frame_len(prefix: [u8; LENGTH_PREFIX_BYTES], frame_bytes_max: usize) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 {
        return Err(FrameError::Negative(len));
    }
    let len = len as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > frame_bytes_max {
        return Err(FrameError::TooLarge { len, max: frame_bytes_max });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(len: i32, max: usize, expected: Result<usize, FrameError>) {
        assert_eq!(check_frame_len(len.to_be_bytes(), max), expected, "len {len} max {max}");
    }

    #[test]
    fn frame_lengths() {
        check(10, 100, Ok(10));
        check(100, 100, Ok(100));
        check(101, 100, Err(FrameError::TooLarge { len: 101, max: 100 }));
        check(-1, 100, Err(FrameError::Negative(-1)));
        check(i32::MIN, 100, Err(FrameError::Negative(i32::MIN)));
        check(0, 100, Err(FrameError::Empty));
    }
}
