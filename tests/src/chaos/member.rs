//! Consumer-group members as processes of their own (`runnel-chaos member`),
//! so the nemesis can SIGKILL one: a member that dies without leaving is
//! what the coordinator's session timeout is for. Each member writes its
//! events (reads and commits) to a JSONL file, timestamped from the run's
//! start, which the harness merges into the history at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::history::{Event, Kind, Op};

pub struct MemberProcess {
    pub name: String,
    child: Option<Child>,
    out: PathBuf,
}

impl MemberProcess {
    /// Starts `runnel-chaos member` (this executable).
    pub fn spawn(name: &str, bootstrap: &str, topic: &str, group: &str, start_unix_ns: u128, out_dir: &Path, kip848: bool) -> MemberProcess {
        let out = out_dir.join(format!("{name}.jsonl"));
        let exe = std::env::current_exe().expect("the chaos executable");
        let child = Command::new(exe)
            .args([
                "member",
                "--name",
                name,
                "--bootstrap",
                bootstrap,
                "--topic",
                topic,
                "--group",
                group,
                "--start-unix-ns",
                &start_unix_ns.to_string(),
                "--out",
            ])
            .arg(&out)
            .args(kip848.then_some("--kip848"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a group member");
        MemberProcess { name: name.to_string(), child: Some(child), out }
    }

    /// SIGKILL: the member vanishes without leaving the group.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: the member closes (leaves the group) and exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            for _ in 0..100 {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn events(&self) -> Vec<Event> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The member's side: subscribe, read, commit the next offset after each
/// message, until SIGTERM. A KIP-848 member's session and heartbeat are
/// the coordinator's to set (the chaos nodes set 6 s and 1 s, as the
/// classic member asks for).
pub fn run_member(name: &str, bootstrap: &str, topic: &str, group: &str, start_unix_ns: u128, out: &Path, kip848: bool) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
            }
        });
        flag.store(true, Ordering::SeqCst);
    });
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).expect("member output"));
    let now = || (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos().saturating_sub(start_unix_ns)) as u64;
    let mut write = |mut e: Event| {
        e.t = now();
        let _ = serde_json::to_writer(&mut file, &e);
        let _ = file.write_all(b"\n");
        let _ = file.flush();
    };
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("group.id", group).set("auto.offset.reset", "earliest").set("enable.auto.commit", "false");
    config.set("socket.timeout.ms", "3000");
    if kip848 {
        config.set("group.protocol", "consumer");
    } else {
        config.set("session.timeout.ms", "6000").set("heartbeat.interval.ms", "1000");
    }
    let consumer: BaseConsumer = config.create().expect("group member");
    consumer.subscribe(&[topic]).expect("subscribe");
    while !stop.load(Ordering::SeqCst) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        write(Event::new(name, Kind::Ok, Op::Read).value(value).at(m.partition(), m.offset()));
        let mut tpl = TopicPartitionList::new();
        let next = m.offset() + 1;
        if tpl.add_partition_offset(topic, m.partition(), Offset::Offset(next)).is_err() {
            continue;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => write(Event::new(name, Kind::Ok, Op::Commit).at(m.partition(), next)),
            Err(e) => write(Event::new(name, Kind::Fail, Op::Commit).at(m.partition(), next).error(e.to_string())),
        }
    }
    consumer.unsubscribe();
}
