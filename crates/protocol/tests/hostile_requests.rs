//! Hostile and random request bytes must decode to an error, never a panic or
//! an abort. This doubles as the fuzz target for request decoding: run it long
//! with `PROPTEST_CASES=1000000 cargo test -p runnel-protocol --release --test hostile_requests`.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use runnel_protocol::alloc::GuardedAllocator;
use runnel_protocol::decode_request;
use runnel_protocol::versions::SUPPORTED;

#[global_allocator]
static ALLOC: GuardedAllocator = GuardedAllocator;

fn header(api_key: i16, version: i16) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(1); // correlation id
    b.put_i16(-1); // null client id
    b
}

#[test]
fn huge_array_length_is_an_error_not_an_abort() {
    // Metadata v0: topics array claiming i32::MAX entries, then nothing.
    let mut b = header(3, 0);
    b.put_i32(i32::MAX);
    assert!(decode_request(b.freeze()).is_err());
    // Produce v3: transactional id null, acks, timeout, topics array of i32::MAX.
    let mut b = header(0, 3);
    b.put_i16(-1);
    b.put_i16(1);
    b.put_i32(1000);
    b.put_i32(i32::MAX);
    assert!(decode_request(b.freeze()).is_err());
    // Metadata v9 (flexible): header tagged fields, compact array of u32::MAX-1 entries.
    let mut b = header(3, 9);
    b.put_u8(0); // header tagged fields
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(decode_request(b.freeze()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes after a valid API key and version: decoding returns, whatever it returns.
    #[test]
    fn random_bodies_never_panic(which in 0..SUPPORTED.len(), version_pick in 0i16..16, body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let range = SUPPORTED[which];
        let version = range.min + version_pick % (range.max - range.min + 1);
        let mut b = header(range.key as i16, version);
        if range.key.request_header_version(version) >= 2 {
            b.put_u8(0);
        }
        b.extend_from_slice(&body);
        let _ = decode_request(b.freeze());
    }

    /// Entirely random frames.
    #[test]
    fn random_frames_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(Bytes::from(body));
    }
}
