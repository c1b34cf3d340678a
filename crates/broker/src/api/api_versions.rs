//! ApiVersions: the API ranges this broker serves. A request at a version
//! newer than known never reaches here: it gets the KIP-511 fallback in the
//! server.
//!
//! From v3 it also names Kafka's features (KIP-584) that clients act on:
//! `transaction.version`, which this binary supports from 0 to 2, and which
//! is finalized at 2 once the cluster's feature level runs transaction
//! version 2 (Kafka 4's producers then use it). As Kafka does, v3 leaves out
//! supported features whose minimum is 0 (clients before v4 cannot read
//! one); the finalized features' epoch is the cluster's feature level.

use runnel_controller::Metadata;
use runnel_controller::features::TRANSACTIONS_V2_LEVEL;
use runnel_protocol::kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use runnel_protocol::kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use runnel_protocol::request::advertised_api_versions;

use super::str_bytes;

/// Kafka's name of the transaction protocol's feature.
const TRANSACTION_VERSION: &str = "transaction.version";

pub(crate) fn handle(metadata: &Metadata, _request: ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    let response = ApiVersionsResponse::default().with_error_code(0).with_api_keys(advertised_api_versions());
    if version < 3 {
        return response;
    }
    let level = metadata.state().image.finalized_level();
    let supported = if version >= 4 {
        vec![SupportedFeatureKey::default().with_name(str_bytes(TRANSACTION_VERSION)).with_min_version(0).with_max_version(2)]
    } else {
        vec![]
    };
    let finalized = if level >= TRANSACTIONS_V2_LEVEL {
        vec![FinalizedFeatureKey::default().with_name(str_bytes(TRANSACTION_VERSION)).with_min_version_level(2).with_max_version_level(2)]
    } else {
        vec![]
    };
    response.with_supported_features(supported).with_finalized_features_epoch(i64::from(level)).with_finalized_features(finalized)
}
