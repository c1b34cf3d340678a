//! A second (external) Kafka listener: clients that come in on it are told
//! the brokers' external endpoints, clients of the main listener the main ones.

use std::net::TcpStream;

use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, MetadataRequest, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use runnel_tests::wire::call;
use runnel_tests::{Node, free_port, temp_dir};

fn endpoints(conn: &mut TcpStream) -> (Vec<(String, i32)>, (String, i32)) {
    let ResponseKind::Metadata(m) = call(conn, ApiKey::Metadata, 9, &RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![])))) else {
        panic!()
    };
    let brokers = m.brokers.iter().map(|b| (b.host.to_string(), b.port)).collect();
    let find = FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_static_str("some-group")]);
    let ResponseKind::FindCoordinator(f) = call(conn, ApiKey::FindCoordinator, 4, &RequestKind::FindCoordinator(find)) else { panic!() };
    (brokers, (f.coordinators[0].host.to_string(), f.coordinators[0].port))
}

#[test]
fn each_listener_advertises_its_own_endpoints() {
    let dir = temp_dir();
    let external_port = free_port();
    let external = format!("127.0.0.1:{external_port}");
    let advertised = format!("localhost:{external_port}");
    let node = Node::start(&dir.path().join("node"), &["--external-listener", &external, "--advertised-external", &advertised]);

    let mut main = node.connect();
    let (brokers, coordinator) = endpoints(&mut main);
    assert_eq!(brokers, vec![("127.0.0.1".to_string(), i32::from(node.port))]);
    assert_eq!(coordinator, ("127.0.0.1".to_string(), i32::from(node.port)));

    let mut outside = TcpStream::connect(&external).expect("connect to the external listener");
    let (brokers, coordinator) = endpoints(&mut outside);
    assert_eq!(brokers, vec![("localhost".to_string(), i32::from(external_port))]);
    assert_eq!(coordinator, ("localhost".to_string(), i32::from(external_port)));
}
