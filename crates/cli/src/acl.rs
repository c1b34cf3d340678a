//! `runnelctl acl create|list|delete`: ACL bindings through the Kafka
//! protocol (CreateAcls, DescribeAcls, DeleteAcls), so runnelctl
//! authenticates on the listener like any client (the SASL and TLS options
//! of produce and consume) and needs ALTER on the cluster (DESCRIBE to list).

use anyhow::{Result, bail};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use crate::kafka::KafkaClient;
use crate::{KafkaArgs, Output, table};

const VERSION: i16 = 3;
const ANY: i8 = 1;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

/// Kafka's resource types and operations, by their codes.
const RESOURCE_TYPES: &[(i8, &str)] = &[(2, "topic"), (3, "group"), (4, "cluster"), (5, "transactional-id")];
const OPERATIONS: &[(i8, &str)] = &[
    (2, "all"),
    (3, "read"),
    (4, "write"),
    (5, "create"),
    (6, "delete"),
    (7, "alter"),
    (8, "describe"),
    (9, "cluster-action"),
    (10, "describe-configs"),
    (11, "alter-configs"),
    (12, "idempotent-write"),
];

#[derive(clap::Subcommand)]
pub enum AclCmd {
    /// Allow a principal operations on a resource (or, with --deny, deny
    /// them; a deny wins over any allow).
    Create {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Who: User:NAME (a SASL user, or User:CN=... from a client
        /// certificate), or User:* for everyone.
        #[arg(long)]
        principal: String,
        /// The client address the binding applies to.
        #[arg(long, default_value = "*")]
        host: String,
        /// read, write, create, delete, alter, describe, describe-configs,
        /// alter-configs, idempotent-write, cluster-action or all; repeatable.
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        #[arg(long)]
        deny: bool,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// The bindings that match the options given (every binding without any).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Remove the bindings that match; name a resource or a principal.
    Delete {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}

impl AclCmd {
    /// How to reach and authenticate on the Kafka listener.
    pub fn kafka(&self) -> &KafkaArgs {
        match self {
            AclCmd::Create { kafka, .. } | AclCmd::List { kafka, .. } | AclCmd::Delete { kafka, .. } => kafka,
        }
    }
}

#[derive(clap::Args)]
pub struct ResourceArgs {
    #[arg(long, group = "resource")]
    topic: Option<String>,
    #[arg(long, group = "resource")]
    group: Option<String>,
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    /// The cluster itself (creating topics, cluster-wide admin).
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The name is a prefix: every resource whose name starts with it.
    #[arg(long)]
    prefixed: bool,
}

#[derive(clap::Args)]
pub struct FilterArgs {
    #[command(flatten)]
    resource: ResourceArgs,
    #[arg(long)]
    principal: Option<String>,
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    operation: Option<String>,
    /// allow or deny.
    #[arg(long)]
    permission: Option<String>,
}

impl ResourceArgs {
    /// The resource type and name given, if any.
    fn named(&self) -> Option<(i8, String)> {
        match (&self.topic, &self.group, &self.transactional_id, self.cluster) {
            (Some(t), ..) => Some((2, t.clone())),
            (_, Some(g), ..) => Some((3, g.clone())),
            (_, _, Some(t), _) => Some((5, t.clone())),
            (.., true) => Some((4, "kafka-cluster".into())),
            _ => None,
        }
    }
}

fn operation(name: &str) -> Result<i8> {
    let wanted = name.to_ascii_lowercase().replace('_', "-");
    match OPERATIONS.iter().find(|(_, n)| *n == wanted) {
        Some((code, _)) => Ok(*code),
        None => bail!("unknown operation {name:?}; one of {}", OPERATIONS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")),
    }
}

fn name_of(table: &[(i8, &'static str)], code: i8) -> String {
    table.iter().find(|(c, _)| *c == code).map_or_else(|| code.to_string(), |(_, n)| n.to_string())
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn failed(code: i16, message: Option<&StrBytes>) -> Option<String> {
    let e = ResponseError::try_from_code(code)?;
    let message = match (message.filter(|m| !m.is_empty()), e) {
        (Some(m), _) => m.to_string(),
        (None, ResponseError::ClusterAuthorizationFailed) => {
            "this principal may not manage ACLs: that takes ALTER on the cluster (DESCRIBE to list) or a super user".into()
        }
        (None, ResponseError::SecurityDisabled) => "the node runs without an authorizer (--authorizer acl)".into(),
        (None, _) => return Some(e.to_string()),
    };
    Some(format!("{e}: {message}"))
}

pub async fn run(mut client: KafkaClient, command: AclCmd, output: Output) -> Result<()> {
    match command {
        AclCmd::Create { resource, principal, host, operations, deny, .. } => {
            let Some((resource_type, name)) = resource.named() else { bail!("name the resource: --topic, --group, --transactional-id or --cluster") };
            let pattern = if resource.prefixed { PREFIXED } else { LITERAL };
            let mut creations = Vec::new();
            for op in &operations {
                creations.push(
                    AclCreation::default()
                        .with_resource_type(resource_type)
                        .with_resource_name(text(&name))
                        .with_resource_pattern_type(pattern)
                        .with_principal(text(&principal))
                        .with_host(text(&host))
                        .with_operation(operation(op)?)
                        .with_permission_type(if deny { DENY } else { ALLOW }),
                );
            }
            let request = RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(creations));
            let ResponseKind::CreateAcls(r) = client.admin(ApiKey::CreateAcls, VERSION, request).await? else {
                bail!("a CreateAcls request was answered with another response");
            };
            let errors: Vec<String> = r.results.iter().filter_map(|c| failed(c.error_code, c.error_message.as_ref())).collect();
            if let Some(first) = errors.first() {
                bail!("{first}");
            }
            if output == Output::Table {
                outln!("created {} binding(s) for {principal}", operations.len());
            }
        }
        AclCmd::List { filter, .. } => {
            let f = filter_of(&filter)?;
            let request = DescribeAclsRequest::default()
                .with_resource_type_filter(f.resource_type_filter)
                .with_resource_name_filter(f.resource_name_filter)
                .with_pattern_type_filter(f.pattern_type_filter)
                .with_principal_filter(f.principal_filter)
                .with_host_filter(f.host_filter)
                .with_operation(f.operation)
                .with_permission_type(f.permission_type);
            let ResponseKind::DescribeAcls(r) = client.admin(ApiKey::DescribeAcls, VERSION, RequestKind::DescribeAcls(request)).await? else {
                bail!("a DescribeAcls request was answered with another response");
            };
            if let Some(e) = failed(r.error_code, r.error_message.as_ref()) {
                bail!("{e}");
            }
            let rows: Vec<Binding> = r
                .resources
                .iter()
                .flat_map(|res| {
                    res.acls.iter().map(|a| Binding {
                        resource_type: res.resource_type,
                        name: res.resource_name.to_string(),
                        pattern: res.pattern_type,
                        principal: a.principal.to_string(),
                        host: a.host.to_string(),
                        operation: a.operation,
                        permission: a.permission_type,
                    })
                })
                .collect();
            print_bindings(&rows, output);
        }
        AclCmd::Delete { filter, .. } => {
            if filter.resource.named().is_none() && filter.principal.is_none() {
                bail!("name a resource (--topic, --group, --transactional-id, --cluster) or a --principal whose bindings to remove");
            }
            let request = DeleteAclsRequest::default().with_filters(vec![filter_of(&filter)?]);
            let ResponseKind::DeleteAcls(r) = client.admin(ApiKey::DeleteAcls, VERSION, RequestKind::DeleteAcls(request)).await? else {
                bail!("a DeleteAcls request was answered with another response");
            };
            let mut removed = Vec::new();
            for result in &r.filter_results {
                if let Some(e) = failed(result.error_code, result.error_message.as_ref()) {
                    bail!("{e}");
                }
                removed.extend(result.matching_acls.iter().map(|a| Binding {
                    resource_type: a.resource_type,
                    name: a.resource_name.to_string(),
                    pattern: a.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                }));
            }
            print_bindings(&removed, output);
        }
    }
    Ok(())
}

/// A filter: what is not given matches anything.
fn filter_of(f: &FilterArgs) -> Result<DeleteAclsFilter> {
    let (resource_type, name) = f.resource.named().map_or((ANY, None), |(t, n)| (t, Some(text(&n))));
    let pattern = match (f.resource.prefixed, &name) {
        (true, _) => PREFIXED,
        (false, Some(_)) => LITERAL,
        (false, None) => ANY,
    };
    let permission = match f.permission.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => ANY,
        Some("allow") => ALLOW,
        Some("deny") => DENY,
        Some(other) => bail!("--permission is allow or deny, not {other:?}"),
    };
    Ok(DeleteAclsFilter::default()
        .with_resource_type_filter(resource_type)
        .with_resource_name_filter(name)
        .with_pattern_type_filter(pattern)
        .with_principal_filter(f.principal.as_deref().map(text))
        .with_host_filter(f.host.as_deref().map(text))
        .with_operation(f.operation.as_deref().map_or(Ok(ANY), operation)?)
        .with_permission_type(permission))
}

struct Binding {
    resource_type: i8,
    name: String,
    pattern: i8,
    principal: String,
    host: String,
    operation: i8,
    permission: i8,
}

fn print_bindings(rows: &[Binding], output: Output) {
    let pattern = |p: i8| if p == PREFIXED { "prefixed" } else { "literal" };
    let permission = |p: i8| if p == DENY { "deny" } else { "allow" };
    if output == Output::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|b| {
                json!({
                    "resource_type": name_of(RESOURCE_TYPES, b.resource_type),
                    "resource_name": b.name,
                    "pattern_type": pattern(b.pattern),
                    "principal": b.principal,
                    "host": b.host,
                    "operation": name_of(OPERATIONS, b.operation),
                    "permission": permission(b.permission),
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(list));
        return;
    }
    let rows = rows
        .iter()
        .map(|b| {
            vec![
                b.principal.clone(),
                b.host.clone(),
                name_of(OPERATIONS, b.operation),
                permission(b.permission).into(),
                name_of(RESOURCE_TYPES, b.resource_type),
                b.name.clone(),
                pattern(b.pattern).into(),
            ]
        })
        .collect();
    table(&["PRINCIPAL", "HOST", "OPERATION", "PERMISSION", "RESOURCE", "NAME", "PATTERN"], rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_as_kafka_acls_names_them() {
        assert_eq!(operation("WRITE").unwrap(), 4);
        assert_eq!(operation("describe_configs").unwrap(), 10);
        assert_eq!(operation("idempotent-write").unwrap(), 12);
        assert!(operation("fly").unwrap_err().to_string().contains("read, write"));
    }
}
