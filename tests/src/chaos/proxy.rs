//! A userspace TCP fault proxy: one listener per link, relaying to one
//! target, with faults set per direction while it runs (this kernel has no
//! netem, so delays and partitions are made here).
//!
//! - `Pass`: bytes flow.
//! - `Delay(d)`: each chunk waits `d` before it is forwarded.
//! - `Hold`: nothing is forwarded in this direction and nothing more is read
//!   (the sender's socket buffers fill); bytes resume when the mode changes.
//!   One direction held is an asymmetric partition for TCP: requests arrive,
//!   answers do not.
//! - `refuse()`: every open connection of the link is closed and new ones are
//!   closed as soon as they are accepted, until `heal()`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Hold,
}

/// One proxied link: client side to `target`.
pub struct Link {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    /// Client to target.
    up: watch::Sender<Mode>,
    /// Target to client.
    down: watch::Sender<Mode>,
    /// Bumped to close every connection of the link.
    generation: watch::Sender<u64>,
    refusing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Listens on a free port of `host` and relays to `target`.
    pub async fn start(host: &str, target: SocketAddr) -> std::io::Result<Link> {
        let listener = TcpListener::bind((host, 0)).await?;
        let listen = listener.local_addr()?;
        let (up, up_rx) = watch::channel(Mode::Pass);
        let (down, down_rx) = watch::channel(Mode::Pass);
        let (generation, gen_rx) = watch::channel(0u64);
        let refusing = Arc::new(AtomicBool::new(false));
        let refusing_accept = refusing.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                if refusing_accept.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (up_rx, down_rx, mut gen_rx) = (up_rx.clone(), down_rx.clone(), gen_rx.clone());
                tokio::spawn(async move {
                    let connected = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await;
                    let Ok(Ok(server)) = connected else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    gen_rx.borrow_and_update();
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, up_rx) => {}
                        _ = pump(sr, cw, down_rx) => {}
                        _ = gen_rx.changed() => {}
                    }
                });
            }
        });
        Ok(Link { listen, target, up, down, generation, refusing, task })
    }

    pub fn set(&self, up: Mode, down: Mode) {
        self.up.send_replace(up);
        self.down.send_replace(down);
    }

    /// Closes every connection and refuses new ones until `heal`.
    pub fn refuse(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn heal(&self) {
        self.refusing.store(false, Ordering::SeqCst);
        self.set(Mode::Pass, Mode::Pass);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn pump(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while *mode.borrow_and_update() == Mode::Hold {
            if mode.changed().await.is_err() {
                return;
            }
        }
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = wr.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Pass => break,
                Mode::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Mode::Hold => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if wr.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, within: Duration) -> bool {
        if s.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut b = [0u8; 4];
        matches!(tokio::time::timeout(within, s.read_exact(&mut b)).await, Ok(Ok(_)))
    }

    #[tokio::test]
    async fn faults_per_direction_and_refusal() {
        let link = Link::start("127.0.0.1", echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(link.listen).await.unwrap();
        assert!(round_trip(&mut s, Duration::from_secs(1)).await);
        // Answers held: the request goes through, the echo does not come back.
        link.set(Mode::Pass, Mode::Hold);
        assert!(!round_trip(&mut s, Duration::from_millis(300)).await);
        link.heal();
        let mut b = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut b)).await.unwrap().unwrap();
        assert_eq!(&b, b"ping", "held bytes arrive once released");
        let started = std::time::Instant::now();
        link.set(Mode::Delay(Duration::from_millis(200)), Mode::Pass);
        assert!(round_trip(&mut s, Duration::from_secs(2)).await);
        assert!(started.elapsed() >= Duration::from_millis(200));
        link.refuse();
        assert!(!round_trip(&mut s, Duration::from_millis(300)).await, "open connections are cut");
        let mut again = TcpStream::connect(link.listen).await.unwrap();
        assert!(!round_trip(&mut again, Duration::from_millis(300)).await, "new ones are closed");
        link.heal();
        let mut fresh = TcpStream::connect(link.listen).await.unwrap();
        assert!(round_trip(&mut fresh, Duration::from_secs(1)).await);
    }
}
