//! DescribeAcls (v1-3): the bindings a filter matches, grouped by resource.

use std::collections::BTreeMap;

use runnel_controller::Metadata;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use runnel_protocol::kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

use super::{code, str_bytes};
use crate::acl::acl_filter_of;

pub(crate) fn handle(metadata: &Metadata, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let filter = acl_filter_of!(request);
    if let Some(why) = filter.invalid() {
        return DescribeAclsResponse::default().with_error_code(code(ResponseError::InvalidRequest)).with_error_message(Some(str_bytes(why)));
    }
    let state = metadata.state();
    let mut resources: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in state.image.acls.iter().filter(|a| filter.matches(a)) {
        resources.entry((acl.resource_type, &acl.resource_name, acl.pattern_type)).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(acl.principal.clone()))
                .with_host(str_bytes(acl.host.clone()))
                .with_operation(acl.operation)
                .with_permission_type(acl.permission),
        );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern_type)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}
