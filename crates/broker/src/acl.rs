//! Authorization with Kafka's ACL model: principals, resources (topic,
//! group, cluster, transactional id) named literally or by prefix, allow
//! and deny bindings per operation, `super.users`, and
//! `allow.everyone.if.no.acl.found`.
//!
//! The bindings live in the cluster metadata (`MetadataImage::acls`, feature
//! level 5); a request is checked against the metadata this node had applied
//! when the request arrived. The rule itself ([`authorize`]) is pure.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use runnel_controller::metadata::AclRecord;
use runnel_controller::store::AppliedState;

/// Kafka's ACL operation codes.
pub mod op {
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
}

/// An operation's name as Kafka's tools write it (`DESCRIBE_CONFIGS`).
pub fn operation_name(code: i8) -> &'static str {
    const NAMES: [&str; 13] = [
        "UNKNOWN",
        "ANY",
        "ALL",
        "READ",
        "WRITE",
        "CREATE",
        "DELETE",
        "ALTER",
        "DESCRIBE",
        "CLUSTER_ACTION",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// Kafka's resource type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
}

/// The one cluster resource's name.
pub const CLUSTER: &str = "kafka-cluster";

const PATTERN_LITERAL: i8 = 3;
const PATTERN_PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

/// The operations Kafka reports for each resource type under KIP-430, in
/// the order of their bits.
const OPERATIONS: &[(Resource, &[i8])] = &[
    (Resource::Topic, &[op::READ, op::WRITE, op::CREATE, op::DELETE, op::ALTER, op::DESCRIBE, op::DESCRIBE_CONFIGS, op::ALTER_CONFIGS]),
    (Resource::Group, &[op::READ, op::DELETE, op::DESCRIBE]),
    (Resource::Cluster, &[op::CREATE, op::ALTER, op::DESCRIBE, op::CLUSTER_ACTION, op::DESCRIBE_CONFIGS, op::ALTER_CONFIGS, op::IDEMPOTENT_WRITE]),
    (Resource::TransactionalId, &[op::WRITE, op::DESCRIBE]),
];

/// The authorizer's settings; no authorizer means every request is allowed.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerConfig {
    /// Principals allowed everything (`User:admin`).
    pub super_users: HashSet<String>,
    /// What a resource without any binding allows: Kafka's
    /// `allow.everyone.if.no.acl.found`, false by default.
    pub allow_if_no_acl: bool,
}

/// Whether `principal` at `host` may perform `operation` on a resource,
/// as Kafka's standard authorizer decides: a super user may do anything;
/// a resource no binding matches is governed by `allow_if_no_acl`; a
/// matching deny wins over any allow; READ, WRITE, DELETE and ALTER each
/// imply DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS.
pub fn authorize(acls: &BTreeSet<AclRecord>, config: &AuthorizerConfig, principal: &str, host: &str, resource: Resource, name: &str, operation: i8) -> bool {
    if config.super_users.contains(principal) {
        return true;
    }
    let mut any = false;
    let mut allowed = false;
    for acl in naming(acls, resource, name) {
        any = true;
        if !(acl.principal == principal || acl.principal == "User:*") || !(acl.host == "*" || acl.host == host) {
            continue;
        }
        if acl.permission == DENY && (acl.operation == operation || acl.operation == op::ALL) {
            return false;
        }
        if acl.permission == ALLOW && (acl.operation == op::ALL || implies(acl.operation, operation)) {
            allowed = true;
        }
    }
    if !any { config.allow_if_no_acl } else { allowed }
}

/// The bindings that name resource `name` of type `resource`: its literal
/// name, the literal `*`, and prefixes of the name. The set is ordered by
/// type, then name, so instead of a walk over every binding these are range
/// lookups: `*`, the empty name, and the names from the first character of
/// `name` up to `name` itself (every non-empty prefix of a name sorts
/// between the two), skipping ahead past names that are not prefixes: after
/// one that shares `k` characters with `name`, the next prefix can only be
/// the one of `k + 1` characters. So a decision costs a lookup per prefix
/// of the name that has bindings, whatever else is bound.
fn naming<'a>(acls: &'a BTreeSet<AclRecord>, resource: Resource, name: &str) -> Vec<&'a AclRecord> {
    use std::ops::Bound::{Excluded, Included};
    let bound = |resource_name: &str| AclRecord {
        resource_type: resource as i8,
        resource_name: resource_name.to_string(),
        pattern_type: i8::MIN,
        principal: String::new(),
        host: String::new(),
        operation: i8::MIN,
        permission: i8::MIN,
    };
    // The least name above `n` and every name it begins: `n` and a NUL.
    let after = |n: &str| bound(&format!("{n}\0"));
    let mut found: Vec<&AclRecord> = Vec::new();
    if !name.starts_with('*') {
        found.extend(acls.range((Included(bound("*")), Excluded(after("*")))));
    }
    // CreateAcls refuses an empty name; the rule holds without that too.
    if !name.is_empty() {
        found.extend(acls.range((Included(bound("")), Excluded(after("")))));
    }
    let mut from = name.chars().next().map_or(0, char::len_utf8);
    'seek: loop {
        for acl in acls.range((Included(bound(&name[..from])), Excluded(after(name)))) {
            if name.starts_with(acl.resource_name.as_str()) {
                found.push(acl);
                continue;
            }
            match longer_prefix(&acl.resource_name, name) {
                Some(end) => {
                    from = end;
                    continue 'seek;
                }
                None => break 'seek,
            }
        }
        break;
    }
    found.retain(|a| names(a, name));
    found
}

/// The end of the shortest prefix of `name` longer than what `seen` has in
/// common with it.
fn longer_prefix(seen: &str, name: &str) -> Option<usize> {
    let common = seen.chars().zip(name.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum::<usize>();
    name[common..].chars().next().map(|c| common + c.len_utf8())
}

fn names(acl: &AclRecord, name: &str) -> bool {
    match acl.pattern_type {
        PATTERN_LITERAL => acl.resource_name == name || acl.resource_name == "*",
        PATTERN_PREFIXED => name.starts_with(&acl.resource_name),
        _ => false,
    }
}

fn implies(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || (wanted == op::DESCRIBE && matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

/// A DescribeAcls or DeleteAcls filter, with Kafka's codes: 1 (ANY) for a
/// type, operation or permission matches every value, `None` for a name,
/// principal or host matches every one; pattern type 2 (MATCH) matches the
/// bindings that would apply to the named resource (the literal name, `*`,
/// and the prefixes of the name).
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

const ANY: i8 = 1;
const PATTERN_MATCH: i8 = 2;

/// The [`AclFilter`] of a DescribeAcls request or of one DeleteAcls filter:
/// both carry the same seven fields under the same names.
macro_rules! acl_filter_of {
    ($wire:expr) => {
        $crate::acl::AclFilter {
            resource_type: $wire.resource_type_filter,
            resource_name: $wire.resource_name_filter.map(|n| n.to_string()),
            pattern_type: $wire.pattern_type_filter,
            principal: $wire.principal_filter.map(|p| p.to_string()),
            host: $wire.host_filter.map(|h| h.to_string()),
            operation: $wire.operation,
            permission: $wire.permission_type,
        }
    };
}
pub(crate) use acl_filter_of;

impl AclFilter {
    /// Why Kafka would refuse this filter, if it would.
    pub fn invalid(&self) -> Option<String> {
        let unknown =
            [("resource type", self.resource_type), ("pattern type", self.pattern_type), ("operation", self.operation), ("permission type", self.permission)];
        if let Some((what, _)) = unknown.iter().find(|(_, v)| *v <= 0) {
            return Some(format!("the filter's {what} is unknown (0); use 1 for any"));
        }
        if self.pattern_type == PATTERN_MATCH && self.resource_name.is_none() {
            return Some("pattern type MATCH needs a resource name".into());
        }
        None
    }

    pub fn matches(&self, acl: &AclRecord) -> bool {
        let code = |filter: i8, value: i8| filter == ANY || filter == value;
        let text = |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        let pattern = match (&self.resource_name, self.pattern_type) {
            (None, ANY | PATTERN_MATCH) => true,
            (None, p) => p == acl.pattern_type,
            (Some(name), ANY) => *name == acl.resource_name,
            (Some(name), PATTERN_MATCH) => names(acl, name),
            (Some(name), p) => p == acl.pattern_type && *name == acl.resource_name,
        };
        code(self.resource_type, acl.resource_type)
            && pattern
            && text(&self.principal, &acl.principal)
            && text(&self.host, &acl.host)
            && code(self.operation, acl.operation)
            && code(self.permission, acl.permission)
    }
}

/// What one request may do: its principal and address, and the bindings as
/// this node knew them when the request arrived (none to check when no
/// authorizer is configured).
#[derive(Clone)]
pub struct Access {
    principal: Arc<str>,
    host: String,
    rules: Option<(Arc<AuthorizerConfig>, Arc<AppliedState>)>,
    denied: Option<prometheus_client::metrics::counter::Counter>,
}

impl Access {
    pub fn new(principal: Arc<str>, peer: IpAddr, authorizer: Option<&Arc<AuthorizerConfig>>, state: impl FnOnce() -> Arc<AppliedState>) -> Access {
        // Without an authorizer nothing is checked: no address to format, no state to hold.
        let rules = authorizer.map(|a| (a.clone(), state()));
        let host = if rules.is_some() { peer.to_string() } else { String::new() };
        Access { principal, host, rules, denied: None }
    }

    /// Counts each refusal in `denied` (and logs it, at most once a second).
    pub fn counting(self, denied: &prometheus_client::metrics::counter::Counter) -> Access {
        Access { denied: Some(denied.clone()), ..self }
    }

    /// Allowed everything (no authorizer); for tests and internal callers.
    pub fn everything() -> Access {
        Access { principal: Arc::from(ANONYMOUS), host: String::new(), rules: None, denied: None }
    }

    /// Whether an authorizer decides (false: everything is allowed).
    pub fn enforcing(&self) -> bool {
        self.rules.is_some()
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Whether this request may perform `operation` on the resource; a
    /// refusal is counted and logged (at most one line a second).
    pub fn allowed(&self, resource: Resource, name: &str, operation: i8) -> bool {
        let allowed = self.decide(resource, name, operation);
        if !allowed {
            self.refused(resource, name, operation);
        }
        allowed
    }

    /// Counts and logs (at most one line a second) a refusal decided
    /// without [`Access::allowed`].
    pub fn refused(&self, resource: Resource, name: &str, operation: i8) {
        if let Some(denied) = &self.denied {
            denied.inc();
        }
        static LAST_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if once_a_second(&LAST_LOGGED) {
            tracing::info!(principal = %self.principal, host = %self.host, ?resource, name, operation, "authorization denied (further denials this second are counted, not logged)");
        }
    }

    /// Whether the bindings allow it, without counting a refusal (for
    /// listing what a principal may see or do).
    pub fn decide(&self, resource: Resource, name: &str, operation: i8) -> bool {
        match &self.rules {
            None => true,
            Some((config, state)) => authorize(&state.image.acls, config, &self.principal, &self.host, resource, name, operation),
        }
    }

    pub fn cluster(&self, operation: i8) -> bool {
        self.allowed(Resource::Cluster, CLUSTER, operation)
    }

    /// Whether some binding lets this principal write to some topic (an
    /// idempotent producer's InitProducerId, KIP-679).
    pub fn may_write_some_topic(&self) -> bool {
        let Some((config, state)) = &self.rules else { return true };
        config.super_users.contains(&*self.principal)
            || state.image.acls.iter().any(|a| {
                a.resource_type == Resource::Topic as i8
                    && a.permission == ALLOW
                    && matches!(a.operation, op::WRITE | op::ALL)
                    && (a.principal == *self.principal || a.principal == "User:*")
                    && (a.host == "*" || a.host == self.host)
            })
    }

    /// KIP-430: the operations allowed on a resource as a bit field (bit
    /// `1 << code`), as Metadata, DescribeCluster and DescribeGroups report
    /// them when asked.
    pub fn authorized_operations(&self, resource: Resource, name: &str) -> i32 {
        let ops = OPERATIONS.iter().find(|(r, _)| *r == resource).map_or(&[][..], |(_, ops)| *ops);
        ops.iter().filter(|o| self.decide(resource, name, **o)).fold(0, |bits, o| bits | (1 << *o))
    }
}

/// Whether a log line rate-limited by `last` (the second of its last
/// line) may be written now: at most one a second.
pub fn once_a_second(last: &std::sync::atomic::AtomicU64) -> bool {
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    last.swap(second, std::sync::atomic::Ordering::Relaxed) != second
}

/// The principal of a connection that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(resource: Resource, name: &str, pattern: i8, principal: &str, operation: i8, permission: i8) -> AclRecord {
        AclRecord {
            resource_type: resource as i8,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission,
        }
    }

    fn check(acls: &[AclRecord], principal: &str, resource: Resource, name: &str, operation: i8) -> bool {
        let acls: BTreeSet<AclRecord> = acls.iter().cloned().collect();
        authorize(&acls, &AuthorizerConfig::default(), principal, "10.0.0.1", resource, name, operation)
    }

    /// Kafka's rule as a walk over every binding: what `authorize` must
    /// decide with its range lookups.
    fn authorize_by_walking(acls: &BTreeSet<AclRecord>, principal: &str, host: &str, resource: Resource, name: &str, operation: i8) -> bool {
        let naming: Vec<&AclRecord> = acls.iter().filter(|a| a.resource_type == resource as i8 && names(a, name)).collect();
        let applies = |a: &&&AclRecord| (a.principal == principal || a.principal == "User:*") && (a.host == "*" || a.host == host);
        let denied = naming.iter().filter(applies).any(|a| a.permission == DENY && (a.operation == operation || a.operation == op::ALL));
        let allowed = naming.iter().filter(applies).any(|a| a.permission == ALLOW && (a.operation == op::ALL || implies(a.operation, operation)));
        !naming.is_empty() && !denied && allowed
    }

    /// Random bindings over names that share prefixes (with `*`, names
    /// starting with `*`, and non-ASCII ones): the range lookup decides
    /// every question as the walk over all bindings does. RUNNEL_ACL_SEED
    /// replays a run.
    #[test]
    fn the_range_lookup_decides_as_a_walk_over_every_binding() {
        use rand::{RngExt, SeedableRng};
        let seed: u64 = std::env::var("RUNNEL_ACL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
        println!("RUNNEL_ACL_SEED={seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let parts = ["a", "ab", "b", "*", "é", "-", "orders", "x"];
        let principals = ["User:alice", "User:bob", "User:*"];
        let hosts = ["*", "10.0.0.1", "10.0.0.2"];
        let resources = [Resource::Topic, Resource::Group, Resource::TransactionalId];
        let operations = [op::ALL, op::READ, op::WRITE, op::DESCRIBE, op::ALTER, op::ALTER_CONFIGS, op::DESCRIBE_CONFIGS];
        let random_name = |rng: &mut rand::rngs::StdRng| (0..rng.random_range(1..4)).map(|_| parts[rng.random_range(0..parts.len())]).collect::<String>();
        for _ in 0..200 {
            let mut acls = BTreeSet::new();
            for _ in 0..rng.random_range(0..40) {
                let resource = resources[rng.random_range(0..resources.len())];
                let name = match rng.random_range(0..12) {
                    0 | 1 => "*".to_string(),
                    2 => String::new(),
                    _ => random_name(&mut rng),
                };
                acls.insert(AclRecord {
                    resource_type: resource as i8,
                    resource_name: name,
                    pattern_type: if rng.random_range(0..2) == 0 { PATTERN_LITERAL } else { PATTERN_PREFIXED },
                    principal: principals[rng.random_range(0..principals.len())].into(),
                    host: hosts[rng.random_range(0..hosts.len())].into(),
                    operation: operations[rng.random_range(0..operations.len())],
                    permission: if rng.random_range(0..4) == 0 { DENY } else { ALLOW },
                });
            }
            for _ in 0..50 {
                let resource = resources[rng.random_range(0..resources.len())];
                let name = random_name(&mut rng);
                let principal = principals[rng.random_range(0..2)];
                let host = hosts[rng.random_range(1..hosts.len())];
                let operation = operations[rng.random_range(1..operations.len())];
                assert_eq!(
                    authorize(&acls, &AuthorizerConfig::default(), principal, host, resource, &name, operation),
                    authorize_by_walking(&acls, principal, host, resource, &name, operation),
                    "{principal}@{host} {operation} on {resource:?} {name:?} with {acls:?} (RUNNEL_ACL_SEED={seed})"
                );
            }
        }
    }

    #[test]
    fn nothing_is_allowed_without_a_binding_by_default() {
        assert!(!check(&[], "User:alice", Resource::Topic, "a", op::READ));
        let open = AuthorizerConfig { allow_if_no_acl: true, ..Default::default() };
        assert!(authorize(&BTreeSet::new(), &open, "User:alice", "h", Resource::Topic, "a", op::READ));
    }

    #[test]
    fn allow_if_no_acl_applies_only_to_resources_without_any_binding() {
        let acls: BTreeSet<AclRecord> = [acl(Resource::Topic, "a", PATTERN_LITERAL, "User:bob", op::READ, ALLOW)].into();
        let open = AuthorizerConfig { allow_if_no_acl: true, ..Default::default() };
        assert!(!authorize(&acls, &open, "User:alice", "h", Resource::Topic, "a", op::READ), "a has a binding, for bob only");
        assert!(authorize(&acls, &open, "User:alice", "h", Resource::Topic, "b", op::READ));
    }

    #[test]
    fn a_literal_binding_names_one_resource_of_one_type() {
        let acls = [acl(Resource::Topic, "a", PATTERN_LITERAL, "User:alice", op::WRITE, ALLOW)];
        assert!(check(&acls, "User:alice", Resource::Topic, "a", op::WRITE));
        assert!(!check(&acls, "User:alice", Resource::Topic, "ab", op::WRITE));
        assert!(!check(&acls, "User:alice", Resource::Group, "a", op::WRITE));
        assert!(!check(&acls, "User:alice", Resource::Topic, "a", op::READ), "write does not imply read");
        assert!(!check(&acls, "User:bob", Resource::Topic, "a", op::WRITE));
    }

    #[test]
    fn a_prefixed_binding_names_every_resource_starting_with_it() {
        let acls = [acl(Resource::Topic, "orders-", PATTERN_PREFIXED, "User:alice", op::READ, ALLOW)];
        assert!(check(&acls, "User:alice", Resource::Topic, "orders-eu", op::READ));
        assert!(check(&acls, "User:alice", Resource::Topic, "orders-", op::READ));
        assert!(!check(&acls, "User:alice", Resource::Topic, "orders", op::READ));
    }

    #[test]
    fn wildcards_match_every_name_and_every_principal() {
        let acls = [acl(Resource::Topic, "*", PATTERN_LITERAL, "User:*", op::DESCRIBE, ALLOW)];
        assert!(check(&acls, "User:anyone", Resource::Topic, "whatever", op::DESCRIBE));
        assert!(!check(&acls, "User:anyone", Resource::Topic, "whatever", op::READ));
    }

    #[test]
    fn a_deny_wins_over_an_allow() {
        let acls = [
            acl(Resource::Topic, "", PATTERN_PREFIXED, "User:alice", op::ALL, ALLOW),
            acl(Resource::Topic, "secret", PATTERN_LITERAL, "User:alice", op::READ, DENY),
        ];
        assert!(check(&acls, "User:alice", Resource::Topic, "public", op::READ));
        assert!(!check(&acls, "User:alice", Resource::Topic, "secret", op::READ));
        assert!(check(&acls, "User:alice", Resource::Topic, "secret", op::WRITE), "the deny is for read only");
        let deny_all =
            [acl(Resource::Topic, "a", PATTERN_LITERAL, "User:*", op::ALL, DENY), acl(Resource::Topic, "a", PATTERN_LITERAL, "User:alice", op::READ, ALLOW)];
        assert!(!check(&deny_all, "User:alice", Resource::Topic, "a", op::READ));
    }

    #[test]
    fn read_write_delete_and_alter_imply_describe() {
        for granted in [op::READ, op::WRITE, op::DELETE, op::ALTER] {
            let acls = [acl(Resource::Topic, "a", PATTERN_LITERAL, "User:alice", granted, ALLOW)];
            assert!(check(&acls, "User:alice", Resource::Topic, "a", op::DESCRIBE), "{granted} implies describe");
        }
        let acls = [acl(Resource::Topic, "a", PATTERN_LITERAL, "User:alice", op::ALTER_CONFIGS, ALLOW)];
        assert!(check(&acls, "User:alice", Resource::Topic, "a", op::DESCRIBE_CONFIGS));
        assert!(!check(&acls, "User:alice", Resource::Topic, "a", op::DESCRIBE));
        let denied = [
            acl(Resource::Topic, "a", PATTERN_LITERAL, "User:alice", op::READ, ALLOW),
            acl(Resource::Topic, "a", PATTERN_LITERAL, "User:alice", op::DESCRIBE, DENY),
        ];
        assert!(!check(&denied, "User:alice", Resource::Topic, "a", op::DESCRIBE), "a denied describe is not implied back");
    }

    #[test]
    fn a_binding_for_one_host_does_not_apply_to_another() {
        let mut binding = acl(Resource::Topic, "a", PATTERN_LITERAL, "User:alice", op::READ, ALLOW);
        binding.host = "10.0.0.2".into();
        assert!(!check(&[binding.clone()], "User:alice", Resource::Topic, "a", op::READ));
        binding.host = "10.0.0.1".into();
        assert!(check(&[binding], "User:alice", Resource::Topic, "a", op::READ));
    }

    #[test]
    fn super_users_may_do_anything() {
        let config = AuthorizerConfig { super_users: ["User:admin".to_string()].into(), allow_if_no_acl: false };
        let acls: BTreeSet<AclRecord> = [acl(Resource::Topic, "a", PATTERN_LITERAL, "User:*", op::ALL, DENY)].into();
        assert!(authorize(&acls, &config, "User:admin", "h", Resource::Topic, "a", op::DELETE));
        assert!(authorize(&acls, &config, "User:admin", "h", Resource::Cluster, CLUSTER, op::ALTER));
    }

    #[test]
    fn filters_match_as_kafka_s_binding_filters_do() {
        let literal = acl(Resource::Topic, "orders", PATTERN_LITERAL, "User:alice", op::READ, ALLOW);
        let prefixed = acl(Resource::Topic, "ord", PATTERN_PREFIXED, "User:bob", op::WRITE, DENY);
        let wildcard = acl(Resource::Topic, "*", PATTERN_LITERAL, "User:carol", op::DESCRIBE, ALLOW);
        let any = AclFilter { resource_type: ANY, resource_name: None, pattern_type: ANY, principal: None, host: None, operation: ANY, permission: ANY };
        assert!([&literal, &prefixed, &wildcard].iter().all(|a| any.matches(a)));
        let named = AclFilter { resource_name: Some("orders".into()), ..any.clone() };
        assert!(named.matches(&literal) && !named.matches(&prefixed) && !named.matches(&wildcard), "ANY with a name matches that exact name");
        let matching = AclFilter { pattern_type: PATTERN_MATCH, ..named.clone() };
        assert!(matching.matches(&literal) && matching.matches(&prefixed) && matching.matches(&wildcard), "MATCH finds every binding that applies");
        let only_prefixed = AclFilter { pattern_type: PATTERN_PREFIXED, resource_name: None, ..any.clone() };
        assert!(!only_prefixed.matches(&literal) && only_prefixed.matches(&prefixed));
        let denies = AclFilter { permission: DENY, ..any.clone() };
        assert!(denies.matches(&prefixed) && !denies.matches(&literal));
        let alice = AclFilter { principal: Some("User:alice".into()), operation: op::READ, ..any.clone() };
        assert!(alice.matches(&literal) && !alice.matches(&wildcard));
        assert!(AclFilter { operation: 0, ..any.clone() }.invalid().is_some());
        assert!(AclFilter { pattern_type: PATTERN_MATCH, ..any }.invalid().is_some());
    }

    #[test]
    fn authorized_operations_are_a_bit_per_allowed_operation() {
        let acls: BTreeSet<AclRecord> = [acl(Resource::Topic, "a", PATTERN_LITERAL, "User:alice", op::READ, ALLOW)].into();
        let mut state = AppliedState::default();
        state.image.acls = acls.into();
        let access = Access::new(Arc::from("User:alice"), "10.0.0.1".parse().unwrap(), Some(&Arc::new(AuthorizerConfig::default())), || Arc::new(state));
        assert_eq!(access.authorized_operations(Resource::Topic, "a"), (1 << op::READ) | (1 << op::DESCRIBE));
        assert_eq!(access.authorized_operations(Resource::Topic, "b"), 0);
        assert_eq!(Access::everything().authorized_operations(Resource::Group, "g"), (1 << op::READ) | (1 << op::DELETE) | (1 << op::DESCRIBE));
    }
}
