//! Request decoding and response encoding.
//!
//! Decoding never panics on bytes from the network: every failure is a
//! [`DecodeError`], and the caller closes the connection (Kafka's behaviour for
//! an unknown API key, an unsupported version, or a body it cannot parse).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind, api_versions_response::ApiVersion};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::versions::{self, SUPPORTED};

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<Request>),
    /// ApiVersions at a version newer than Runnel knows: per KIP-511 the broker
    /// answers with a v0 response carrying UNSUPPORTED_VERSION and its own
    /// ranges, so the client can retry at a version both sides know.
    ApiVersionsFallback {
        correlation_id: i32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    Truncated(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api_key:?} version {version} is not supported")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed { api_key: ApiKey, version: i16, reason: String },
}

/// Decodes one frame body (the bytes after the length prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, DecodeError> {
    // api_key(2) + api_version(2) + correlation_id(4) is the minimum header.
    if frame.len() < 8 {
        return Err(DecodeError::Truncated(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| DecodeError::UnknownApiKey(raw_key))?;
    let Some(range) = versions::supported(api_key) else {
        return Err(DecodeError::UnsupportedVersion { api_key, version });
    };
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions && version > range.max {
            let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            return Ok(Decoded::ApiVersionsFallback { correlation_id });
        }
        return Err(DecodeError::UnsupportedVersion { api_key, version });
    }
    let malformed = |reason: String| DecodeError::Malformed { api_key, version, reason };
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| malformed(format!("header: {e}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(|e| malformed(e.to_string()))?;
    Ok(Decoded::Request(Box::new(Request { api_key, version, header, body })))
}

/// Why a response could not be encoded (a field the version cannot carry,
/// a frame too large): a bug on our side, which closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encode {api:?} response header: {message}")]
    Header { api: ApiKey, message: String },
    #[error("encode {api:?} v{version} response: {message}")]
    Body { api: ApiKey, version: i16, message: String },
    #[error("{0:?} response over 2 GiB")]
    TooLarge(ApiKey),
}

/// Encodes a response as a whole frame: length prefix, header, body.
pub fn encode_response(api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // length, patched below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut buf, api_key.response_header_version(version)).map_err(|e| EncodeError::Header { api: api_key, message: e.to_string() })?;
    body.encode(&mut buf, version).map_err(|e| EncodeError::Body { api: api_key, version, message: e.to_string() })?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| EncodeError::TooLarge(api_key))?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The advertised API list, as an ApiVersions response would carry it.
pub fn advertised_api_versions() -> Vec<ApiVersion> {
    SUPPORTED.iter().map(|r| ApiVersion::default().with_api_key(r.key as i16).with_min_version(r.min).with_max_version(r.max)).collect()
}

/// The KIP-511 fallback response, already framed.
pub fn encode_api_versions_fallback(correlation_id: i32) -> Bytes {
    let body = ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION).with_api_keys(advertised_api_versions());
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &ResponseKind::ApiVersions(body))
        .expect("a v0 ApiVersions response with only known fields always encodes")
}

/// Reads the correlation id of a frame, if it has one, for error responses.
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    let mut b = frame.get(4..8)?;
    Some(b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default().with_request_api_key(api_key as i16).with_request_api_version(version).with_correlation_id(7);
        header.encode(&mut buf, api_key.request_header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_metadata_request() {
        let f = frame(ApiKey::Metadata, 9, &RequestKind::Metadata(MetadataRequest::default()));
        match decode_request(f).unwrap() {
            Decoded::Request(r) => {
                assert_eq!(r.api_key, ApiKey::Metadata);
                assert_eq!(r.version, 9);
                assert_eq!(r.header.correlation_id, 7);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn newer_api_versions_gets_the_fallback() {
        let mut f = BytesMut::from(&frame(ApiKey::ApiVersions, 3, &RequestKind::ApiVersions(ApiVersionsRequest::default()))[..]);
        f[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(decode_request(f.freeze()).unwrap(), Decoded::ApiVersionsFallback { correlation_id: 7 }));
        let resp = encode_api_versions_fallback(7);
        // length, correlation id, error code
        assert_eq!(&resp[4..8], &7i32.to_be_bytes());
        assert_eq!(&resp[8..10], &UNSUPPORTED_VERSION.to_be_bytes());
    }

    #[test]
    fn unknown_key_and_version_are_errors() {
        let f = frame(ApiKey::Metadata, 9, &RequestKind::Metadata(MetadataRequest::default()));
        let mut bad_key = BytesMut::from(&f[..]);
        bad_key[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(decode_request(bad_key.freeze()), Err(DecodeError::UnknownApiKey(999))));
        let mut bad_version = BytesMut::from(&f[..]);
        bad_version[2..4].copy_from_slice(&77i16.to_be_bytes());
        assert!(matches!(decode_request(bad_version.freeze()), Err(DecodeError::UnsupportedVersion { version: 77, .. })));
        assert!(matches!(decode_request(f.slice(0..f.len() - 1)), Err(DecodeError::Malformed { .. })));
        assert!(matches!(decode_request(Bytes::from_static(&[0, 3, 0])), Err(DecodeError::Truncated(3))));
    }
}
