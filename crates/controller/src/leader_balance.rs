//! Leadership back to the preferred replicas (Kafka's
//! `auto.leader.rebalance.enable`, on by default): a partition's preferred
//! leader is the first of its replicas, and partitions are placed so that
//! those are spread evenly. A broker that restarts comes back leading
//! nothing, its partitions led by the others; every check interval the
//! controller leader moves leadership back for every partition whose
//! preferred replica is live, in the ISR and not being moved, as Kafka's
//! KRaft controller does (ZooKeeper-era Kafka waited for a broker's share
//! to pass `leader.imbalance.per.broker.percentage`, which KRaft ignores
//! and Kafka 4.0 removed). The decision is the pure [`preferred_elections`].

use std::sync::Arc;
use std::time::Duration;

use crate::controller::Controller;
use crate::metadata::{Command, MetadataImage};

/// The partitions (topic, index) whose leadership goes back to their
/// preferred replica now.
pub fn preferred_elections(image: &MetadataImage) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for (name, topic) in image.topics.iter() {
        for (i, p) in topic.partitions.iter().enumerate() {
            let Some(&preferred) = p.replicas.first() else { continue };
            if p.leader == Some(preferred) {
                continue;
            }
            let key = (name.clone(), i as i32);
            let live = image.brokers.get(&preferred).is_some_and(|b| !b.fenced && !b.shutting_down);
            if live && p.isr.contains(&preferred) && !image.reassignments.contains_key(&key) {
                out.push(key);
            }
        }
    }
    out
}

impl Controller {
    /// On the leader, every `every`: leadership back to preferred replicas
    /// ([`preferred_elections`]). Returns when `stop` completes.
    pub async fn run_leader_balance(self: Arc<Self>, every: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            if !self.is_leader() {
                continue;
            }
            let (mut moved, mut refused) = (0, 0);
            for (topic, partition) in preferred_elections(&self.state().image) {
                let elect = self.propose_local(Command::ElectPreferredLeader { topic: topic.clone(), partition });
                let outcome = tokio::select! {
                    _ = &mut stop => return,
                    outcome = elect => outcome,
                };
                match outcome {
                    Ok((Ok(_), _)) => moved += 1,
                    Ok((Err(e), _)) => {
                        refused += 1;
                        tracing::debug!(%topic, partition, error = %e, "preferred leader election refused");
                    }
                    Err(_) => break,
                }
            }
            if moved + refused > 0 {
                tracing::info!(moved, refused, "leadership back to preferred replicas");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::NodeId;
    use crate::records::{BrokerRecord, PartitionRecord, TopicRecord};

    fn broker(id: u64) -> BrokerRecord {
        BrokerRecord {
            id: NodeId(id),
            kafka_host: "h".into(),
            kafka_port: 9092,
            external: None,
            rpc_address: format!("h:{id}"),
            rack: None,
            epoch: id,
            fenced: false,
            shutting_down: false,
            live_since_index: 0,
        }
    }

    /// Three brokers; `partitions` as (replicas, leader), the ISR all replicas.
    fn image(partitions: &[(&[u64], u64)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.brokers.insert(NodeId(id), broker(id));
        }
        let partitions = partitions
            .iter()
            .map(|(r, leader)| PartitionRecord {
                replicas: r.iter().map(|id| NodeId(*id)).collect(),
                isr: r.iter().map(|id| NodeId(*id)).collect(),
                leader: Some(NodeId(*leader)),
                leader_epoch: 0,
                partition_epoch: 0,
            })
            .collect();
        image.topics.insert("t".into(), Arc::new(TopicRecord { id: uuid::Uuid::nil(), configs: Default::default(), partitions }));
        image
    }

    fn keys(partitions: &[i32]) -> Vec<(String, i32)> {
        partitions.iter().map(|p| ("t".to_string(), *p)).collect()
    }

    #[test]
    fn a_balanced_cluster_is_left_alone() {
        let image = image(&[(&[1, 2, 3], 1), (&[2, 3, 1], 2), (&[3, 1, 2], 3)]);
        assert!(preferred_elections(&image).is_empty());
    }

    #[test]
    fn a_returned_broker_gets_back_the_partitions_it_is_preferred_for() {
        let image = image(&[(&[1, 2, 3], 2), (&[2, 3, 1], 2), (&[3, 1, 2], 3), (&[1, 3, 2], 3)]);
        assert_eq!(preferred_elections(&image), keys(&[0, 3]));
    }

    #[test]
    fn one_partition_off_its_preferred_leader_moves_back() {
        // Kafka's KRaft controller moves any such partition, however few.
        let mut partitions: Vec<(&[u64], u64)> = vec![(&[1, 2, 3], 1); 19];
        partitions.push((&[1, 2, 3], 2));
        assert_eq!(preferred_elections(&image(&partitions)), keys(&[19]));
    }

    #[test]
    fn a_preferred_replica_that_is_fenced_out_of_the_isr_or_moving_keeps_its_partition_where_it_is() {
        let mut fenced = image(&[(&[1, 2, 3], 2)]);
        fenced.brokers.get_mut(&NodeId(1)).unwrap().fenced = true;
        assert!(preferred_elections(&fenced).is_empty());

        let mut leaving = image(&[(&[1, 2, 3], 2)]);
        leaving.brokers.get_mut(&NodeId(1)).unwrap().shutting_down = true;
        assert!(preferred_elections(&leaving).is_empty());

        let mut behind = image(&[(&[1, 2, 3], 2)]);
        Arc::make_mut(behind.topics.get_mut("t").unwrap()).partitions[0].isr = vec![NodeId(2), NodeId(3)];
        assert!(preferred_elections(&behind).is_empty());

        let mut moving = image(&[(&[1, 2, 3], 2)]);
        moving
            .reassignments
            .insert(("t".into(), 0), crate::records::Reassignment { target: vec![NodeId(2), NodeId(3)], original: vec![NodeId(1), NodeId(2), NodeId(3)] });
        assert!(preferred_elections(&moving).is_empty());
    }
}
