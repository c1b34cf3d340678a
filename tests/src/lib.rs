//! Test harness: real `runnel` processes on 127.0.0.1 with their own data
//! directories and free ports, plus helpers for rdkafka clients and raw wire
//! requests.
//!
//! The harness runs the `runnel` binary built next to the test executable
//! (`target/<profile>/runnel`), or the one named by `RUNNEL_BIN`. Build it
//! first: `cargo build -p runnel` (the README's test command does).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod chaos;
pub mod wire;

/// Where the node binary is.
pub fn runnel_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RUNNEL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/runnel
    let bin = exe.parent().and_then(Path::parent).expect("target/<profile> directory").join("runnel");
    assert!(bin.exists(), "{} is missing: run `cargo build -p runnel` before the tests (or set RUNNEL_BIN)", bin.display());
    bin
}

/// One running node.
pub struct Node {
    child: Option<Child>,
    pub data_dir: PathBuf,
    /// HOST:PORT of the Kafka listener.
    pub bootstrap: String,
    /// HOST:PORT of the gRPC listener (admin API).
    pub rpc: String,
    /// HOST:PORT of the HTTP endpoint (/healthz, /readyz).
    pub http: String,
    pub port: u16,
    pub rpc_port: u16,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    stderr_log: PathBuf,
}

impl Node {
    /// Starts a dev node on a free port in `data_dir` with extra flags.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Node {
        Self::start_on(data_dir, 0, 0, extra_args.iter().map(|s| s.to_string()).collect(), Vec::new())
    }

    /// Starts `runnel serve` as one node of a cluster, with fixed ports.
    pub fn serve(data_dir: &Path, port: u16, rpc_port: u16, extra_args: &[String]) -> Node {
        Self::serve_with_env(data_dir, port, rpc_port, extra_args, &[])
    }

    /// As `serve`, with extra environment variables for the process.
    pub fn serve_with_env(data_dir: &Path, port: u16, rpc_port: u16, extra_args: &[String], env: &[(String, String)]) -> Node {
        let mut args = vec!["serve".to_string()];
        args.extend(extra_args.iter().cloned());
        Self::start_on(data_dir, port, rpc_port, args, env.to_vec())
    }

    /// Starts `runnel serve` on free ports and returns once its listeners
    /// are bound, without waiting for it to register.
    pub fn serve_unready(data_dir: &Path, extra_args: &[String]) -> Node {
        let mut args = vec!["serve".to_string()];
        args.extend(extra_args.iter().cloned());
        Self::launch(data_dir, 0, 0, args, Vec::new(), false)
    }

    fn start_on(data_dir: &Path, port: u16, rpc_port: u16, extra_args: Vec<String>, env: Vec<(String, String)>) -> Node {
        Self::launch(data_dir, port, rpc_port, extra_args, env, true)
    }

    /// Starts the process; with `wait_ready`, returns once it has registered
    /// (or, controller-only, joined), else once its listeners are bound.
    fn launch(data_dir: &Path, port: u16, rpc_port: u16, extra_args: Vec<String>, env: Vec<(String, String)>, wait_ready: bool) -> Node {
        let stderr_log = data_dir.with_extension("stderr.log");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_log).expect("open node log");
        // `extra_args` starts with the subcommand when it is not `dev`.
        let (subcommand, rest) = match extra_args.first().map(String::as_str) {
            Some("serve") => ("serve", &extra_args[1..]),
            _ => ("dev", &extra_args[..]),
        };
        let mut child = Command::new(runnel_bin())
            .arg(subcommand)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--kafka-listener")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--rpc-listener")
            .arg(format!("127.0.0.1:{rpc_port}"))
            .arg("--http-listener")
            .arg("127.0.0.1:0")
            .args(rest)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start runnel");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut kafka, mut rpc, mut http) = (None, None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let addr = |rest: &str| rest.split(',').next().unwrap_or_default().to_string();
                if let Some(rest) = line.strip_prefix("runnel: Kafka listener on ") {
                    kafka = Some(addr(rest));
                } else if let Some(rest) = line.strip_prefix("runnel: gRPC listener on ") {
                    rpc = Some(addr(rest));
                } else if let Some(rest) = line.strip_prefix("runnel: HTTP listener on ") {
                    http = Some(addr(rest));
                    if !wait_ready {
                        let _ = tx.send((kafka.clone().unwrap_or_default(), rpc.clone().unwrap_or_default(), http.clone().unwrap_or_default()));
                    }
                } else if line.starts_with("runnel: node ") && (line.ends_with("registered and serving") || line.ends_with("as a controller only")) {
                    let _ = tx.send((kafka.clone().unwrap_or_default(), rpc.clone().unwrap_or_default(), http.clone().unwrap_or_default()));
                }
            }
        });
        let (bootstrap, rpc, http) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("runnel exited or did not start within 30 s; its log:\n{}", std::fs::read_to_string(&stderr_log).unwrap_or_default());
            }
        };
        // A controller-only node has no Kafka listener: port 0, empty bootstrap.
        let port_of = |a: &str| a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
        let (port, rpc_port) = (port_of(&bootstrap), port_of(&rpc));
        Node { child: Some(child), data_dir: data_dir.to_path_buf(), bootstrap, rpc, http, port, rpc_port, extra_args, env, stderr_log }
    }

    /// The process id of the running node.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// SIGKILL: the process dies without flushing or closing anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process freezes; peers see silence, not closed sockets.
    pub fn pause(&self) {
        send_signal(self.child.as_ref().expect("node is running").id() as i32, "STOP");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        send_signal(self.child.as_ref().expect("node is running").id() as i32, "CONT");
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let pid = child.id() as i32;
        send_signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait for runnel") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("runnel did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill();
        let again = Node::start_on(&self.data_dir, self.port, self.rpc_port, self.extra_args.clone(), self.env.clone());
        *self = again;
    }

    /// Starts the node again without waiting for it to register (it may
    /// not be able to: no quorum); returns once its listeners are bound.
    pub fn restart_unready(&mut self) {
        self.kill();
        let again = Node::launch(&self.data_dir, self.port, self.rpc_port, self.extra_args.clone(), self.env.clone(), false);
        *self = again;
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// GET `path` from the node's HTTP endpoint; returns (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.http_request("GET", path, "")
    }

    /// One HTTP request to the node's endpoint; returns (status code, body).
    pub fn http_request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http_request(&self.http, method, path, body)
    }

    /// A raw TCP connection to the Kafka listener.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.bootstrap).expect("connect to runnel");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        s
    }
}

/// One HTTP/1.1 request to `addr` (HOST:PORT); returns (status code, body).
pub fn http_request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: runnel\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read response");
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

fn send_signal(pid: i32, signal: &str) {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary directory for one test's nodes; removed at drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("runnel-test-").tempdir().expect("temp dir")
}

/// librdkafka's default partitioner for keyed messages (consistent_random):
/// CRC-32 of the key modulo the partition count.
pub fn librdkafka_partition(key: &[u8], partitions: i32) -> i32 {
    (crc32fast::hash(key) % partitions as u32) as i32
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// The `runnelctl` binary next to `runnel`.
pub fn runnelctl_bin() -> PathBuf {
    let bin = runnel_bin().with_file_name("runnelctl");
    assert!(bin.exists(), "{} is missing: run `cargo build -p runnel-cli` before the tests", bin.display());
    bin
}

/// Runs runnelctl against `rpc` with `--output json`; returns (exit ok, stdout, stderr).
pub fn runnelctl(rpc: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(runnelctl_bin()).arg("--bootstrap").arg(rpc).arg("--output").arg("json").args(args).output().expect("run runnelctl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Polls `f` every 100 ms until it returns `Some`; panics after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free TCP port on 127.0.0.1 for a node that must know its port before
/// it starts. Taken below the kernel's ephemeral range (which starts at
/// 32768 by default), so a port another test then binds with port 0 can
/// never be the same one; each port is handed out once per process, from an
/// offset that differs between processes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id().wrapping_mul(7919) % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN)
}

/// One cluster at a time per test binary: clusters lean on timeouts
/// (sessions, elections), and several at once on two cores would make those
/// tests measure the machine's load instead of Runnel.
static CLUSTER_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for this test binary's turn to run a cluster; the turn lasts as
/// long as the guard.
pub(crate) fn cluster_turn() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cluster of `runnel serve` processes, each a controller voter and a broker.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts `n` nodes, each a controller and a broker, with a session
    /// timeout of `session_timeout_ms`.
    pub fn start(n: usize, session_timeout_ms: u64) -> Cluster {
        Self::start_with_roles(&vec!["controller,broker"; n], session_timeout_ms)
    }

    /// Starts one node per entry of `roles` ("controller,broker",
    /// "controller" or "broker"); node ids count from 1.
    pub fn start_with_roles(roles: &[&str], session_timeout_ms: u64) -> Cluster {
        Self::start_with(roles, session_timeout_ms, &[])
    }

    /// As `start_with_roles`, with extra flags for every node.
    pub fn start_with(roles: &[&str], session_timeout_ms: u64, extra: &[&str]) -> Cluster {
        let turn = cluster_turn();
        let dir = temp_dir();
        let ports: Vec<(u16, u16)> = roles.iter().map(|_| (free_port(), free_port())).collect();
        let quorum: Vec<String> =
            ports.iter().enumerate().filter(|(i, _)| roles[*i].contains("controller")).map(|(i, (_, rpc))| format!("{}@127.0.0.1:{rpc}", i + 1)).collect();
        let quorum = quorum.join(",");
        // Start every process before waiting on any: a node registers only
        // once a majority of the quorum is up.
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let handles: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, (kafka, rpc))| {
                let data = dir.path().join(format!("node-{}", i + 1));
                let args = vec![
                    "--node-id".to_string(),
                    (i + 1).to_string(),
                    "--controller-quorum".into(),
                    quorum.clone(),
                    "--session-timeout-ms".into(),
                    session_timeout_ms.to_string(),
                    "--auto-create-topics".into(),
                    "true".into(),
                    "--roles".into(),
                    roles[i].to_string(),
                ];
                let mut args = args;
                args.extend(extra.iter().cloned());
                let (kafka, rpc) = (*kafka, *rpc);
                std::thread::spawn(move || Node::serve(&data, kafka, rpc, &args))
            })
            .collect();
        let nodes = handles.into_iter().map(|h| h.join().expect("node start")).collect();
        Cluster { nodes, _dir: dir, _turn: turn }
    }

    /// All nodes' Kafka addresses, for bootstrap.servers.
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.bootstrap.clone()).collect::<Vec<_>>().join(",")
    }

    /// SIGKILLs every node, then starts them all again at once.
    pub fn restart_all(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        std::thread::scope(|s| {
            for n in &mut self.nodes {
                s.spawn(move || n.restart());
            }
        });
    }

    /// The controller leader's node id as a given node reports it.
    pub fn leader_seen_by(&self, index: usize) -> Option<u64> {
        let (ok, out, _) = runnelctl(&self.nodes[index].rpc, &["cluster", "status"]);
        if !ok {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v["leader_id"].as_u64()
    }
}
