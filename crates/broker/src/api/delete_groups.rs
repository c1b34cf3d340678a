//! DeleteGroups: only groups without members, each committed through Raft.

use std::sync::Arc;

use runnel_coordinator::GroupCoordinator;
use runnel_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use runnel_protocol::kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use runnel_protocol::kafka_protocol::error::ResponseError;

use super::{code, str_bytes};
use crate::acl::{Access, Resource, op};

pub(crate) async fn handle(access: &Access, groups: &Arc<GroupCoordinator>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let (names, denied): (Vec<String>, Vec<String>) =
        request.groups_names.iter().map(|g| g.to_string()).partition(|g| access.allowed(Resource::Group, g, op::DELETE));
    let result = |g: String, error: i16| DeletableGroupResult::default().with_group_id(GroupId(str_bytes(g))).with_error_code(error);
    let mut results: Vec<DeletableGroupResult> = denied.into_iter().map(|g| result(g, code(ResponseError::GroupAuthorizationFailed))).collect();
    if !names.is_empty() {
        results.extend(groups.delete_groups(&names).await.into_iter().map(|(g, r)| result(g, r.err().map_or(0, code))));
    }
    DeleteGroupsResponse::default().with_results(results)
}
