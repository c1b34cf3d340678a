//! Kafka's record compression codecs, for the one place a broker reads
//! inside a stored batch: the log cleaner, which must see the keys of a
//! compressed batch and write back the records it keeps. The codecs are
//! the `kafka-protocol` crate's, with Kafka's framing (snappy in xerial
//! blocks or raw, LZ4 frames), the same that decode what clients send.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

/// The records section of a batch compressed with `codec` (Kafka's id: 1
/// gzip, 2 snappy, 3 lz4, 4 zstd), uncompressed; `None` for an unknown
/// codec or bytes that do not decompress.
pub(crate) fn decompress(codec: i16, data: &[u8]) -> Option<Vec<u8>> {
    let mut input = Bytes::copy_from_slice(data);
    let result = match codec {
        1 => Gzip::decompress(&mut input, |b| Ok(b.to_vec())),
        2 => Snappy::decompress(&mut input, |b| Ok(b.to_vec())),
        3 => Lz4::decompress(&mut input, |b| Ok(b.to_vec())),
        4 => Zstd::decompress(&mut input, |b| Ok(b.to_vec())),
        _ => return None,
    };
    result.ok()
}

/// `data` compressed with `codec`; `None` for an unknown codec or a codec
/// that fails.
pub(crate) fn compress(codec: i16, data: &[u8]) -> Option<Vec<u8>> {
    let mut out = BytesMut::with_capacity(data.len() / 2 + 64);
    let fill = |b: &mut BytesMut| {
        b.put_slice(data);
        Ok(())
    };
    let result = match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        _ => return None,
    };
    result.ok().map(|()| out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_bad_input_is_none() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
        for codec in 1..=4 {
            let packed = compress(codec, &data).unwrap_or_else(|| panic!("codec {codec} compresses"));
            assert!(packed.len() < data.len(), "codec {codec} made {} bytes of {}", packed.len(), data.len());
            assert_eq!(decompress(codec, &packed).as_deref(), Some(&data[..]), "codec {codec}");
            assert_eq!(decompress(codec, b"\x00\x01not compressed at all"), None, "codec {codec} took garbage");
        }
        assert_eq!(compress(5, &data), None);
        assert_eq!(decompress(0, &data), None);
    }
}
