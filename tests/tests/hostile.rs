//! Hostile clients (issue 14, part 3): requests being read hold a bounded
//! amount of memory node-wide, and silent connections are closed, while a
//! well-behaved producer keeps being served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use runnel_tests::{Node, temp_dir};

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap();
    kb * 1024
}

/// Produces `n` acks=all messages; returns how many were acknowledged.
fn produce(bootstrap: &str, topic: &str, n: usize) -> usize {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("acks", "all").set("message.timeout.ms", "30000").create().unwrap();
    for i in 0..n {
        let value = format!("well-behaved-{i}");
        producer.send(BaseRecord::<str, str, ()>::to(topic).payload(&value)).map_err(|(e, _)| e).expect("enqueue");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(40)).expect("every write acknowledged");
    n - producer.in_flight_count() as usize
}

#[test]
fn forty_stalled_90_mib_requests_hold_bounded_memory_while_a_producer_is_served() {
    const STALLED: usize = 40;
    const FRAME: usize = 90 * 1024 * 1024;
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &[]);
    let before = rss_bytes(node.pid());

    // Each connection declares a 90 MiB request and sends all of it but the
    // last byte, or as much as the node reads before it stops reading.
    let (sent_tx, sent_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let stop_rx = std::sync::Arc::new(std::sync::Mutex::new(stop_rx));
    let mut threads = Vec::new();
    for _ in 0..STALLED {
        let addr = node.bootstrap.clone();
        let (sent_tx, stop_rx) = (sent_tx.clone(), stop_rx.clone());
        threads.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(1500))).unwrap();
            s.write_all(&(FRAME as i32).to_be_bytes()).unwrap();
            let chunk = vec![0u8; 1 << 20];
            let mut left = FRAME - 1;
            while left > 0 {
                match s.write(&chunk[..left.min(chunk.len())]) {
                    Ok(n) => left -= n,
                    Err(_) => break, // the node stopped reading this connection
                }
            }
            sent_tx.send(FRAME - 1 - left).unwrap();
            // Hold the connection open, stalled, until the test is done.
            let _ = stop_rx.lock().unwrap().recv_timeout(Duration::from_secs(120));
            drop(s);
        }));
    }
    let sent: Vec<usize> = (0..STALLED).map(|_| sent_rx.recv_timeout(Duration::from_secs(120)).expect("a writer finished")).collect();
    let fully = sent.iter().filter(|&&n| n == FRAME - 1).count();
    let stalled_rss = rss_bytes(node.pid());
    println!(
        "rss before {} MiB, with {STALLED} stalled requests {} MiB; {fully} connections were read in full, the rest pushed back",
        before >> 20,
        stalled_rss >> 20
    );
    assert!(stalled_rss < 512 << 20, "node RSS {} MiB with {STALLED} stalled 90 MiB requests", stalled_rss >> 20);
    assert!(fully < STALLED, "every request was read: nothing pushed back");

    // A well-behaved producer gets every acks=all write through meanwhile.
    let started = Instant::now();
    assert_eq!(produce(&node.bootstrap, "well-behaved", 200), 200);
    println!("200 acks=all writes in {:?} beside the stalled connections", started.elapsed());
    assert!(rss_bytes(node.pid()) < 512 << 20);
    drop(stop_tx);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let dir = temp_dir();
    let node = Node::start(&dir.path().join("node"), &["--connections-max-idle-ms", "300"]);
    // Silent from the start, and silent in the middle of a request.
    let mut silent = TcpStream::connect(&node.bootstrap).unwrap();
    let mut midway = TcpStream::connect(&node.bootstrap).unwrap();
    midway.write_all(&100i32.to_be_bytes()).unwrap();
    midway.write_all(&[0u8; 10]).unwrap();
    for s in [&mut silent, &mut midway] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut b = [0u8; 1];
        assert!(matches!(s.read(&mut b), Ok(0) | Err(_)), "the node closes an idle connection");
        assert!(started.elapsed() < Duration::from_secs(4), "closed after {:?}", started.elapsed());
    }
    // A client that keeps talking is not idle.
    assert_eq!(produce(&node.bootstrap, "busy", 20), 20);
}
