//! `runnelctl txn list|describe`: transactions as their coordinator keeps
//! them, through the Kafka listener's ListTransactions and
//! DescribeTransactions (KIP-664) sent to the coordinator that
//! FindCoordinator names, so it authenticates like `runnelctl acl`. To abort
//! a transaction no coordinator will end, Kafka's tools write an ABORT
//! marker at the partition's leader (WriteTxnMarkers; docs/operations.md).

use anyhow::{Result, bail};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, DescribeTransactionsRequest, ListTransactionsRequest, RequestKind, ResponseKind, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use crate::kafka::KafkaClient;
use crate::{KafkaArgs, Output, table};

#[derive(clap::Subcommand)]
pub enum TxnCmd {
    /// Every transactional id, with its producer id and state.
    List {
        /// Only these states (Empty, Ongoing, PrepareCommit, PrepareAbort,
        /// CompleteCommit, CompleteAbort); repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// One transactional id: producer, state, timeout, start, partitions.
    Describe {
        transactional_id: String,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}

impl TxnCmd {
    /// How to reach and authenticate on the Kafka listener.
    pub fn kafka(&self) -> &KafkaArgs {
        match self {
            TxnCmd::List { kafka, .. } | TxnCmd::Describe { kafka, .. } => kafka,
        }
    }
}

fn check(code: i16, what: &str) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(ResponseError::TransactionalIdNotFound) => bail!("no transactional id {what}"),
        Some(e) => bail!("{e} ({what})"),
    }
}

pub async fn run(mut client: KafkaClient, command: TxnCmd, output: Output) -> Result<()> {
    match command {
        TxnCmd::List { states, .. } => {
            // Every transaction has the same coordinator: the controller
            // leader. Any key names it.
            let node = client.coordinator(1, "runnelctl").await?;
            let request = ListTransactionsRequest::default().with_state_filters(states.iter().map(|s| StrBytes::from_string(s.clone())).collect());
            let ResponseKind::ListTransactions(r) = client.call_node(node, ApiKey::ListTransactions, 0, RequestKind::ListTransactions(request)).await? else {
                bail!("a ListTransactions request was answered with another response");
            };
            check(r.error_code, "ListTransactions")?;
            if !r.unknown_state_filters.is_empty() {
                bail!("unknown states: {}", r.unknown_state_filters.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "));
            }
            let mut rows: Vec<(String, i64, String)> =
                r.transaction_states.iter().map(|t| (t.transactional_id.to_string(), t.producer_id.0, t.transaction_state.to_string())).collect();
            rows.sort();
            match output {
                Output::Json => {
                    let list: Vec<_> = rows.iter().map(|(id, p, s)| json!({"transactional_id": id, "producer_id": p, "state": s})).collect();
                    crate::emit(&serde_json::Value::Array(list).to_string());
                }
                Output::Table => table(&["TRANSACTIONAL ID", "PRODUCER ID", "STATE"], rows.into_iter().map(|(id, p, s)| vec![id, p.to_string(), s]).collect()),
            }
        }
        TxnCmd::Describe { transactional_id, .. } => {
            let node = client.coordinator(1, &transactional_id).await?;
            let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(StrBytes::from_string(transactional_id.clone()))]);
            let ResponseKind::DescribeTransactions(r) =
                client.call_node(node, ApiKey::DescribeTransactions, 0, RequestKind::DescribeTransactions(request)).await?
            else {
                bail!("a DescribeTransactions request was answered with another response");
            };
            let Some(t) = r.transaction_states.first() else { bail!("the coordinator described nothing") };
            check(t.error_code, &transactional_id)?;
            let partitions: Vec<String> = t.topics.iter().flat_map(|tp| tp.partitions.iter().map(move |p| format!("{}-{p}", tp.topic.0))).collect();
            let started = (t.transaction_start_time_ms >= 0).then_some(t.transaction_start_time_ms);
            match output {
                Output::Json => crate::emit(
                    &json!({
                        "transactional_id": transactional_id,
                        "producer_id": t.producer_id.0,
                        "producer_epoch": t.producer_epoch,
                        "state": t.transaction_state.to_string(),
                        "timeout_ms": t.transaction_timeout_ms,
                        "start_time_ms": started,
                        "partitions": partitions,
                    })
                    .to_string(),
                ),
                Output::Table => table(
                    &["TRANSACTIONAL ID", "PRODUCER ID", "EPOCH", "STATE", "TIMEOUT MS", "STARTED MS", "PARTITIONS"],
                    vec![vec![
                        transactional_id,
                        t.producer_id.0.to_string(),
                        t.producer_epoch.to_string(),
                        t.transaction_state.to_string(),
                        t.transaction_timeout_ms.to_string(),
                        started.map_or("-".into(), |s| s.to_string()),
                        partitions.join(","),
                    ]],
                ),
            }
        }
    }
    Ok(())
}
