//! A view of Kafka RecordBatch v2 headers: the only record format Runnel stores.
//!
//! ```text
//! offset  size  field
//!      0     8  base_offset             rewritten by the log on append
//!      8     4  batch_length            bytes after this field
//!     12     4  partition_leader_epoch  rewritten by the log on append
//!     16     1  magic                   must be 2
//!     17     4  crc                     CRC-32C of bytes 21..end
//!     21     2  attributes              compression in the low 3 bits,
//!                                           0x10 transactional, 0x20 control
//!     23     4  last_offset_delta
//!     27     8  base_timestamp
//!     35     8  max_timestamp
//!     43     8  producer_id
//!     51     2  producer_epoch
//!     53     4  base_sequence
//!     57     4  record_count
//!     61        records (possibly compressed)
//! ```
//! The CRC does not cover the base offset or the leader epoch, so the log can
//! stamp both without touching the records.

/// Bytes before `records` in a v2 batch.
pub const HEADER_BYTES: usize = 61;
/// `base_offset` and `batch_length`: the bytes not counted by `batch_length`.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
/// The attribute bit of a batch written inside a transaction.
pub const TRANSACTIONAL: i16 = 0x10;
/// The attribute bit of a control batch (a transaction marker).
pub const CONTROL: i16 = 0x20;

/// What a transaction marker says: the type in a control record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Abort,
    Commit,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BatchError {
    #[error("record batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("record batch length {0} is invalid")]
    BadLength(i32),
    #[error("record batch magic {0} is not supported (only v2)")]
    BadMagic(i8),
    #[error("record batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("record batch has last_offset_delta {last_offset_delta} and record_count {record_count}")]
    BadCounts { last_offset_delta: i32, record_count: i32 },
    #[error("no record batch in an empty record set")]
    Empty,
    #[error("the records of the batch do not parse as the {0} records its header counts")]
    MalformedRecords(i32),
    #[error(transparent)]
    Compressed(#[from] crate::compression::DecompressError),
}

/// The parsed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("slice of 8"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("slice of 4"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("slice of 2"))
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks the length field and the
    /// magic byte, not the CRC (see [`validate`]).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_BYTES {
            return Err(BatchError::Truncated { need: HEADER_BYTES, have: buf.len() });
        }
        let batch_length = be_i32(buf, 8);
        if batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            leader_epoch: be_i32(buf, 12),
            magic,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        };
        if header.last_offset_delta < 0 || header.record_count < 0 {
            return Err(BatchError::BadCounts { last_offset_delta: header.last_offset_delta, record_count: header.record_count });
        }
        Ok(header)
    }

    /// Bytes of the whole batch, including the log overhead.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Kafka's compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }
}

/// The marker in a control batch's first record, from the bytes after the
/// header: its key is a version (i16) and a type (i16: 0 abort, 1 commit).
/// `None` for other control types and for bytes that do not parse (control
/// batches are never compressed).
pub fn marker_in(records: &[u8]) -> Option<Marker> {
    control_in(records).map(|(marker, _)| marker)
}

/// The marker of a control batch's first record and the coordinator epoch
/// in its value (version i16, then the epoch as i32); the epoch is -1 when
/// the value is missing or too short.
pub fn control_in(records: &[u8]) -> Option<(Marker, i32)> {
    let varint = read_varint;
    let mut pos = 0;
    varint(records, &mut pos)?; // record length
    pos += 1; // attributes
    varint(records, &mut pos)?; // timestamp delta
    varint(records, &mut pos)?; // offset delta
    if varint(records, &mut pos)? < 4 {
        return None;
    }
    let key = records.get(pos..pos + 4)?;
    let marker = match i16::from_be_bytes([key[2], key[3]]) {
        0 => Marker::Abort,
        1 => Marker::Commit,
        _ => return None,
    };
    pos += 4;
    let coordinator_epoch = varint(records, &mut pos)
        .filter(|len| *len >= 6)
        .and_then(|_| records.get(pos + 2..pos + 6))
        .map_or(-1, |e| i32::from_be_bytes([e[0], e[1], e[2], e[3]]));
    Some((marker, coordinator_epoch))
}

/// Reads the zigzag varint at `*pos` and moves past it; `None` when the
/// bytes run out or it is longer than 64 bits.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// Parses and checks one whole batch: length matches the buffer, CRC matches.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_bytes() != batch.len() {
        return Err(BatchError::Truncated { need: header.total_bytes(), have: batch.len() });
    }
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch { expected: header.crc, actual });
    }
    Ok(header)
}

/// Splits a record set (concatenated batches, as a Produce request carries
/// them) into batches, validating each. All or nothing.
pub fn validate_record_set(records: &[u8]) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        let header = BatchHeader::parse(rest)?;
        let end = header.total_bytes();
        if end > rest.len() {
            return Err(BatchError::Truncated { need: end, have: rest.len() });
        }
        let header = validate(&rest[..end])?;
        batches.push((header, pos..pos + end));
        pos += end;
    }
    Ok(batches)
}

/// The offset after the last batch of a record set as stored (whole batches);
/// `None` for an empty set or one that does not start with a batch header.
pub fn next_offset_after(records: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut next = None;
    while let Ok(h) = BatchHeader::parse(&records[pos..]) {
        next = Some(h.last_offset() + 1);
        pos += h.total_bytes();
        if pos >= records.len() {
            break;
        }
    }
    next
}

/// How many of a batch's first bytes [`stamp`] writes into: the base offset
/// (0..8) and the partition leader epoch (12..16).
pub const STAMPED_BYTES: usize = 16;

/// Writes `base_offset` and `leader_epoch` into a batch's header in place.
pub fn stamp(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Builds a valid uncompressed v2 batch of `record_count` records whose values
/// are the given payloads. For tests and benchmarks of this crate and others.
pub fn build_batch(base_timestamp: i64, values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<(Option<&[u8]>, &[u8])> = values.iter().map(|v| (None, *v)).collect();
    build(base_timestamp, 0, (-1, -1, -1), &records)
}

/// A record's key and value; `None` for null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a valid uncompressed v2 batch of `(key, value)` records; a
/// `None` value is a tombstone. For tests.
pub fn build_keyed_batch(base_timestamp: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    build_records(base_timestamp, 0, (-1, -1, -1), records)
}

/// The control batch a transaction coordinator writes into a partition to
/// end `producer_id`'s transaction: one record whose key is the marker
/// (version 0) and whose value is version 0 and the coordinator epoch.
pub fn marker_batch(producer_id: i64, producer_epoch: i16, marker: Marker, coordinator_epoch: i32, timestamp: i64) -> Vec<u8> {
    let kind: i16 = match marker {
        Marker::Abort => 0,
        Marker::Commit => 1,
    };
    let mut key = 0i16.to_be_bytes().to_vec();
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = 0i16.to_be_bytes().to_vec();
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    build(timestamp, TRANSACTIONAL | CONTROL, (producer_id, producer_epoch, -1), &[(Some(&key), &value)])
}

/// An uncompressed v2 batch of `records` (key, value) with the given
/// attributes and producer id, epoch and base sequence.
fn build(base_timestamp: i64, attributes: i16, producer: (i64, i16, i32), records: &[(Option<&[u8]>, &[u8])]) -> Vec<u8> {
    let records: Vec<KeyValue<'_>> = records.iter().map(|(k, v)| (*k, Some(*v))).collect();
    build_records(base_timestamp, attributes, producer, &records)
}

fn build_records(base_timestamp: i64, attributes: i16, producer: (i64, i16, i32), records: &[KeyValue<'_>]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let mut bodies = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        let mut body = Vec::new();
        body.push(0); // attributes
        varint(&mut body, 0); // timestamp delta
        varint(&mut body, i as i64); // offset delta
        match key {
            Some(key) => {
                varint(&mut body, key.len() as i64);
                body.extend_from_slice(key);
            }
            None => varint(&mut body, -1),
        }
        match value {
            Some(value) => {
                varint(&mut body, value.len() as i64);
                body.extend_from_slice(value);
            }
            None => varint(&mut body, -1),
        }
        varint(&mut body, 0); // no headers
        varint(&mut bodies, body.len() as i64);
        bodies.extend_from_slice(&body);
    }
    let count = records.len() as i32;
    let (producer_id, producer_epoch, base_sequence) = producer;
    let mut b = Vec::with_capacity(HEADER_BYTES + bodies.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_BYTES - LOG_OVERHEAD + bodies.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(count - 1).max(0).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&base_sequence.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(&bodies);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// One record of an uncompressed batch, as the cleaner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordSpan {
    pub offset_delta: i64,
    /// Where the key is in the records section; `None` for a null key.
    pub key: Option<std::ops::Range<usize>>,
    /// Where the value is in the records section; `None` for a null value
    /// (a tombstone).
    pub value: Option<std::ops::Range<usize>>,
    /// The whole record, its length prefix included.
    pub span: std::ops::Range<usize>,
}

/// The records of an uncompressed batch's records section (the bytes after
/// the header); `None` when they do not parse as `count` records.
pub(crate) fn record_spans(records: &[u8], count: i32) -> Option<Vec<RecordSpan>> {
    let mut out = Vec::with_capacity(usize::try_from(count).ok()?.min(records.len()));
    let mut pos = 0;
    for _ in 0..count {
        let start = pos;
        let length = usize::try_from(read_varint(records, &mut pos)?).ok()?;
        let end = pos.checked_add(length).filter(|e| *e <= records.len())?;
        let body = &records[..end];
        pos += 1; // attributes
        read_varint(body, &mut pos)?; // timestamp delta
        let offset_delta = read_varint(body, &mut pos)?;
        let key = match read_varint(body, &mut pos)? {
            -1 => None,
            n => {
                let n = usize::try_from(n).ok()?;
                let range = pos..pos.checked_add(n).filter(|e| *e <= end)?;
                pos = range.end;
                Some(range)
            }
        };
        let value = match read_varint(body, &mut pos)? {
            -1 => None,
            n => Some(pos..pos.checked_add(usize::try_from(n).ok()?).filter(|e| *e <= end)?),
        };
        out.push(RecordSpan { offset_delta, key, value, span: start..end });
        pos = end;
    }
    (pos == records.len()).then_some(out)
}

/// Whether `records` (a batch's records section, uncompressed) is exactly
/// `count` records, each whole: lengths within bounds, and no record
/// claiming more headers than it has bytes for. Allocates nothing, and
/// stops at the first record that does not fit, whatever `count` claims.
pub(crate) fn records_well_formed(records: &[u8], count: i32) -> bool {
    fn bytes_field(body: &[u8], pos: &mut usize, nullable: bool) -> Option<()> {
        match read_varint(body, pos)? {
            -1 if nullable => {}
            n => *pos = pos.checked_add(usize::try_from(n).ok()?).filter(|e| *e <= body.len())?,
        }
        Some(())
    }
    fn record(records: &[u8], pos: &mut usize) -> Option<()> {
        let length = usize::try_from(read_varint(records, pos)?).ok()?;
        let end = pos.checked_add(length).filter(|e| *e <= records.len())?;
        let body = &records[..end];
        body.get(*pos)?; // attributes
        *pos += 1;
        read_varint(body, pos)?; // timestamp delta
        read_varint(body, pos)?; // offset delta
        bytes_field(body, pos, true)?; // key
        bytes_field(body, pos, true)?; // value
        let headers = usize::try_from(read_varint(body, pos)?).ok()?;
        // A header is at least two bytes (its key and value lengths).
        if headers > (end - *pos) / 2 {
            return None;
        }
        for _ in 0..headers {
            bytes_field(body, pos, false)?;
            bytes_field(body, pos, true)?;
        }
        (*pos == end).then_some(())
    }
    let mut pos = 0;
    for _ in 0..count {
        if record(records, &mut pos).is_none() {
            return false;
        }
    }
    pos == records.len()
}

/// A copy of `batch` holding only the records at `keep` (ranges of its
/// records section, in order). The base offset, last offset delta,
/// timestamps and producer fields stay as they were, as Kafka's cleaner
/// keeps them for v2 batches, so offsets and sequences still line up; the
/// count, length and CRC are recomputed.
pub(crate) fn with_records(batch: &[u8], keep: &[std::ops::Range<usize>]) -> Vec<u8> {
    let records = &batch[HEADER_BYTES..];
    let mut section = Vec::with_capacity(records.len());
    for r in keep {
        section.extend_from_slice(&records[r.clone()]);
    }
    with_section(batch, &section, keep.len())
}

/// `batch` with its records section replaced by `section` holding `count`
/// records (compressed as the header's attributes say): the header is
/// kept (base offset, last offset delta, producer, attributes), its
/// length, record count and CRC made to fit.
pub(crate) fn with_section(batch: &[u8], section: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + section.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(section);
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[57..61].copy_from_slice(&(count as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A copy of the uncompressed `batch` with its records compressed with
/// `codec` (Kafka's id: 1 gzip, 2 snappy, 3 lz4, 4 zstd), as a producer
/// that compresses sends it; `None` for an unknown codec. For tests and
/// benches.
pub fn compress_batch(batch: &[u8], codec: i16) -> Option<Vec<u8>> {
    let h = BatchHeader::parse(batch).ok()?;
    let packed = crate::compression::compress(codec, &batch[HEADER_BYTES..])?;
    let mut out = with_section(batch, &packed, usize::try_from(h.record_count).ok()?);
    set_attributes(&mut out, (h.attributes & !0x7) | codec);
    Some(out)
}

/// The attribute bit of a batch whose timestamp is the log append time.
pub const LOG_APPEND_TIME: i16 = 0x08;

/// Stamps every batch of `records` (whole batches, checked) with the log
/// append time `now`, as Kafka does for a topic with
/// `message.timestamp.type=LogAppendTime`: the timestamp type bit set and
/// the max timestamp made `now` (consumers take a batch's max timestamp as
/// every record's); the CRC is recomputed.
pub fn stamp_log_append_time(records: &mut [u8], now: i64) {
    let mut pos = 0;
    while let Ok(h) = BatchHeader::parse(&records[pos..]) {
        let end = pos + h.total_bytes();
        let Some(batch) = records.get_mut(pos..end) else { return };
        batch[35..43].copy_from_slice(&now.to_be_bytes());
        set_attributes(batch, h.attributes | LOG_APPEND_TIME);
        pos = end;
        if pos >= records.len() {
            return;
        }
    }
}

/// Sets a batch's attributes and recomputes its CRC.
pub fn set_attributes(batch: &mut [u8], attributes: i16) {
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Sets a batch's producer id, epoch and base sequence (as an idempotent
/// producer would) and recomputes its CRC. For tests.
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batches_validate_and_stamping_keeps_the_crc() {
        let mut b = build_batch(1000, &[b"a", b"bb", b"ccc"]);
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        stamp(&mut b, 42, 7);
        let h = validate(&b).unwrap();
        assert_eq!((h.base_offset, h.leader_epoch, h.last_offset()), (42, 7, 44));
    }

    #[test]
    fn corruption_is_detected() {
        let b = build_batch(1000, &[b"hello"]);
        let mut flipped = b.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(validate(&flipped), Err(BatchError::CrcMismatch { .. })));
        let mut magic = b.clone();
        magic[16] = 1;
        assert_eq!(validate(&magic), Err(BatchError::BadMagic(1)));
        assert!(matches!(validate(&b[..b.len() - 1]), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate(&b[..10]), Err(BatchError::Truncated { .. })));
        let mut len = b.clone();
        len[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert_eq!(validate(&len), Err(BatchError::BadLength(3)));
    }

    #[test]
    fn marker_batches_say_what_they_mark() {
        for marker in [Marker::Abort, Marker::Commit] {
            let b = marker_batch(9, 3, marker, 5, 1000);
            let h = validate(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.record_count), (9, 3, 1));
            assert_eq!(marker_in(&b[HEADER_BYTES..]), Some(marker));
            assert_eq!(control_in(&b[HEADER_BYTES..]), Some((marker, 5)), "the coordinator epoch is in the value");
        }
        let data = build_batch(1, &[b"x"]);
        assert!(!validate(&data).unwrap().is_control());
        // A record with no key, or cut short, is no marker.
        assert_eq!(marker_in(&data[HEADER_BYTES..]), None);
        let b = marker_batch(9, 3, Marker::Commit, 5, 1000);
        assert_eq!(marker_in(&b[HEADER_BYTES..HEADER_BYTES + 6]), None);
    }

    /// LogAppendTime: every batch of a set gets the time and the type bit,
    /// and stays valid; the rest of the header and the records are kept.
    #[test]
    fn log_append_time_stamps_every_batch() {
        let (a, b) = (build_batch(5, &[b"x", b"y"]), build_batch(6, &[b"z"]));
        let mut set = [a.clone(), b.clone()].concat();
        stamp_log_append_time(&mut set, 1_234);
        let batches = validate_record_set(&set).unwrap();
        assert_eq!(batches.len(), 2);
        for ((h, range), original) in batches.iter().zip([&a, &b]) {
            let before = BatchHeader::parse(original).unwrap();
            assert_eq!((h.max_timestamp, h.attributes & LOG_APPEND_TIME), (1_234, LOG_APPEND_TIME));
            assert_eq!((h.base_timestamp, h.record_count, h.attributes & !LOG_APPEND_TIME), (before.base_timestamp, before.record_count, before.attributes));
            assert_eq!(set[range.clone()][HEADER_BYTES..], original[HEADER_BYTES..]);
        }
    }

    #[test]
    fn record_sets_split_into_batches() {
        let mut set = build_batch(1, &[b"x"]);
        set.extend(build_batch(2, &[b"y", b"z"]));
        let batches = validate_record_set(&set).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].0.record_count, 2);
        assert_eq!(batches[1].1.end, set.len());
        assert_eq!(validate_record_set(&[]), Err(BatchError::Empty));
        assert!(validate_record_set(&set[..set.len() - 2]).is_err());
    }
}
