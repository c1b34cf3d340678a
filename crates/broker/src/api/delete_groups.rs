//! DeleteGroups: only groups without members, each committed through Raft.

use runnel_coordinator::GroupCoordinator;
use runnel_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use runnel_protocol::kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use super::{code, str_bytes};

pub(crate) async fn handle(groups: &GroupCoordinator, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let names: Vec<String> = request.groups_names.iter().map(|g| g.to_string()).collect();
    let results = groups
        .delete_groups(&names)
        .await
        .into_iter()
        .map(|(g, r)| DeletableGroupResult::default().with_group_id(GroupId(str_bytes(g))).with_error_code(r.err().map_or(0, code)))
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
