//! DescribeUserScramCredentials (v0, KIP-554): each user's mechanisms and
//! iteration counts (never salts or keys); every user, or those named,
//! with RESOURCE_NOT_FOUND for a named user that has none.

use std::collections::BTreeMap;

use runnel_controller::Metadata;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use runnel_protocol::kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};

use super::{code, str_bytes};
use crate::sasl::Mechanism;

pub(crate) fn handle(metadata: &Metadata, request: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let state = metadata.state();
    let mut users: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for ((user, mechanism), c) in &state.image.scram {
        let code = Mechanism::parse(mechanism).map_or(0, Mechanism::kafka_code);
        users.entry(user.as_str()).or_default().push(CredentialInfo::default().with_mechanism(code).with_iterations(c.iterations as i32));
    }
    let results = match request.users {
        None => {
            users.into_iter().map(|(u, infos)| DescribeUserScramCredentialsResult::default().with_user(str_bytes(u)).with_credential_infos(infos)).collect()
        }
        Some(named) => named
            .iter()
            .map(|n| {
                let result = DescribeUserScramCredentialsResult::default().with_user(n.name.clone());
                match users.get(n.name.as_str()) {
                    Some(infos) => result.with_credential_infos(infos.clone()),
                    None => result
                        .with_error_code(code(ResponseError::ResourceNotFound))
                        .with_error_message(Some(str_bytes(format!("attempt to describe a user credential that does not exist: {}", n.name)))),
                }
            })
            .collect(),
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
