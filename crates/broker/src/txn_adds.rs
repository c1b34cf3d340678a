//! Transaction version 2 (KIP-890 part 2): a producer sends no
//! AddPartitionsToTxn, so the leader of a partition adds it to the
//! producer's transaction before appending the transaction's first batch
//! there. The transaction coordinator runs on the node that leads the
//! controller quorum: the add is a call in this process when that is this
//! node, and the `Coordinator` gRPC service's `AddPartitionsToTxn`
//! otherwise (served here too, for the other nodes).

use std::sync::Arc;
use std::time::Duration;

use runnel_controller::Metadata;
use runnel_controller::identity::PeerChannel;
use runnel_controller::network::PeerClients;
use runnel_coordinator::{TransactionCoordinator, coordinator_node};
use runnel_protocol::kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use runnel_rpc::coordinator::coordinator_client::CoordinatorClient;
use runnel_rpc::coordinator::coordinator_server::Coordinator;
use runnel_rpc::coordinator::{AddPartitionsToTxnReply, AddPartitionsToTxnRequest, TxnPartition};
use tonic::{Request, Response, Status};

/// How long a leader waits for the coordinator's node to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why partitions were not added: Kafka's error and a message.
pub type AddError = (ResponseError, String);

/// The partition leader's side.
pub struct TxnPartitionAdder {
    metadata: Metadata,
    transactions: Arc<TransactionCoordinator>,
    clients: PeerClients<CoordinatorClient<PeerChannel>>,
}

impl TxnPartitionAdder {
    pub fn new(metadata: Metadata, transactions: Arc<TransactionCoordinator>) -> TxnPartitionAdder {
        TxnPartitionAdder { metadata, transactions, clients: PeerClients::default() }
    }

    /// Adds `partitions` to the transaction of `transactional_id`'s producer
    /// at `(producer_id, epoch)`; answers once the coordinator committed it.
    pub async fn add(&self, transactional_id: &str, producer_id: i64, epoch: i16, partitions: &[(String, i32)]) -> Result<(), AddError> {
        let Some(coordinator) = coordinator_node(&self.metadata) else {
            return Err((ResponseError::CoordinatorNotAvailable, "no live broker leads the controller quorum right now".into()));
        };
        if coordinator.id == self.metadata.identity().node_id() {
            return self
                .transactions
                .add_partitions(transactional_id, producer_id, epoch, partitions)
                .await
                .map_err(|e| (e, format!("the transaction coordinator refused to add the partitions: {e}")));
        }
        let address = &coordinator.rpc_address;
        let mut client = self
            .clients
            .get(self.metadata.identity(), coordinator.id, address, CoordinatorClient::new)
            .map_err(|e| (ResponseError::CoordinatorNotAvailable, format!("coordinator {} at {address}: {e}", coordinator.id)))?;
        let request = AddPartitionsToTxnRequest {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch: i32::from(epoch),
            partitions: partitions.iter().map(|(topic, partition)| TxnPartition { topic: topic.clone(), partition: *partition }).collect(),
        };
        let reply = match tokio::time::timeout(CALL_TIMEOUT, client.add_partitions_to_txn(request)).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => return Err((ResponseError::CoordinatorNotAvailable, format!("coordinator {}: {}", coordinator.id, status.message()))),
            Err(_) => return Err((ResponseError::CoordinatorNotAvailable, format!("coordinator {} did not answer in {CALL_TIMEOUT:?}", coordinator.id))),
        };
        let code = i16::try_from(reply.error_code).unwrap_or(ResponseError::UnknownServerError.code());
        match code.err() {
            None => Ok(()),
            Some(e) => Err((e, reply.message)),
        }
    }
}

/// The coordinator's side, for partition leaders on other nodes.
pub struct CoordinatorService {
    pub transactions: Arc<TransactionCoordinator>,
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn add_partitions_to_txn(&self, request: Request<AddPartitionsToTxnRequest>) -> Result<Response<AddPartitionsToTxnReply>, Status> {
        let r = request.into_inner();
        let Ok(epoch) = i16::try_from(r.producer_epoch) else {
            return Err(Status::invalid_argument(format!("producer epoch {} does not fit an i16", r.producer_epoch)));
        };
        let partitions: Vec<(String, i32)> = r.partitions.into_iter().map(|p| (p.topic, p.partition)).collect();
        let reply = match self.transactions.add_partitions(&r.transactional_id, r.producer_id, epoch, &partitions).await {
            Ok(()) => AddPartitionsToTxnReply { error_code: 0, message: String::new() },
            Err(e) => {
                AddPartitionsToTxnReply { error_code: i32::from(e.code()), message: format!("the transaction coordinator refused to add the partitions: {e}") }
            }
        };
        Ok(Response::new(reply))
    }
}
