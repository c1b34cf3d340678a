//! Kafka's record compression codecs, for the places a broker reads inside
//! a batch: every produced batch's check (its records parse as it counts
//! them), the log cleaner (keys of a compressed batch, and the records it
//! keeps written back), a compacted topic's produce check (every record has
//! a key) and ListOffsets by timestamp. Compression uses the
//! `kafka-protocol` crate's codecs, with Kafka's framing (snappy in xerial
//! blocks or raw, LZ4 frames); decompression reads the same formats with
//! the codec crates directly, as a stream with a bound, because a batch
//! that fits in `max.message.bytes` may decompress to far more than the
//! broker can hold (a few kilobytes of zstd make gigabytes of zeros).

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::{RecordBatchDecoder, RecordSet};

use crate::batch::{BatchError, BatchHeader, HEADER_BYTES, records_well_formed, set_attributes, with_section};

/// The most bytes the records of one batch may decompress to. A batch is
/// at most `max.message.bytes` (1 MiB by default) compressed, and clients
/// bound their batches before compression (`batch.size`), so a real batch
/// stays far below this; more is refused rather than held in memory.
pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = 64 << 20;

/// The largest zstd window a batch may ask for (2^26 bytes): a window
/// larger than [`MAX_DECOMPRESSED_BATCH_BYTES`] serves no batch we accept,
/// and the decoder allocates it before writing anything.
const ZSTD_WINDOW_LOG_MAX: u32 = 26;

/// The xerial framing's magic, at the start of the snappy data the Java
/// client writes; raw snappy (librdkafka) has no such header.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// The xerial header: magic, version and minimum compatible version.
const XERIAL_HEADER_BYTES: usize = 16;

/// Why the records of a compressed batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    #[error("the records do not decompress with {codec}: {reason}")]
    Corrupt { codec: &'static str, reason: String },
    #[error("the records decompress to more than {limit} bytes")]
    TooLarge { limit: usize },
}

/// Kafka's name of a codec id (1 gzip, 2 snappy, 3 lz4, 4 zstd).
fn codec_name(codec: i16) -> &'static str {
    match codec {
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// The records section of a batch compressed with `codec`, uncompressed,
/// if it is at most `limit` bytes. Never holds more than `limit` bytes of
/// output (plus one codec block) however the input is made.
pub fn decompress(codec: i16, data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let name = codec_name(codec);
    let corrupt = |e: std::io::Error| DecompressError::Corrupt { codec: name, reason: e.to_string() };
    match codec {
        1 => read_bounded(flate2::read::MultiGzDecoder::new(data), limit).map_err(corrupt)?,
        2 => snappy(data, limit),
        3 => read_bounded(lz4::Decoder::new(data).map_err(corrupt)?, limit).map_err(corrupt)?,
        4 => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(corrupt)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(corrupt)?;
            read_bounded(decoder, limit).map_err(corrupt)?
        }
        _ => Err(DecompressError::UnknownCodec(codec)),
    }
}

/// Everything `reader` yields, or `TooLarge` as soon as it passes `limit`.
fn read_bounded(reader: impl Read, limit: usize) -> std::io::Result<Result<Vec<u8>, DecompressError>> {
    let mut out = Vec::new();
    reader.take((limit as u64).saturating_add(1)).read_to_end(&mut out)?;
    Ok(if out.len() > limit { Err(DecompressError::TooLarge { limit }) } else { Ok(out) })
}

/// Snappy as Kafka clients write it: the Java client's xerial framing
/// (blocks, each with its compressed length before it) or one raw block.
/// A block's uncompressed length is in its first bytes, checked against
/// what is left of `limit` before anything is allocated.
fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt { codec: "snappy", reason };
    let mut out = Vec::new();
    let block = |compressed: &[u8], out: &mut Vec<u8>| {
        let len = snap::raw::decompress_len(compressed).map_err(|e| corrupt(e.to_string()))?;
        if out.len().saturating_add(len) > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new().decompress(compressed, &mut out[start..]).map_err(|e| corrupt(e.to_string()))?;
        Ok(())
    };
    if !data.starts_with(XERIAL_MAGIC) {
        block(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER_BYTES..).ok_or_else(|| corrupt("truncated xerial header".into()))?;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| corrupt("truncated block length".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let compressed = tail.get(..len).ok_or_else(|| corrupt(format!("block of {len} bytes, {} left", tail.len())))?;
        block(compressed, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
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

/// Why a record set could not be decoded into records.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("the records of the batch at offset {base_offset} do not parse as its {count} records")]
    Malformed { base_offset: i64, count: i32 },
    #[error("{0}")]
    Decode(String),
}

/// The records of every batch in `bytes` (whole v2 batches), decompressed
/// within [`MAX_DECOMPRESSED_BATCH_BYTES`]. Each batch's records are walked
/// before the `kafka-protocol` decoder sees them: it reserves room for as
/// many records and headers as a batch claims, so a claim of two billion
/// would otherwise take the process down.
pub fn decode_record_sets(bytes: &Bytes) -> Result<Vec<RecordSet>, RecordsError> {
    decode_record_sets_within(bytes, MAX_DECOMPRESSED_BATCH_BYTES)
}

fn decode_record_sets_within(bytes: &Bytes, limit: usize) -> Result<Vec<RecordSet>, RecordsError> {
    let mut sets = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..])?;
        let end = pos + h.total_bytes();
        if end > bytes.len() {
            return Err(BatchError::Truncated { need: h.total_bytes(), have: bytes.len() - pos }.into());
        }
        let batch = bytes.slice(pos..end);
        let records = match h.compression() {
            0 => batch.slice(HEADER_BYTES..),
            codec => Bytes::from(decompress(codec, &batch[HEADER_BYTES..], limit)?),
        };
        if !records_well_formed(&records, h.record_count) {
            return Err(RecordsError::Malformed { base_offset: h.base_offset, count: h.record_count });
        }
        let mut buf = batch;
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(|_: &mut Bytes, _| Ok(records.clone())))
            .map_err(|e| RecordsError::Decode(e.to_string()))?;
        sets.push(set);
        pos = end;
    }
    Ok(sets)
}

/// `records` (a producer's record set, already checked) with every batch
/// compressed with `codec` (0: uncompressed), as a topic's
/// `compression.type` asks; `None` when every batch has that codec already.
/// A batch keeps its header (offsets, timestamps, producer id, epoch and
/// sequence, the other attributes); its length, count and CRC are made to
/// fit. Decompression stays within [`MAX_DECOMPRESSED_BATCH_BYTES`].
pub fn recompress(records: &[u8], codec: i16) -> Result<Option<Vec<u8>>, RecordsError> {
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let h = BatchHeader::parse(&records[pos..])?;
        let end = pos + h.total_bytes();
        let batch = records.get(pos..end).ok_or(BatchError::Truncated { need: h.total_bytes(), have: records.len() - pos })?;
        batches.push((h, batch));
        pos = end;
    }
    if batches.iter().all(|(h, _)| h.compression() == codec) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(records.len());
    for (h, batch) in batches {
        if h.compression() == codec {
            out.extend_from_slice(batch);
            continue;
        }
        let plain = match h.compression() {
            0 => std::borrow::Cow::Borrowed(&batch[HEADER_BYTES..]),
            from => std::borrow::Cow::Owned(decompress(from, &batch[HEADER_BYTES..], MAX_DECOMPRESSED_BATCH_BYTES)?),
        };
        if !records_well_formed(&plain, h.record_count) {
            return Err(RecordsError::Malformed { base_offset: h.base_offset, count: h.record_count });
        }
        let section = match codec {
            0 => plain.into_owned(),
            to => compress(to, &plain).ok_or(DecompressError::UnknownCodec(to))?,
        };
        let mut rebuilt = with_section(batch, &section, usize::try_from(h.record_count).unwrap_or(0));
        set_attributes(&mut rebuilt, (h.attributes & !0x7) | codec);
        out.extend_from_slice(&rebuilt);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build_keyed_batch;
    use crate::batch::compress_batch;

    const LIMIT: usize = 1 << 20;

    #[test]
    fn every_codec_round_trips_and_bad_input_is_an_error() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
        for codec in 1..=4 {
            let packed = compress(codec, &data).unwrap_or_else(|| panic!("codec {codec} compresses"));
            assert!(packed.len() < data.len(), "codec {codec} made {} bytes of {}", packed.len(), data.len());
            assert_eq!(decompress(codec, &packed, LIMIT).as_deref(), Ok(&data[..]), "codec {codec}");
            let garbage = decompress(codec, b"\x00\x01not compressed at all", LIMIT);
            assert!(matches!(garbage, Err(DecompressError::Corrupt { .. })), "codec {codec} took garbage: {garbage:?}");
        }
        assert_eq!(compress(5, &data), None);
        assert_eq!(decompress(0, &data, LIMIT), Err(DecompressError::UnknownCodec(0)));
    }

    #[test]
    fn output_past_the_limit_is_refused_for_every_codec() {
        // Zeros compress a thousandfold and more: the shape of a zip bomb.
        let zeros = vec![0u8; 4 * LIMIT];
        for codec in 1..=4 {
            let packed = compress(codec, &zeros).unwrap();
            assert!(packed.len() < LIMIT / 4, "codec {codec}: {} bytes", packed.len());
            assert_eq!(decompress(codec, &packed, LIMIT), Err(DecompressError::TooLarge { limit: LIMIT }), "codec {codec}");
            assert_eq!(decompress(codec, &packed, 4 * LIMIT).map(|v| v.len()), Ok(4 * LIMIT), "codec {codec} at the limit");
        }
    }

    #[test]
    fn raw_snappy_is_read_and_bounded_before_allocation() {
        // librdkafka writes one raw snappy block, without xerial framing.
        let data = vec![7u8; 3000];
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(2, &raw, LIMIT), Ok(data));
        // A block that claims 2^32 - 1 bytes in its length prefix.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(decompress(2, &claim, LIMIT), Err(DecompressError::TooLarge { .. } | DecompressError::Corrupt { .. })));
    }

    #[test]
    fn record_sets_decode_plain_and_compressed_batches() {
        let plain = build_keyed_batch(5, &[(Some(b"k1"), Some(b"v1")), (Some(b"k2"), None)]);
        let mut bytes = plain.clone();
        bytes.extend(compress_batch(&plain, 4).unwrap());
        let sets = decode_record_sets(&Bytes::from(bytes)).unwrap();
        assert_eq!(sets.len(), 2);
        for set in &sets {
            let keys: Vec<_> = set.records.iter().map(|r| r.key.clone().unwrap()).collect();
            assert_eq!(keys, [&b"k1"[..], &b"k2"[..]]);
            assert_eq!(set.records[1].value, None);
        }
    }

    /// A topic's compression.type: every batch ends with the topic's codec
    /// (or uncompressed), its records and header fields as they were.
    #[test]
    fn record_sets_are_recompressed_to_the_topic_codec() {
        let plain = build_keyed_batch(5, &[(Some(b"k1"), Some(b"v1")), (Some(b"k2"), None), (Some(b"k3"), Some(b"v3"))]);
        let records = |bytes: &[u8]| -> Vec<_> {
            decode_record_sets(&Bytes::copy_from_slice(bytes)).unwrap().into_iter().flat_map(|s| s.records).map(|r| (r.offset, r.key, r.value)).collect()
        };
        let want = records(&plain);
        for from in 0..=4i16 {
            let batch = if from == 0 { plain.clone() } else { compress_batch(&plain, from).unwrap() };
            for to in 0..=4i16 {
                let out = recompress(&batch, to).unwrap();
                let Some(out) = out else {
                    assert_eq!(from, to, "{from} -> {to}: left as it was");
                    continue;
                };
                let h = crate::batch::validate(&out).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert_eq!(h.compression(), to);
                let before = BatchHeader::parse(&batch).unwrap();
                assert_eq!((h.base_offset, h.last_offset_delta, h.base_timestamp, h.record_count), (0, 2, 5, 3));
                assert_eq!(h.attributes & !0x7, before.attributes & !0x7);
                assert_eq!(records(&out), want, "{from} -> {to}");
            }
        }
        // A bomb is refused, not inflated.
        let mut bomb = with_section(&plain, &compress(4, &vec![0u8; MAX_DECOMPRESSED_BATCH_BYTES + 1]).unwrap(), 3);
        set_attributes(&mut bomb, 4);
        assert!(matches!(recompress(&bomb, 0), Err(RecordsError::Decompress(DecompressError::TooLarge { .. }))));
    }

    #[test]
    fn record_sets_with_impossible_counts_are_errors_not_allocations() {
        let batch = build_keyed_batch(5, &[(Some(b"k"), Some(b"v"))]);
        // Two billion records claimed in a batch that holds one.
        let mut many = batch.clone();
        many[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode_record_sets(&Bytes::from(many)), Err(RecordsError::Malformed { count: i32::MAX, .. })));
        // A record that claims two billion headers: its last byte is the
        // header count (0); a varint of i32::MAX takes five bytes.
        let mut headers = batch[..batch.len() - 1].to_vec();
        headers.extend([0xfe, 0xff, 0xff, 0xff, 0x0f]);
        let body_len = headers.len() - HEADER_BYTES - 1;
        headers[HEADER_BYTES] = (body_len as u8) << 1; // record length, a one-byte varint
        let length = (headers.len() - 12) as i32;
        headers[8..12].copy_from_slice(&length.to_be_bytes());
        assert!(matches!(decode_record_sets(&Bytes::from(headers)), Err(RecordsError::Malformed { .. })));
        // A compressed batch past the bound.
        let zeros = vec![0u8; LIMIT + 1];
        let mut bomb = with_section(&batch, &compress(4, &zeros).unwrap(), 1);
        set_attributes(&mut bomb, 4);
        let err = decode_record_sets_within(&Bytes::from(bomb), LIMIT).unwrap_err();
        assert!(matches!(err, RecordsError::Decompress(DecompressError::TooLarge { .. })), "{err}");
    }
}
