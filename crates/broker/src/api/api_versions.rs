//! ApiVersions: the API ranges this broker serves. A request at a version
//! newer than known never reaches here: it gets the KIP-511 fallback in the
//! server.

use runnel_protocol::kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use runnel_protocol::request::advertised_api_versions;

pub(crate) fn handle(_request: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(advertised_api_versions())
}
