//! ListGroups, DescribeGroups and DeleteGroups, as Kafka's admin clients use
//! them. Only the coordinator knows groups: other brokers list none and
//! answer NOT_COORDINATOR for a named group.

use std::sync::Arc;

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use runnel_protocol::kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use runnel_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use runnel_protocol::kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
};

use super::{code, str_bytes};
use crate::broker::Broker;

/// The only group type Runnel runs (KIP-848's "consumer" groups are not supported).
const GROUP_TYPE: &str = "classic";

pub(crate) fn list_groups(broker: &Arc<Broker>, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let groups = match broker.groups.list() {
        Ok(groups) => groups,
        // Not the coordinator: this broker has no groups to list.
        Err(ResponseError::NotCoordinator) => Vec::new(),
        Err(e) => return ListGroupsResponse::default().with_error_code(code(e)),
    };
    let wanted_state = |s: &str| request.states_filter.is_empty() || request.states_filter.iter().any(|f| f.eq_ignore_ascii_case(s));
    let wanted_type = request.types_filter.is_empty() || request.types_filter.iter().any(|f| f.eq_ignore_ascii_case(GROUP_TYPE));
    let listed = groups
        .into_iter()
        .filter(|(_, _, state)| wanted_type && wanted_state(state))
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default().with_group_id(GroupId(str_bytes(id))).with_protocol_type(str_bytes(protocol_type));
            if version >= 4 {
                g = g.with_group_state(str_bytes(state));
            }
            if version >= 5 {
                g = g.with_group_type(str_bytes(GROUP_TYPE));
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}

pub(crate) fn describe_groups(broker: &Arc<Broker>, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            match broker.groups.describe(id) {
                Err(e) => described.with_error_code(code(e)),
                // v6+ names a missing group; older versions report it Dead.
                Ok(None) if version >= 6 => described
                    .with_error_code(code(ResponseError::GroupIdNotFound))
                    .with_error_message(Some(str_bytes(format!("group {:?} does not exist", id.to_string()))))
                    .with_group_state(str_bytes("Dead")),
                Ok(None) => described.with_group_state(str_bytes("Dead")),
                Ok(Some(summary)) => described
                    .with_group_state(str_bytes(summary.state))
                    .with_protocol_type(str_bytes(summary.protocol_type))
                    .with_protocol_data(str_bytes(summary.protocol))
                    .with_members(
                        summary
                            .members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(if version >= 4 { m.instance_id.map(str_bytes) } else { None })
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(crate) async fn delete_groups(broker: &Arc<Broker>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let names: Vec<String> = request.groups_names.iter().map(|g| g.to_string()).collect();
    let results = broker
        .groups
        .delete_groups(&names)
        .await
        .into_iter()
        .map(|(g, r)| DeletableGroupResult::default().with_group_id(GroupId(str_bytes(g))).with_error_code(r.err().map_or(0, code)))
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
