//! Mutual TLS on the gRPC port (issue 18): three nodes whose certificates
//! the cluster's CA signed form a quorum and replicate over TLS; runnelctl
//! reaches them only with such a certificate, and a node or client without
//! one (no TLS, or a certificate another CA signed) gets nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use runnel_tests::{Cluster, Node, runnelctl_bin, temp_dir, wait_for};

/// A CA, and certificates it signed for 127.0.0.1 and localhost.
struct Pki {
    ca: rcgen::CertifiedKey,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki { ca: rcgen::CertifiedKey { cert, key_pair: key } }
    }

    /// Writes `<name>.pem`, `<name>.key` and `<name>-ca.pem` into `dir`; the paths.
    fn issue(&self, dir: &Path, name: &str) -> [PathBuf; 3] {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca.cert, &self.ca.key_pair).unwrap();
        let paths = [dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")), dir.join(format!("{name}-ca.pem"))];
        std::fs::write(&paths[0], cert.pem()).unwrap();
        std::fs::write(&paths[1], key.serialize_pem()).unwrap();
        std::fs::write(&paths[2], self.ca.cert.pem()).unwrap();
        paths
    }
}

fn node_args(files: &[PathBuf; 3]) -> Vec<String> {
    let [cert, key, ca] = files;
    ["--rpc-tls-certificate-file", cert.to_str().unwrap(), "--rpc-tls-key-file", key.to_str().unwrap(), "--rpc-tls-ca-file", ca.to_str().unwrap()]
        .map(String::from)
        .to_vec()
}

/// runnelctl with the given TLS files (none: plaintext); (exit ok, stdout, stderr).
fn runnelctl_tls(rpc: &str, files: Option<&[PathBuf; 3]>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(runnelctl_bin());
    command.args(["-b", rpc, "-o", "json", "--timeout-secs", "5"]);
    if let Some([cert, key, ca]) = files {
        command.arg("--rpc-tls-ca-file").arg(ca).arg("--rpc-tls-certificate-file").arg(cert).arg("--rpc-tls-key-file").arg(key);
    }
    let out = command.args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn only_holders_of_a_certificate_the_cluster_ca_signed_reach_the_grpc_ports() {
    let dir = temp_dir();
    let cluster_ca = Pki::new("cluster CA");
    let node_files = cluster_ca.issue(dir.path(), "node");
    let operator = cluster_ca.issue(dir.path(), "operator");
    let rogue = Pki::new("rogue CA").issue(dir.path(), "rogue");
    let args = node_args(&node_files);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with(&["controller,broker"; 3], 6000, &args);
    let rpc = cluster.nodes[0].rpc.clone();

    // The nodes formed their quorum and registered over TLS.
    let (ok, out, err) = runnelctl_tls(&rpc, Some(&operator), &["cluster", "status"]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(status["leader_id"].as_u64().is_some(), "{status}");
    let (ok, _, err) = runnelctl_tls(&rpc, Some(&operator), &["topic", "create", "t", "-p", "1", "-r", "3", "--config", "min.insync.replicas=3"]);
    assert!(ok, "{err}");
    // acks=all with min.insync 3: every follower fetched over TLS.
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).set("acks", "all").create().unwrap();
    wait_for("an acks=all write on three replicas", Duration::from_secs(30), || {
        producer.send(BaseRecord::to("t").key("k").payload("over tls")).ok()?;
        producer.flush(Duration::from_secs(5)).ok()
    });

    // Without TLS, or with a certificate another CA signed: nothing.
    let (ok, _, err) = runnelctl_tls(&rpc, None, &["cluster", "status"]);
    assert!(!ok, "a plaintext client got in: {err}");
    let (ok, _, err) = runnelctl_tls(&rpc, Some(&rogue), &["cluster", "status"]);
    assert!(!ok, "a client whose certificate another CA signed got in: {err}");
    // Both refusals are counted where an operator looks.
    let failures = |metrics: &str| -> Option<u64> {
        metrics.lines().find_map(|l| l.strip_prefix("runnel_rpc_tls_handshake_failures_total ")).and_then(|v| v.trim().parse().ok())
    };
    wait_for("the refused handshakes counted in /metrics", Duration::from_secs(10), || failures(&cluster.nodes[0].http_get("/metrics").1).filter(|n| *n >= 2));

    // A node with the rogue certificate cannot join: it never registers.
    let quorum: Vec<String> = cluster.nodes.iter().enumerate().map(|(i, n)| format!("{}@{}", i + 1, n.rpc)).collect();
    let intruder_args =
        [vec!["--node-id".to_string(), "4".into(), "--roles".into(), "broker".into(), "--controller-quorum".into(), quorum.join(",")], node_args(&rogue)]
            .concat();
    let intruder = Node::serve_unready(&dir.path().join("intruder"), &intruder_args);
    std::thread::sleep(Duration::from_secs(3));
    let (ok, out, err) = runnelctl_tls(&rpc, Some(&operator), &["broker", "list"]);
    assert!(ok, "{err}");
    let brokers: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<u64> = brokers.as_array().unwrap().iter().filter_map(|b| b["node_id"].as_u64()).collect();
    assert_eq!(ids, [1, 2, 3], "the intruder registered: {out}");
    drop(intruder);
}

/// With an authorizer, the admin API applies the ACLs to the principal of
/// the client certificate: a super user's certificate administers, another
/// certificate the CA signed is refused what no binding allows it.
#[test]
fn the_admin_api_applies_the_acls_to_the_client_certificate() {
    let dir = temp_dir();
    let ca = Pki::new("cluster CA");
    let node_files = ca.issue(dir.path(), "node");
    let admin = ca.issue(dir.path(), "admin");
    let operator = ca.issue(dir.path(), "operator");
    let mut args = node_args(&node_files);
    args.extend(["--authorizer", "acl", "--super-users", "User:CN=admin;User:CN=node"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Node::start(&dir.path().join("node"), &args);

    let (ok, _, err) = runnelctl_tls(&node.rpc, Some(&admin), &["topic", "create", "t"]);
    assert!(ok, "a super user administers: {err}");
    let (ok, _, err) = runnelctl_tls(&node.rpc, Some(&operator), &["topic", "describe", "t"]);
    assert!(!ok && err.contains("User:CN=operator may not do this: it needs DESCRIBE on Topic \"t\""), "{err}");
    let (ok, _, err) = runnelctl_tls(&node.rpc, Some(&operator), &["topic", "create", "u"]);
    assert!(!ok && err.contains("needs CREATE"), "{err}");
    let (ok, out, err) = runnelctl_tls(&node.rpc, Some(&admin), &["topic", "list"]);
    assert!(ok && !out.contains("\"u\""), "nothing was created for the operator: {out} {err}");
}

/// Copies the files `issue` wrote into the paths the nodes were started
/// with: a certificate renewal as an operator does it, in place.
fn renew(from: &[PathBuf; 3], to: &[PathBuf; 3]) {
    for (from, to) in from.iter().zip(to) {
        let staged = to.with_extension("new");
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
}

/// Renewed certificates are used without a restart: after the cluster's
/// certificate files are replaced by ones a new CA signed, the gRPC ports
/// serve the new certificate and accept only clients the new CA signed, and
/// a node restarted with the new files rejoins: its peers dial it (and it
/// them) with the renewed certificates, so its replicas come back in sync.
#[test]
fn renewed_certificates_take_effect_without_a_restart() {
    let dir = temp_dir();
    let old_ca = Pki::new("old CA");
    let node_files = old_ca.issue(dir.path(), "node");
    let old_operator = old_ca.issue(dir.path(), "operator");
    let args = node_args(&node_files);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start_with(&["controller,broker"; 3], 6000, &args);
    let rpc = cluster.nodes[0].rpc.clone();
    let (ok, _, err) = runnelctl_tls(&rpc, Some(&old_operator), &["cluster", "status"]);
    assert!(ok, "{err}");

    let renewed = dir.path().join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    let new_ca = Pki::new("new CA");
    renew(&new_ca.issue(&renewed, "node"), &node_files);
    let new_operator = new_ca.issue(&renewed, "operator");

    // Every node's gRPC port now serves the renewed certificate and trusts
    // only the new CA.
    for node in &cluster.nodes {
        let (ok, _, err) = runnelctl_tls(&node.rpc, Some(&new_operator), &["cluster", "status"]);
        assert!(ok, "a certificate the new CA signed is refused by {}: {err}", node.rpc);
        let (ok, _, _) = runnelctl_tls(&node.rpc, Some(&old_operator), &["cluster", "status"]);
        assert!(!ok, "{} still accepts the old CA's certificate", node.rpc);
    }

    // A node restarted with the renewed files: its peers' existing
    // connections to it are gone, so they dial it again with what the
    // files hold now.
    cluster.nodes[1].restart();
    let (ok, _, err) = runnelctl_tls(&rpc, Some(&new_operator), &["topic", "create", "after", "-p", "3", "-r", "3", "--config", "min.insync.replicas=3"]);
    assert!(ok, "{err}");
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).set("acks", "all").create().unwrap();
    for partition in 0..3 {
        wait_for(&format!("an acks=all write on three replicas of partition {partition}"), Duration::from_secs(60), || {
            producer.send(BaseRecord::to("after").partition(partition).key("k").payload("renewed")).ok()?;
            producer.flush(Duration::from_secs(5)).ok()
        });
    }
    let (ok, out, err) = runnelctl_tls(&rpc, Some(&new_operator), &["topic", "describe", "after"]);
    assert!(ok, "{err}");
    let described: serde_json::Value = serde_json::from_str(&out).unwrap();
    let partitions = described["partitions"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert!(partitions.iter().all(|p| p["isr"].as_array().is_some_and(|isr| isr.len() == 3)), "every replica in sync over the renewed certificates: {out}");
}
