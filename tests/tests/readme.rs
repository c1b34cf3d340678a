//! The README's commands, run as written (issue 13: its three `runnel
//! serve` lines collided on the HTTP port, and nodes 2 and 3 exited).
//! Only the binary's path and the data directories are replaced; the
//! ports are the README's own, so nothing else may hold them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use runnel_tests::{runnel_bin, runnelctl, temp_dir, wait_for};

/// Kills the README's nodes however the test ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_readme_three_node_cluster_starts_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let quorum = readme.lines().find_map(|l| l.strip_prefix("Q=")).expect("the README's Q= line").trim().to_string();
    let lines: Vec<&str> = readme.lines().filter(|l| l.starts_with("runnel serve --node-id")).collect();
    assert_eq!(lines.len(), 3, "three `runnel serve` lines in the README");
    let dir = temp_dir();
    let mut nodes = Processes(Vec::new());
    let (tx, rx) = std::sync::mpsc::channel();
    for line in &lines {
        let args: Vec<String> = line
            .split_whitespace()
            .skip(1)
            .filter(|a| *a != "&")
            .map(|a| match a {
                "$Q" => quorum.clone(),
                a if a.starts_with("/var/lib/") => dir.path().join(a.trim_start_matches("/var/lib/")).display().to_string(),
                a => a.to_string(),
            })
            .collect();
        let mut child = Command::new(runnel_bin()).args(&args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start runnel serve");
        let stdout = child.stdout.take().expect("stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if l.ends_with("is registered and serving") {
                    let _ = tx.send(l);
                }
            }
        });
        nodes.0.push(child);
    }
    for _ in 0..3 {
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let exited: Vec<_> = nodes.0.iter_mut().map(|c| c.try_wait().ok().flatten()).collect();
            panic!("not every README node registered within 30 s; exit statuses {exited:?}");
        }
    }
    let status = wait_for("three live brokers in cluster status", Duration::from_secs(15), || {
        let (ok, out, _) = runnelctl("127.0.0.1:9093", &["cluster", "status"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let live = v["nodes"].as_array()?.iter().filter(|n| n["broker_registered"] == true && n["fenced"] == false).count();
        (ok && live == 3).then_some(v)
    });
    assert!(status["leader_id"].as_u64().is_some(), "{status}");
}
