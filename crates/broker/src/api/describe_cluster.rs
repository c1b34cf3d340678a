//! DescribeCluster (v0-2): the cluster id, the controller clients are told
//! of (the same as in Metadata) and the brokers, at the endpoints of the
//! listener the request came in on. Fenced brokers are left out unless v2
//! asks for them. Authorized operations are not computed (no authorizer):
//! answered as Kafka does when they were not asked for.

use runnel_controller::Metadata;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use runnel_protocol::kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Client, code, str_bytes};
use crate::acl::{Access, CLUSTER, Resource, op};
use crate::config::BrokerConfig;

/// Kafka's endpoint types (KIP-919): brokers, or the controller quorum.
const ENDPOINT_BROKERS: i8 = 1;

/// What Kafka reports for authorized operations nobody asked for.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub(crate) fn handle(
    access: &Access,
    config: &BrokerConfig,
    metadata: &Metadata,
    request: DescribeClusterRequest,
    version: i16,
    client: Client,
) -> DescribeClusterResponse {
    let operations =
        if request.include_cluster_authorized_operations { access.authorized_operations(Resource::Cluster, CLUSTER) } else { AUTHORIZED_OPERATIONS_OMITTED };
    let response = DescribeClusterResponse::default().with_endpoint_type(ENDPOINT_BROKERS).with_cluster_authorized_operations(operations);
    if !access.cluster(op::DESCRIBE) {
        return response
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed))
            .with_error_message(Some(str_bytes(format!("{} may not describe the cluster", access.principal()))));
    }
    if version >= 1 && request.endpoint_type != ENDPOINT_BROKERS {
        return response
            .with_endpoint_type(request.endpoint_type)
            .with_error_code(code(ResponseError::UnsupportedEndpointType))
            .with_error_message(Some(str_bytes("only broker endpoints (1) are described; the controllers answer on the brokers")));
    }
    let state = metadata.state();
    let image = &state.image;
    let include_fenced = version >= 2 && request.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|b| include_fenced || !b.fenced)
        .map(|b| {
            let (host, port) = b.kafka_endpoint(client.external);
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id.broker_id()))
                .with_host(str_bytes(host))
                .with_port(i32::from(port))
                .with_rack(b.rack.clone().map(str_bytes))
                .with_is_fenced(b.fenced)
        })
        .collect();
    response
        .with_cluster_id(str_bytes(image.cluster_id.clone().unwrap_or_default()))
        .with_controller_id(BrokerId(super::metadata::controller_id(config, metadata, image)))
        .with_brokers(brokers)
}
