//! Transaction markers (Kafka's WriteTxnMarkers). The transaction
//! coordinator's node sends each COMMIT or ABORT marker to its partition's
//! leader, in-process when that is this node and over the Replication gRPC
//! service otherwise; the leader appends it and answers once the ISR has it,
//! as an acks=all produce.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use runnel_controller::identity::PeerChannel;
use runnel_controller::metadata::NodeId;
use runnel_controller::network::PeerClients;
use runnel_rpc::replication::replication_client::ReplicationClient;
use runnel_rpc::replication::{MarkerResult, ReplicaError, TxnMarker, WriteMarkersRequest};
use runnel_storage::batch::Marker;
use runnel_storage::producer_state::ProducerError;
use runnel_storage::{Offset, StorageError};

use crate::manager::ReplicaManager;
use crate::partition::{AppendError, CommitError};

/// How long a leader waits for its ISR to have a marker before it answers
/// NOT_ENOUGH_REPLICAS (the coordinator asks again).
const ISR_WAIT: Duration = Duration::from_secs(10);

/// How long the coordinator's node waits for a leader's answer: longer than
/// [`ISR_WAIT`], so a marker is never still being written when it is sent
/// again.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

fn result(error: ReplicaError, message: impl Into<String>) -> MarkerResult {
    MarkerResult { error: error as i32, message: message.into() }
}

/// The leader side: writes `m` into a partition led here and waits until
/// the ISR has it.
pub async fn write_local(replicas: &ReplicaManager, m: &TxnMarker) -> MarkerResult {
    let partition = match replicas.leader(&m.topic, m.partition) {
        Ok(p) => p,
        Err(e) => return result(ReplicaError::NotLeader, format!("{e:?}")),
    };
    let Ok(epoch) = i16::try_from(m.producer_epoch) else {
        return result(ReplicaError::Storage, format!("producer epoch {} does not fit an i16", m.producer_epoch));
    };
    let marker = if m.commit { Marker::Commit } else { Marker::Abort };
    let appended = match partition.append_marker(m.producer_id, epoch, marker, m.coordinator_epoch) {
        Ok(a) => a,
        Err(AppendError::NotLeader(e)) => return result(ReplicaError::NotLeader, e.to_string()),
        Err(AppendError::NotEnoughReplicas(e)) => return result(ReplicaError::NotEnoughReplicas, e.to_string()),
        Err(AppendError::Storage(StorageError::Producer(e @ (ProducerError::FencedEpoch { .. } | ProducerError::StaleCoordinator { .. })))) => {
            return result(ReplicaError::ProducerFenced, e.to_string());
        }
        // Deleted or moved away meanwhile.
        Err(AppendError::Storage(e @ StorageError::Closed(_))) => return result(ReplicaError::NotLeader, e.to_string()),
        Err(AppendError::Storage(e)) => return result(ReplicaError::Storage, e.to_string()),
    };
    let end = Offset(appended.info.last_offset + 1);
    match tokio::time::timeout(ISR_WAIT, partition.commit(end, true, appended.leader_epoch)).await {
        Ok(Ok(())) => result(ReplicaError::None, ""),
        Ok(Err(CommitError::NotLeader)) => result(ReplicaError::NotLeader, "leadership moved before the marker was replicated"),
        Ok(Err(e @ CommitError::NotEnoughReplicasAfterAppend)) => result(ReplicaError::NotEnoughReplicas, e.to_string()),
        Ok(Err(CommitError::Storage(e))) => result(ReplicaError::Storage, e.to_string()),
        Err(_) => result(ReplicaError::NotEnoughReplicas, "the ISR did not have the marker in time"),
    }
}

/// The coordinator's side: routes markers to their partitions' leaders.
pub struct MarkerSender {
    replicas: Arc<ReplicaManager>,
    clients: PeerClients<ReplicationClient<PeerChannel>>,
}

impl MarkerSender {
    pub fn new(replicas: Arc<ReplicaManager>) -> MarkerSender {
        MarkerSender { replicas, clients: PeerClients::default() }
    }

    /// Writes every marker; one result per marker, in order. A marker of a
    /// partition that no longer exists is done (nothing is left to end).
    pub async fn write(&self, markers: &[TxnMarker]) -> Vec<Result<(), String>> {
        let mut results: Vec<Result<(), String>> = vec![Ok(()); markers.len()];
        let mut by_leader: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        {
            let state = self.replicas.metadata().state();
            for (i, m) in markers.iter().enumerate() {
                let record = state.image.topics.get(&m.topic).and_then(|t| usize::try_from(m.partition).ok().and_then(|p| t.partitions.get(p)));
                match record {
                    None => {}
                    Some(p) => match p.leader {
                        Some(leader) => by_leader.entry(leader).or_default().push(i),
                        None => results[i] = Err(format!("{}-{} has no leader", m.topic, m.partition)),
                    },
                }
            }
        }
        let sends = by_leader.into_iter().map(|(leader, indexes)| async move {
            let batch: Vec<TxnMarker> = indexes.iter().map(|i| markers[*i].clone()).collect();
            (indexes, self.send(leader, batch).await)
        });
        for (indexes, answers) in join_all(sends).await {
            for (i, answer) in indexes.into_iter().zip(answers) {
                results[i] = answer;
            }
        }
        results
    }

    async fn send(&self, leader: NodeId, markers: Vec<TxnMarker>) -> Vec<Result<(), String>> {
        let count = markers.len();
        let answers = if leader == self.replicas.node_id() {
            join_all(markers.iter().map(|m| write_local(&self.replicas, m))).await
        } else {
            match self.call(leader, markers).await {
                Ok(answers) if answers.len() == count => answers,
                Ok(answers) => return vec![Err(format!("broker {leader} answered {} markers of {count}", answers.len())); count],
                Err(e) => return vec![Err(e); count],
            }
        };
        answers
            .into_iter()
            .map(|r| match ReplicaError::try_from(r.error) {
                Ok(ReplicaError::None) => Ok(()),
                Ok(e) => Err(format!("broker {leader}: {} {}", e.as_str_name(), r.message)),
                Err(_) => Err(format!("broker {leader}: error {} {}", r.error, r.message)),
            })
            .collect()
    }

    async fn call(&self, leader: NodeId, markers: Vec<TxnMarker>) -> Result<Vec<MarkerResult>, String> {
        let address = self.replicas.metadata().state().image.brokers.get(&leader).map(|b| b.rpc_address.clone());
        let Some(address) = address else { return Err(format!("broker {leader} is not registered")) };
        let metadata = self.replicas.metadata();
        let mut client =
            self.clients.get(metadata.identity(), leader, &address, ReplicationClient::new).map_err(|e| format!("broker {leader} at {address}: {e}"))?;
        match tokio::time::timeout(CALL_TIMEOUT, client.write_markers(WriteMarkersRequest { markers })).await {
            Ok(Ok(reply)) => Ok(reply.into_inner().results),
            Ok(Err(status)) => Err(format!("broker {leader}: {}", status.message())),
            Err(_) => Err(format!("broker {leader} did not answer in {CALL_TIMEOUT:?}")),
        }
    }
}
