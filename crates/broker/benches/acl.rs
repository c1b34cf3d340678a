//! The cost of one authorization decision as the ACL bindings grow: every
//! Kafka request checks at least one (a Produce or Fetch one per topic), so
//! it must not grow with the bindings of other resources.
//! `cargo bench -p runnel-broker --bench acl`

use std::collections::BTreeSet;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use runnel_broker::acl::{AuthorizerConfig, Resource, authorize, op};
use runnel_controller::records::AclRecord;

/// `n` literal topic bindings (`topic-<i>`, READ and WRITE for one of 100
/// users each), plus 100 prefixed ones and a wildcard DESCRIBE.
fn bindings(n: usize) -> BTreeSet<AclRecord> {
    let binding = |name: String, pattern_type: i8, principal: String, operation: i8| AclRecord {
        resource_type: Resource::Topic as i8,
        resource_name: name,
        pattern_type,
        principal,
        host: "*".into(),
        operation,
        permission: 3,
    };
    let mut acls = BTreeSet::new();
    for i in 0..n {
        acls.insert(binding(format!("topic-{i}"), 3, format!("User:user-{}", i % 100), op::READ));
        acls.insert(binding(format!("topic-{i}"), 3, format!("User:user-{}", i % 100), op::WRITE));
    }
    for i in 0..100 {
        acls.insert(binding(format!("team-{i}-"), 4, format!("User:user-{i}"), op::ALL));
    }
    acls.insert(binding("*".into(), 3, "User:*".into(), op::DESCRIBE));
    acls
}

fn decide(c: &mut Criterion) {
    let config = AuthorizerConfig::default();
    let mut group = c.benchmark_group("authorize");
    for n in [100, 10_000] {
        let acls = bindings(n);
        group.bench_with_input(BenchmarkId::new("literal topic", n), &acls, |b, acls| {
            b.iter(|| assert!(authorize(acls, &config, "User:user-42", "10.0.0.1", Resource::Topic, "topic-42", op::WRITE)))
        });
        group.bench_with_input(BenchmarkId::new("prefixed topic", n), &acls, |b, acls| {
            b.iter(|| assert!(authorize(acls, &config, "User:user-7", "10.0.0.1", Resource::Topic, "team-7-orders", op::READ)))
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
