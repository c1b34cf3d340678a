//! AlterUserScramCredentials (v0, KIP-554): the client sends each user's
//! salted password (never the password); the broker derives the stored and
//! server keys and commits them through the controller (feature level 4).
//! Answered per user; a user named in both lists, or twice for one
//! mechanism, is DUPLICATE_RESOURCE, as in Kafka.

use std::collections::BTreeMap;

use runnel_controller::Metadata;
use runnel_controller::metadata::Command;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use runnel_protocol::kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};

use super::{code, str_bytes};
use crate::sasl::Mechanism;
use crate::topics::{self, TopicError};

fn mechanism(code: i8) -> Result<Mechanism, TopicError> {
    Mechanism::from_kafka_code(code).ok_or_else(|| TopicError::new(ResponseError::UnsupportedSaslMechanism, format!("unknown SCRAM mechanism {code}")))
}

pub(crate) async fn handle(metadata: &Metadata, request: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    // Every change of a user, in request order, or why none is made.
    let mut per_user: BTreeMap<String, Result<Vec<Command>, TopicError>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |user: String, mech: i8, command: Result<Command, TopicError>| {
        let entry = per_user.entry(user.clone()).or_insert_with(|| Ok(Vec::new()));
        let command = if seen.insert((user.clone(), mech)) {
            command
        } else {
            Err(TopicError::new(ResponseError::DuplicateResource, format!("user {user:?} is named more than once for one mechanism")))
        };
        match (entry.as_mut(), command) {
            (Ok(list), Ok(c)) => list.push(c),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    };
    for d in &request.deletions {
        let command = mechanism(d.mechanism).map(|m| Command::DeleteScramCredential { user: d.name.to_string(), mechanism: m.name().to_string() });
        add(d.name.to_string(), d.mechanism, command);
    }
    for u in &request.upsertions {
        let command = mechanism(u.mechanism).and_then(|m| {
            if u.name.is_empty() {
                return Err(TopicError::new(ResponseError::UnacceptableCredential, "a user name is needed"));
            }
            let iterations = u32::try_from(u.iterations).ok().filter(|i| (4096..=16384).contains(i)).ok_or_else(|| {
                TopicError::new(ResponseError::UnacceptableCredential, format!("iterations must be between 4096 and 16384, got {}", u.iterations))
            })?;
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err(TopicError::new(ResponseError::UnacceptableCredential, "a salt and a salted password are needed"));
            }
            let credential = m.credential_from_salted(u.salt.to_vec(), iterations, &u.salted_password);
            Ok(Command::UpsertScramCredential { user: u.name.to_string(), mechanism: m.name().to_string(), credential })
        });
        add(u.name.to_string(), u.mechanism, command);
    }
    let mut results = Vec::with_capacity(per_user.len());
    for (user, commands) in per_user {
        let outcome = match commands {
            Ok(commands) => {
                let mut outcome = Ok(());
                for c in commands {
                    if let Err(e) = topics::propose(metadata, c).await {
                        outcome = Err(e);
                        break;
                    }
                }
                outcome
            }
            Err(e) => Err(e),
        };
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result.with_error_code(code(e.code)).with_error_message(Some(str_bytes(e.message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
