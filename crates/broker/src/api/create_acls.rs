//! CreateAcls (v1-3): ACL bindings added through Raft (feature level 5).
//! Each creation gets its own result; the valid ones are stored together,
//! in one entry.

use runnel_controller::Metadata;
use runnel_controller::metadata::{AclRecord, Command};
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::create_acls_response::AclCreationResult;
use runnel_protocol::kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::{code, str_bytes};
use crate::topics;

pub(crate) async fn handle(metadata: &Metadata, request: CreateAclsRequest) -> CreateAclsResponse {
    let mut errors: Vec<Option<(ResponseError, String)>> = vec![None; request.creations.len()];
    let mut valid = Vec::new();
    for (i, c) in request.creations.iter().enumerate() {
        let acl = AclRecord {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        };
        match acl.invalid() {
            Some(why) => errors[i] = Some((ResponseError::InvalidRequest, why)),
            None => valid.push((i, acl)),
        }
    }
    if !valid.is_empty() {
        let acls = valid.iter().map(|(_, a)| a.clone()).collect();
        if let Err(e) = topics::propose(metadata, Command::CreateAcls { acls }).await {
            for (i, _) in &valid {
                errors[*i] = Some((e.code, e.message.clone()));
            }
        }
    }
    let results = errors
        .into_iter()
        .map(|e| match e {
            None => AclCreationResult::default(),
            Some((e, message)) => AclCreationResult::default().with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
