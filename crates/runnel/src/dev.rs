//! Stopping and starting single nodes of `runnel dev --nodes N`, to try
//! failover on one machine: `POST /dev/nodes/{id}/stop` and `.../start` on
//! any running node's HTTP port, `GET /dev/nodes` for who runs. A stop is
//! the node's SIGTERM path (controlled shutdown, logs flushed); a start
//! binds its listeners again and opens the same data directory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

enum Slot {
    /// Cancelling the token stops it.
    Running(CancellationToken),
    Stopping,
    /// Notified to start it again.
    Stopped(Arc<Notify>),
    Starting,
}

impl Slot {
    fn name(&self) -> &'static str {
        match self {
            Slot::Running(_) => "running",
            Slot::Stopping => "stopping",
            Slot::Stopped(_) => "stopped",
            Slot::Starting => "starting",
        }
    }
}

/// The nodes of this process, present only under `runnel dev --nodes N`.
#[derive(Default)]
pub struct DevNodes {
    slots: Mutex<BTreeMap<u64, Slot>>,
}

static DEV_NODES: OnceLock<Arc<DevNodes>> = OnceLock::new();

/// The process's node control, when it runs several nodes.
pub fn nodes() -> Option<&'static Arc<DevNodes>> {
    DEV_NODES.get()
}

/// Installs the node control (once, by `run_all` for `dev --nodes N`).
pub fn install() -> &'static Arc<DevNodes> {
    DEV_NODES.get_or_init(Arc::default)
}

impl DevNodes {
    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks node `id` running; the token stops it.
    pub fn running(&self, id: u64) -> CancellationToken {
        let token = CancellationToken::new();
        self.slots().insert(id, Slot::Running(token.clone()));
        token
    }

    /// Marks node `id` stopped; completes when someone asks to start it.
    pub async fn stopped(&self, id: u64) {
        let notify = Arc::new(Notify::new());
        self.slots().insert(id, Slot::Stopped(notify.clone()));
        notify.notified().await;
    }

    /// Every node and its state, by id.
    pub fn list(&self) -> Vec<(u64, &'static str)> {
        self.slots().iter().map(|(id, s)| (*id, s.name())).collect()
    }

    /// Asks node `id` to stop; what happened, or why not.
    pub fn stop(&self, id: u64) -> Result<String, String> {
        let mut slots = self.slots();
        match slots.get(&id) {
            None => Err(self.unknown(id, &slots)),
            Some(Slot::Running(token)) => {
                if slots.values().filter(|s| matches!(s, Slot::Running(_))).count() == 1 {
                    return Err(format!("node {id} is the last one running; stop the process instead (Ctrl-C)"));
                }
                token.cancel();
                slots.insert(id, Slot::Stopping);
                Ok(format!("node {id} is stopping"))
            }
            Some(other) => Err(format!("node {id} is {}", other.name())),
        }
    }

    /// Asks stopped node `id` to start again.
    pub fn start(&self, id: u64) -> Result<String, String> {
        let mut slots = self.slots();
        match slots.get(&id) {
            None => Err(self.unknown(id, &slots)),
            Some(Slot::Stopped(notify)) => {
                notify.notify_one();
                slots.insert(id, Slot::Starting);
                Ok(format!("node {id} is starting"))
            }
            Some(other) => Err(format!("node {id} is {}", other.name())),
        }
    }

    fn unknown(&self, id: u64, slots: &BTreeMap<u64, Slot>) -> String {
        format!("there is no node {id} in this process (nodes {})", slots.keys().map(u64::to_string).collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_node_stops_and_starts_only_from_the_right_state() {
        let nodes = DevNodes::default();
        let one = nodes.running(1);
        let _two = nodes.running(2);
        assert!(nodes.start(1).unwrap_err().contains("running"));
        assert!(nodes.stop(7).unwrap_err().contains("no node 7"));
        nodes.stop(1).unwrap();
        assert!(one.is_cancelled());
        assert!(nodes.stop(1).unwrap_err().contains("stopping"));
        assert!(nodes.stop(2).unwrap_err().contains("last one running"));
        let nodes = Arc::new(nodes);
        let waiter = tokio::spawn({
            let nodes = nodes.clone();
            async move { nodes.stopped(1).await }
        });
        while nodes.list()[0].1 != "stopped" {
            tokio::task::yield_now().await;
        }
        nodes.start(1).unwrap();
        waiter.await.unwrap();
        assert_eq!(nodes.list(), vec![(1, "starting"), (2, "running")]);
    }
}
