//! Consumer-group benchmarks.
//!
//! - `rebalance`: a group of `--members` consumers (classic protocol, or
//!   KIP-848 with `--strategy consumer`) shares a topic; one more member joins, and the time from its subscribe until every member holds
//!   a disjoint share covering the topic is measured, `--trials` times (the
//!   extra member leaves between trials).
//! - `commits`: standalone offset commits (each one a Raft commit on the
//!   coordinator) from `--concurrency` clients; commits/s and latency.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{Common, Summary, client_config, ensure_topic};

#[derive(Args, Clone)]
pub struct RebalanceArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 6)]
    members: usize,
    #[arg(long, default_value_t = 5)]
    trials: usize,
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// range, roundrobin or cooperative-sticky (the classic protocol, the
    /// clients assign), or consumer (KIP-848's group.protocol=consumer, the
    /// coordinator assigns and sets the heartbeat interval).
    #[arg(long, default_value = "range")]
    strategy: String,
}

#[derive(Args, Clone)]
pub struct CommitArgs {
    #[command(flatten)]
    pub common: Common,
    /// Offset commits in all.
    #[arg(long, short = 'n', default_value_t = 5000)]
    commits: u64,
    /// Clients committing at once, each to its own partition.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// A member polling on its own thread, publishing its assignment.
struct Member {
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn member(args: &RebalanceArgs, group: &str) -> Result<Member> {
    let mut config = client_config(&args.common)?;
    config.set("group.id", group).set("enable.auto.commit", "false");
    if args.strategy == "consumer" {
        config.set("group.protocol", "consumer");
    } else {
        config.set("session.timeout.ms", "10000").set("heartbeat.interval.ms", "500").set("partition.assignment.strategy", &args.strategy);
    }
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[&args.common.topic])?;
    let assignment = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, s) = (assignment.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let _ = consumer.poll(Duration::from_millis(20));
            if let Ok(tpl) = consumer.assignment() {
                *a.lock().unwrap() = tpl.elements().iter().map(|e| e.partition()).collect();
            }
        }
        consumer.unsubscribe();
    });
    Ok(Member { assignment, stop, thread })
}

impl Member {
    fn leave(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn settled(members: &[Member], partitions: i32) -> bool {
    let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assignment.lock().unwrap().clone()).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty()) && total == partitions as usize && union.len() == partitions as usize
}

fn wait_settled(members: &[Member], partitions: i32, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    while !settled(members, partitions) {
        if start.elapsed() > limit {
            bail!("the group did not settle within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(start.elapsed())
}

pub fn rebalance(args: &RebalanceArgs) -> Result<Summary> {
    if args.partitions < args.members as i32 + 1 {
        bail!("need at least one partition per member: {} partitions for {} members", args.partitions, args.members + 1);
    }
    ensure_topic(&args.common, args.partitions, 1)?;
    let group = format!("bench-rebalance-{}", std::process::id());
    let mut members = (0..args.members).map(|_| member(args, &group)).collect::<Result<Vec<_>>>()?;
    wait_settled(&members, args.partitions, Duration::from_secs(60))?;
    let mut times_us = Vec::new();
    let start = Instant::now();
    for trial in 0..args.trials {
        members.push(member(args, &group)?);
        let took = wait_settled(&members, args.partitions, Duration::from_secs(60))?;
        eprintln!("trial {}: a member joined a group of {}: settled in {:.0} ms", trial + 1, args.members, took.as_secs_f64() * 1000.0);
        times_us.push(took.as_micros().min(u32::MAX as u128) as u32);
        members.pop().expect("the joiner").leave();
        wait_settled(&members, args.partitions, Duration::from_secs(60))?;
    }
    let elapsed = start.elapsed();
    for m in members {
        m.leave();
    }
    Ok(Summary::new("rebalance", args.trials as u64, 0, 0, elapsed, times_us))
}

pub fn commits(args: &CommitArgs) -> Result<Summary> {
    let partitions = args.concurrency as i32;
    ensure_topic(&args.common, partitions, 1)?;
    let group = format!("bench-commits-{}", std::process::id());
    let per_client = args.commits / args.concurrency as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let config = client_config(&args.common).map(|mut c| {
                c.set("group.id", &group);
                c
            });
            let topic = args.common.topic.clone();
            std::thread::spawn(move || -> Result<(Vec<u32>, u64)> {
                let consumer: BaseConsumer = config?.create()?;
                let mut latencies = Vec::with_capacity(per_client as usize);
                let mut errors = 0;
                for n in 0..per_client {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(&topic, i as i32, Offset::Offset(n as i64))?;
                    let t = Instant::now();
                    match consumer.commit(&tpl, CommitMode::Sync) {
                        Ok(()) => latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                        Err(_) => errors += 1,
                    }
                }
                Ok((latencies, errors))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().map_err(|_| anyhow::anyhow!("commit thread panicked"))??;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    Ok(Summary::new("commits", latencies.len() as u64, errors, 0, elapsed, latencies))
}
