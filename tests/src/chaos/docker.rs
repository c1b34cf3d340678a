//! The Docker tier: the three-node docker-compose cluster of
//! `deploy/compose` (with `chaos.yml` over it), faulted the way a host or
//! an operator breaks containers: SIGKILL of a container's process from the
//! host, `docker pause`, `docker network disconnect`. Clients use the
//! nodes' external listeners on the host (127.0.0.1:11092/12092/13092), the
//! harness's view the admin ports `chaos.yml` publishes.
//!
//! Needs the `runnel:latest` image (`just image`), a Docker engine and
//! docker-compose.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::cluster::{AdminView, NODES};

/// The compose project, so a run never touches a user's own cluster.
const PROJECT: &str = "runnel-chaos";

pub struct DockerCluster {
    pub view: AdminView,
    /// Container id of node index i.
    containers: Vec<String>,
    /// The compose network the nodes share.
    network: String,
}

fn compose_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/compose"))
}

fn compose() -> Command {
    let dir = compose_dir();
    let mut c = Command::new("docker-compose");
    c.arg("-p").arg(PROJECT).arg("-f").arg(dir.join("docker-compose.yml")).arg("-f").arg(dir.join("chaos.yml"));
    c
}

/// Runs a command; its trimmed stdout, or what went wrong.
fn run(c: &mut Command) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{c:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker(args: &[&str]) -> Result<String, String> {
    run(Command::new("docker").args(args))
}

/// Why the Docker tier cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if docker(&["info", "--format", "{{.ServerVersion}}"]).is_err() {
        return Some("no Docker engine answers (docker info failed)".into());
    }
    if run(Command::new("docker-compose").arg("version")).is_err() {
        return Some("docker-compose is not installed".into());
    }
    let image = std::env::var("RUNNEL_IMAGE").unwrap_or_else(|_| "runnel:latest".into());
    if docker(&["image", "inspect", &image]).is_err() {
        return Some(format!("the image {image} is missing (build it with `just image`)"));
    }
    None
}

impl DockerCluster {
    /// Brings the cluster up from scratch (volumes of an earlier run are
    /// removed) and creates the chaos topic.
    pub fn start() -> DockerCluster {
        let _ = run(compose().args(["down", "-v", "--timeout", "5"]));
        run(compose().args(["up", "-d"])).expect("docker-compose up");
        let containers: Vec<String> = (1..=NODES).map(|n| run(compose().args(["ps", "-q", &format!("runnel-{n}")])).expect("container id")).collect();
        let networks = docker(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", &containers[0]]).expect("inspect");
        let network = networks.split_whitespace().next().expect("the compose network").to_string();
        let view = AdminView { rpc: (1..=NODES).map(|n| format!("127.0.0.1:1{n}093")).collect(), topic: "chaos".into(), partitions: 3 };
        let cluster = DockerCluster { view, containers, network };
        // Every broker registered: the topic's replicas need all three.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (ok, out, _) = crate::runnelctl(&cluster.view.rpc[0], &["--timeout-secs", "2", "broker", "list"]);
            let live = ok
                .then(|| serde_json::from_str::<serde_json::Value>(&out).ok())
                .flatten()
                .and_then(|v| v.as_array().map(|b| b.iter().filter(|b| b["fenced"] == false).count()));
            if live == Some(NODES) {
                break;
            }
            assert!(Instant::now() < deadline, "the compose cluster did not come up with three brokers in 90 s");
            std::thread::sleep(Duration::from_millis(500));
        }
        cluster.view.create_topic(0);
        cluster
    }

    /// The nodes' external listeners, published on the host.
    pub fn bootstrap(&self) -> String {
        (1..=NODES).map(|n| format!("127.0.0.1:1{n}092")).collect::<Vec<_>>().join(",")
    }

    /// SIGKILL of node index `i`'s process, from the host, with its restart
    /// policy off so it stays down until [`DockerCluster::start_node`].
    pub fn kill(&self, i: usize) {
        docker(&["update", "--restart", "no", &self.containers[i]]).expect("docker update");
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &self.containers[i]]).expect("inspect");
        run(Command::new("kill").args(["-9", &pid])).expect("kill -9 the container's process");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running(i) {
            assert!(Instant::now() < deadline, "node {} still running 10 s after SIGKILL", i + 1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts node index `i` again and restores its restart policy.
    pub fn start_node(&self, i: usize) {
        docker(&["start", &self.containers[i]]).expect("docker start");
        docker(&["update", "--restart", "unless-stopped", &self.containers[i]]).expect("docker update");
    }

    pub fn pause(&self, i: usize) {
        docker(&["pause", &self.containers[i]]).expect("docker pause");
    }

    pub fn unpause(&self, i: usize) {
        docker(&["unpause", &self.containers[i]]).expect("docker unpause");
    }

    /// Takes node index `i` off the compose network: it reaches neither its
    /// peers nor clients, and they cannot reach it.
    pub fn disconnect(&self, i: usize) {
        docker(&["network", "disconnect", &self.network, &self.containers[i]]).expect("docker network disconnect");
    }

    /// Puts it back, under its service name (the peers' address for it).
    pub fn connect(&self, i: usize) {
        let alias = format!("runnel-{}", i + 1);
        docker(&["network", "connect", "--alias", &alias, &self.network, &self.containers[i]]).expect("docker network connect");
    }

    /// Running and not paused.
    pub fn is_running(&self, i: usize) -> bool {
        docker(&["inspect", "-f", "{{.State.Running}} {{.State.Paused}}", &self.containers[i]]).is_ok_and(|s| s == "true false")
    }

    /// The node's log (stdout and stderr of the container).
    pub fn log(&self, i: usize) -> String {
        Command::new("docker")
            .args(["logs", "--timestamps", &self.containers[i]])
            .output()
            .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
            .unwrap_or_default()
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        // Undo any fault a failed run left, then remove everything.
        for c in &self.containers {
            let _ = docker(&["unpause", c]);
        }
        let _ = run(compose().args(["down", "-v", "--timeout", "5"]));
    }
}
