//! DeleteAcls (v1-3): every binding that any filter matches is removed,
//! in one Raft entry; each filter's result lists the bindings it matched.

use std::collections::BTreeSet;

use runnel_controller::Metadata;
use runnel_controller::metadata::{AclRecord, Command};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use runnel_protocol::kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use super::{code, str_bytes};
use crate::acl::acl_filter_of;
use crate::topics;

pub(crate) async fn handle(metadata: &Metadata, request: DeleteAclsRequest) -> DeleteAclsResponse {
    let state = metadata.state();
    let mut matched: Vec<Result<Vec<AclRecord>, String>> = Vec::with_capacity(request.filters.len());
    for f in request.filters {
        let filter = acl_filter_of!(f);
        matched.push(match filter.invalid() {
            Some(why) => Err(why),
            None => Ok(state.image.acls.iter().filter(|a| filter.matches(a)).cloned().collect()),
        });
    }
    let doomed: BTreeSet<AclRecord> = matched.iter().flatten().flatten().cloned().collect();
    let failed = match doomed.is_empty() {
        true => None,
        false => topics::propose(metadata, Command::DeleteAcls { acls: doomed.into_iter().collect() }).await.err(),
    };
    let results = matched
        .into_iter()
        .map(|m| match (m, &failed) {
            (Err(why), _) => DeleteAclsFilterResult::default().with_error_code(code(ResponseError::InvalidRequest)).with_error_message(Some(str_bytes(why))),
            (Ok(acls), Some(e)) if !acls.is_empty() => {
                DeleteAclsFilterResult::default().with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message.clone())))
            }
            (Ok(acls), _) => DeleteAclsFilterResult::default().with_matching_acls(
                acls.into_iter()
                    .map(|a| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(a.resource_type)
                            .with_resource_name(str_bytes(a.resource_name))
                            .with_pattern_type(a.pattern_type)
                            .with_principal(str_bytes(a.principal))
                            .with_host(str_bytes(a.host))
                            .with_operation(a.operation)
                            .with_permission_type(a.permission)
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
