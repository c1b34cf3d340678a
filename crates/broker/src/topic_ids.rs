//! Topic ids to names, for the requests that name topics by id (Fetch and
//! Produce v13, KIP-516). Built from the metadata image's topics and kept
//! until the topics change: an image that only moved offsets or groups
//! shares its topics map with the last one (`Shared::same`), so the fetch
//! path does not walk every topic per request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use runnel_controller::Metadata;
use runnel_controller::records::TopicRecord;
use runnel_controller::shared::Shared;
use runnel_protocol::kafka_protocol::messages::TopicName;
use uuid::Uuid;

type Topics = Shared<BTreeMap<String, Arc<TopicRecord>>>;
/// Topic names by id.
type Names = Arc<HashMap<Uuid, TopicName>>;

#[derive(Default)]
pub struct TopicIds {
    /// The topics the map was built from, and the map.
    built: Mutex<Option<(Topics, Names)>>,
}

impl TopicIds {
    /// Every topic's name by its id, as the metadata has them now.
    pub fn names(&self, metadata: &Metadata) -> Names {
        let topics = metadata.state().image.topics.clone();
        self.names_of(&topics)
    }

    fn names_of(&self, topics: &Topics) -> Names {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((from, names)) = built.as_ref()
            && Shared::same(from, topics)
        {
            return names.clone();
        }
        let names: Names = Arc::new(topics.iter().map(|(name, t)| (t.id, TopicName(crate::api::str_bytes(name.as_str())))).collect());
        *built = Some((topics.clone(), names.clone()));
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(id: u128) -> Arc<TopicRecord> {
        Arc::new(TopicRecord { id: Uuid::from_u128(id), configs: BTreeMap::new(), partitions: vec![] })
    }

    #[test]
    fn names_are_rebuilt_only_when_the_topics_change() {
        let ids = TopicIds::default();
        let topics: Topics = BTreeMap::from([("a".to_string(), topic(1)), ("b".to_string(), topic(2))]).into();
        let first = ids.names_of(&topics);
        assert_eq!(first.get(&Uuid::from_u128(2)).map(|n| n.0.to_string()), Some("b".to_string()));
        assert_eq!(first.get(&Uuid::from_u128(3)), None);
        // The same topics (an image that changed something else): the same map.
        assert!(Arc::ptr_eq(&first, &ids.names_of(&topics.clone())));
        // A topic created: a new map that has it.
        let mut more = topics.clone();
        more.insert("c".to_string(), topic(3));
        let second = ids.names_of(&more);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.get(&Uuid::from_u128(3)).map(|n| n.0.to_string()), Some("c".to_string()));
    }
}
