//! Issue 13: stopping and starting one node of `runnel dev --nodes 3` to
//! try failover, through any node's HTTP port, while the others serve.

use std::process::{Command, Stdio};
use std::time::Duration;

use runnel_tests::{free_port, http_request, runnel_bin, runnelctl, temp_dir, wait_for};

/// A base port whose +100 and +200 (the ports `dev --nodes 3` gives nodes
/// 2 and 3) are free too.
fn base_port() -> u16 {
    loop {
        let p = free_port();
        if p < 65_000 && [p + 100, p + 200].iter().all(|q| std::net::TcpListener::bind(("127.0.0.1", *q)).is_ok()) {
            return p;
        }
    }
}

struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn live_brokers(rpc: &str) -> Option<usize> {
    let (ok, out, _) = runnelctl(rpc, &["--timeout-secs", "3", "broker", "list"]);
    let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    Some(v.as_array()?.iter().filter(|b| b["fenced"] == false).count())
}

#[test]
fn one_node_of_a_dev_cluster_stops_and_starts_again_while_the_others_serve() {
    let dir = temp_dir();
    let (kafka, rpc, http) = (base_port(), base_port(), base_port());
    let log = dir.path().join("dev.log");
    let _process = Process(
        Command::new(runnel_bin())
            .args(["dev", "--nodes", "3", "--session-timeout-ms", "2000", "--replica-lag-time-max-ms", "3000"])
            .arg("--kafka-listener")
            .arg(format!("127.0.0.1:{kafka}"))
            .arg("--rpc-listener")
            .arg(format!("127.0.0.1:{rpc}"))
            .arg("--http-listener")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run runnel dev --nodes 3"),
    );
    let node1 = (format!("127.0.0.1:{rpc}"), format!("127.0.0.1:{http}"));
    let node3_http = format!("127.0.0.1:{}", http + 200);
    wait_for("three live brokers", Duration::from_secs(60), || live_brokers(&node1.0).filter(|n| *n == 3));
    let (ok, _, err) = runnelctl(&node1.0, &["topic", "create", "t", "-p", "3", "-r", "3"]);
    assert!(ok, "{err}");
    let (ok, _, err) = runnelctl(&node1.0, &["produce", "t", "-K", ":", "k1:before", "k2:before", "k3:before"]);
    assert!(ok, "{err}");

    // Stop node 2 through node 1's HTTP port.
    let (code, body) = http_request(&node1.1, "POST", "/dev/nodes/2/stop", "");
    assert_eq!((code, body.trim()), (202, "node 2 is stopping"));
    wait_for("node 2 stopped", Duration::from_secs(30), || http_request(&node3_http, "GET", "/dev/nodes", "").1.contains("node 2 stopped").then_some(()));
    assert!(std::net::TcpStream::connect(("127.0.0.1", kafka + 100)).is_err(), "node 2's Kafka port is closed");
    wait_for("node 2 fenced", Duration::from_secs(30), || live_brokers(&node1.0).filter(|n| *n == 2));
    // The others take its leaderships; acks=all still works with two of three.
    let (ok, _, err) = runnelctl(&node1.0, &["produce", "t", "-K", ":", "k1:during", "k2:during", "k3:during"]);
    assert!(ok, "{err}");
    let (code, body) = http_request(&node1.1, "POST", "/dev/nodes/2/stop", "");
    assert_eq!((code, body.trim()), (409, "node 2 is stopped"));
    let (code, body) = http_request(&node1.1, "POST", "/dev/nodes/9/start", "");
    assert!(code == 409 && body.contains("no node 9"), "{code} {body}");

    // Start it again: it rejoins, catches up, and is back in every ISR.
    let (code, body) = http_request(&node3_http, "POST", "/dev/nodes/2/start", "");
    assert_eq!((code, body.trim()), (202, "node 2 is starting"));
    wait_for("three live brokers again", Duration::from_secs(60), || live_brokers(&node1.0).filter(|n| *n == 3));
    wait_for("full ISRs", Duration::from_secs(60), || {
        let (ok, out, _) = runnelctl(&node1.0, &["topic", "describe", "t"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
        v["partitions"].as_array()?.iter().all(|p| p["isr"].as_array().map(Vec::len) == Some(3)).then_some(())
    });
    // Node 2 serves the six records (it leads again after an election).
    let (ok, _, err) = runnelctl(&node1.0, &["partition", "elect-leader", "--topic", "t"]);
    assert!(ok, "{err}");
    let (ok, out, err) = runnelctl(&format!("127.0.0.1:{}", rpc + 100), &["consume", "t"]);
    assert!(ok, "{err}");
    let mut values: Vec<String> = out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["value"].as_str().unwrap().to_string()).collect();
    values.sort();
    assert_eq!(values, ["before", "before", "before", "during", "during", "during"]);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}
