//! ListGroups: the groups this node coordinates (none elsewhere), classic
//! and (KIP-848) consumer groups, with the state and type filters of v4+.

use runnel_coordinator::GroupCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use runnel_protocol::kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};

/// Lists every group to a principal that may describe the cluster, else
/// those it may describe, as Kafka does.
pub(crate) fn handle(access: &Access, groups: &GroupCoordinator, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let all = access.decide(Resource::Cluster, crate::acl::CLUSTER, op::DESCRIBE);
    let groups = match groups.list() {
        Ok(groups) => groups,
        // Not the coordinator: this broker has no groups to list.
        Err(ResponseError::NotCoordinator) => Vec::new(),
        Err(e) => return ListGroupsResponse::default().with_error_code(code(e)),
    };
    let wanted_state = |s: &str| request.states_filter.is_empty() || request.states_filter.iter().any(|f| f.eq_ignore_ascii_case(s));
    let wanted_type = |t: &str| request.types_filter.is_empty() || request.types_filter.iter().any(|f| f.eq_ignore_ascii_case(t));
    let listed = groups
        .into_iter()
        .filter(|(id, _, state, group_type)| wanted_type(group_type) && wanted_state(state) && (all || access.decide(Resource::Group, id, op::DESCRIBE)))
        .map(|(id, protocol_type, state, group_type)| {
            let mut g = ListedGroup::default().with_group_id(GroupId(str_bytes(id))).with_protocol_type(str_bytes(protocol_type));
            if version >= 4 {
                g = g.with_group_state(str_bytes(state));
            }
            if version >= 5 {
                g = g.with_group_type(str_bytes(group_type));
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
