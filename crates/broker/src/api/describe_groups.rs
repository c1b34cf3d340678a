//! DescribeGroups: state, protocol and members of groups this node
//! coordinates; NOT_COORDINATOR elsewhere.

use runnel_coordinator::GroupCoordinator;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use runnel_protocol::kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};

pub(crate) fn handle(access: &Access, groups: &GroupCoordinator, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .iter()
        .map(|id| {
            let mut described = DescribedGroup::default().with_group_id(id.clone());
            if !access.allowed(Resource::Group, id, op::DESCRIBE) {
                return described.with_error_code(code(ResponseError::GroupAuthorizationFailed));
            }
            if request.include_authorized_operations {
                described = described.with_authorized_operations(access.authorized_operations(Resource::Group, id));
            }
            match groups.describe(id) {
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
