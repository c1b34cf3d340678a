//! Raw Kafka requests over a plain socket, for tests of what real clients
//! never send: bad frames, corrupt batches, unknown versions.

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Encodes a framed request.
pub fn frame(api_key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")))
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("encode header");
    body.encode(&mut buf, version).expect("encode body");
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Reads one response frame's body; `None` if the connection closed.
pub fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

/// Sends a request and decodes its response.
pub fn call(stream: &mut TcpStream, api_key: ApiKey, version: i16, body: &RequestKind) -> ResponseKind {
    stream.write_all(&frame(api_key, version, 42, body)).expect("send request");
    let mut resp = read_frame(stream).expect("a response, not a closed connection");
    let header = ResponseHeader::decode(&mut resp, api_key.response_header_version(version)).expect("response header");
    assert_eq!(header.correlation_id, 42);
    ResponseKind::decode(api_key, &mut resp, version).expect("response body")
}

/// Whether the peer closed the connection (a read returns end of file or an error).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(stream.read(&mut b), Ok(0) | Err(_))
}
