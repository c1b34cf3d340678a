//! Incremental fetch sessions (KIP-227). A consumer of many partitions
//! sends its whole partition list once (session epoch 0) and gets a
//! session id; after that it sends only the partitions whose fetch state
//! changed (and those to forget), and the answer holds only the partitions
//! with something new: records, an error, or a moved high watermark, last
//! stable offset or log start. The session keeps each partition's fetch
//! offset, limits and what the last answer said of it.
//!
//! Pure bookkeeping under one lock, no I/O: [`FetchSessions::resolve`]
//! turns a request into the partitions to read, the fetch handler reads
//! them, and [`FetchSessions::answer`] says which of them to send.
//!
//! The cache holds at most `slots` sessions (Kafka's
//! `max.incremental.fetch.session.cache.slots`); when it is full, a new
//! session takes the place of the least recently used one idle for two
//! minutes or more, or is not created (session id 0: the client goes on
//! with full requests). Session ids are random, and every partition a
//! session holds is authorized again at every fetch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::fetch_response::PartitionData;
use runnel_protocol::kafka_protocol::messages::{FetchRequest, TopicName};
use uuid::Uuid;

/// Kafka's default `max.incremental.fetch.session.cache.slots`.
pub const DEFAULT_SLOTS: usize = 1000;
/// A session idle this long may give its slot to a new one (Kafka's
/// `min.incremental.fetch.session.eviction.ms`).
const EVICTABLE_AFTER: Duration = Duration::from_secs(120);
/// Session epoch of a request without a session, or that closes one.
const FINAL_EPOCH: i32 = -1;
const INITIAL_EPOCH: i32 = 0;

/// What a fetch asks of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The topic's name: as sent up to Fetch v12, looked up from
    /// `topic_id` from v13 on (empty when no topic has that id).
    pub topic: TopicName,
    /// The topic's id as sent from Fetch v13 on (nil before).
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// A partition of a session: by topic id from Fetch v13 on, else by name
/// (the other part empty), so a topic recreated under the same name is
/// another topic to a v13 session, as in Kafka.
type Key = (Uuid, TopicName, i32);

fn key(topic_id: Uuid, topic: &TopicName, partition: i32) -> Key {
    if topic_id.is_nil() { (topic_id, topic.clone(), partition) } else { (topic_id, TopicName::default(), partition) }
}

impl Wanted {
    fn key(&self) -> Key {
        key(self.topic_id, &self.topic, self.partition)
    }
}

/// What the last answer of a session said of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    /// The order partitions are read in: those that last returned records
    /// go to the back, so a byte budget is shared over time.
    order: Vec<Key>,
    partitions: HashMap<Key, (Wanted, Option<Sent>)>,
    last_used: Instant,
}

/// How a request is answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Context {
    /// No session: every partition asked for is read and answered.
    Sessionless(Vec<Wanted>),
    /// A new session (id 0 when the cache had no room): every partition
    /// is read and answered.
    Full { session_id: i32, wanted: Vec<Wanted> },
    /// An existing session: every partition it holds is read; those with
    /// nothing new are left out of the answer.
    Incremental { session_id: i32, wanted: Vec<Wanted> },
}

impl Context {
    pub fn wanted(&self) -> &[Wanted] {
        match self {
            Context::Sessionless(w) | Context::Full { wanted: w, .. } | Context::Incremental { wanted: w, .. } => w,
        }
    }

    pub fn session_id(&self) -> i32 {
        match self {
            Context::Sessionless(_) => 0,
            Context::Full { session_id, .. } | Context::Incremental { session_id, .. } => *session_id,
        }
    }
}

pub struct FetchSessions {
    slots: usize,
    sessions: Mutex<HashMap<i32, Session>>,
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX { 1 } else { epoch + 1 }
}

fn requested(request: &FetchRequest) -> Vec<Wanted> {
    request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Wanted {
                topic: t.topic.clone(),
                topic_id: t.topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect()
}

impl FetchSessions {
    pub fn new(slots: usize) -> FetchSessions {
        FetchSessions { slots, sessions: Mutex::new(HashMap::new()) }
    }

    /// Sessions in the cache.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Turns a request into what to read: opens, continues or closes its
    /// session. An unknown session id or an epoch out of turn is the
    /// request's error, as Kafka answers them.
    pub fn resolve(&self, request: &FetchRequest, now: Instant) -> Result<Context, ResponseError> {
        let mut sessions = self.lock();
        let (id, epoch) = (request.session_id, request.session_epoch);
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            // A full request; a session id with it is a session the client closes.
            if id != 0 {
                sessions.remove(&id);
            }
            let wanted = requested(request);
            if epoch == FINAL_EPOCH || self.slots == 0 {
                return Ok(Context::Sessionless(wanted));
            }
            let Some(session_id) = self.make_room(&mut sessions, now) else { return Ok(Context::Full { session_id: 0, wanted }) };
            let mut session =
                Session { next_epoch: 1, order: Vec::with_capacity(wanted.len()), partitions: HashMap::with_capacity(wanted.len()), last_used: now };
            for w in &wanted {
                session.put(w.clone());
            }
            sessions.insert(session_id, session);
            return Ok(Context::Full { session_id, wanted });
        }
        let Some(session) = sessions.get_mut(&id) else { return Err(ResponseError::FetchSessionIdNotFound) };
        if epoch != session.next_epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.next_epoch = next_epoch(epoch);
        session.last_used = now;
        for w in requested(request) {
            session.put(w);
        }
        for forgotten in &request.forgotten_topics_data {
            for p in &forgotten.partitions {
                session.partitions.remove(&key(forgotten.topic_id, &forgotten.topic, *p));
            }
        }
        session.order.retain(|k| session.partitions.contains_key(k));
        let wanted = session.order.iter().map(|k| session.partitions[k].0.clone()).collect();
        Ok(Context::Incremental { session_id: id, wanted })
    }

    /// A free session id, after evicting the least recently used session
    /// idle past [`EVICTABLE_AFTER`] if the cache is full; `None` when full
    /// of sessions in use.
    fn make_room(&self, sessions: &mut HashMap<i32, Session>, now: Instant) -> Option<i32> {
        if sessions.len() >= self.slots {
            let (oldest, last_used) = sessions.iter().map(|(id, s)| (*id, s.last_used)).min_by_key(|(_, used)| *used)?;
            if now.saturating_duration_since(last_used) < EVICTABLE_AFTER {
                return None;
            }
            sessions.remove(&oldest);
        }
        loop {
            let id = rand::random::<i32>();
            if id > 0 && !sessions.contains_key(&id) {
                return Some(id);
            }
        }
    }

    /// Which partitions of a response to send (`data` is one entry per
    /// `context.wanted()`, in that order): all of them, except in an
    /// incremental answer, where a partition with no records, no error and
    /// the same offsets as last sent is left out. The session remembers
    /// what was sent and moves partitions that returned records to the back.
    pub fn answer(&self, context: &Context, data: Vec<PartitionData>) -> Vec<(Wanted, PartitionData)> {
        let (session_id, incremental) = match context {
            Context::Sessionless(_) => return context.wanted().iter().cloned().zip(data).collect(),
            Context::Full { session_id: 0, .. } => return context.wanted().iter().cloned().zip(data).collect(),
            Context::Full { session_id, .. } => (*session_id, false),
            Context::Incremental { session_id, .. } => (*session_id, true),
        };
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(&session_id) else {
            // Closed by a newer request meanwhile: answer as asked.
            return context.wanted().iter().cloned().zip(data).collect();
        };
        let mut out = Vec::with_capacity(data.len());
        let mut returned_records = Vec::new();
        for (w, d) in context.wanted().iter().zip(data) {
            let key = w.key();
            let Some((_, sent)) = session.partitions.get_mut(&key) else { continue };
            let now_sent = Sent { high_watermark: d.high_watermark, last_stable_offset: d.last_stable_offset, log_start_offset: d.log_start_offset };
            let has_records = d.records.as_ref().is_some_and(|r| !r.is_empty());
            let changed = has_records || d.error_code != 0 || *sent != Some(now_sent);
            if d.error_code == 0 {
                *sent = Some(now_sent);
            }
            if has_records {
                returned_records.push(key);
            }
            if changed || !incremental {
                out.push((w.clone(), d));
            }
        }
        if !returned_records.is_empty() {
            let moved: std::collections::HashSet<&Key> = returned_records.iter().collect();
            let (mut stay, back): (Vec<Key>, Vec<Key>) = session.order.drain(..).partition(|k| !moved.contains(k));
            stay.extend(back);
            session.order = stay;
        }
        out
    }
}

impl Session {
    /// Adds a partition or updates its fetch state, keeping its place.
    fn put(&mut self, w: Wanted) {
        let key = w.key();
        match self.partitions.get_mut(&key) {
            Some((wanted, _)) => *wanted = w,
            None => {
                self.order.push(key.clone());
                self.partitions.insert(key, (w, None));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use runnel_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use runnel_protocol::kafka_protocol::protocol::StrBytes;

    use super::*;

    fn name(t: &str) -> TopicName {
        TopicName(StrBytes::from_string(t.to_string()))
    }

    fn request(session_id: i32, epoch: i32, partitions: &[(&str, i32, i64)], forget: &[(&str, i32)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (t, p, offset) in partitions {
            let partition = FetchPartition::default().with_partition(*p).with_fetch_offset(*offset).with_partition_max_bytes(1 << 20);
            match topics.iter_mut().find(|x| x.topic == name(t)) {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(FetchTopic::default().with_topic(name(t)).with_partitions(vec![partition])),
            }
        }
        let forgotten = forget.iter().map(|(t, p)| ForgottenTopic::default().with_topic(name(t)).with_partitions(vec![*p])).collect();
        FetchRequest::default().with_session_id(session_id).with_session_epoch(epoch).with_topics(topics).with_forgotten_topics_data(forgotten)
    }

    fn data(hw: i64, records: usize) -> PartitionData {
        PartitionData::default()
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(0)
            .with_records(Some(bytes::Bytes::from(vec![0u8; records])))
    }

    fn keys(w: &[Wanted]) -> Vec<(String, i32, i64)> {
        w.iter().map(|w| (w.topic.0.to_string(), w.partition, w.fetch_offset)).collect()
    }

    fn answered(a: &[(Wanted, PartitionData)]) -> Vec<(String, i32)> {
        a.iter().map(|(w, _)| (w.topic.0.to_string(), w.partition)).collect()
    }

    fn open(cache: &FetchSessions, partitions: &[(&str, i32, i64)]) -> i32 {
        let ctx = cache.resolve(&request(0, 0, partitions, &[]), Instant::now()).unwrap();
        let Context::Full { session_id, .. } = ctx else { panic!("{ctx:?}") };
        assert!(session_id > 0);
        cache.answer(&ctx, partitions.iter().map(|_| data(10, 0)).collect());
        session_id
    }

    #[test]
    fn a_sessionless_request_reads_and_answers_what_it_asks() {
        let cache = FetchSessions::new(10);
        let ctx = cache.resolve(&request(0, -1, &[("a", 0, 5), ("b", 1, 7)], &[]), Instant::now()).unwrap();
        assert_eq!(ctx.session_id(), 0);
        assert_eq!(keys(ctx.wanted()), vec![("a".into(), 0, 5), ("b".into(), 1, 7)]);
        assert_eq!(cache.answer(&ctx, vec![data(5, 0), data(7, 0)]).len(), 2, "unchanged partitions are answered without a session");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_request_opens_a_session_that_answers_every_partition_once() {
        let cache = FetchSessions::new(10);
        let ctx = cache.resolve(&request(0, 0, &[("a", 0, 5), ("a", 1, 0)], &[]), Instant::now()).unwrap();
        let id = ctx.session_id();
        assert!(id > 0);
        assert_eq!(cache.answer(&ctx, vec![data(5, 0), data(0, 0)]).len(), 2, "a full answer holds every partition");
        assert_eq!(cache.len(), 1);
        // Epoch 1 with nothing to send: both partitions are read from the
        // session's state, neither is answered (nothing changed).
        let ctx = cache.resolve(&request(id, 1, &[], &[]), Instant::now()).unwrap();
        assert_eq!(keys(ctx.wanted()), vec![("a".into(), 0, 5), ("a".into(), 1, 0)]);
        assert!(cache.answer(&ctx, vec![data(5, 0), data(0, 0)]).is_empty());
    }

    #[test]
    fn an_incremental_answer_holds_only_what_changed() {
        let cache = FetchSessions::new(10);
        let id = open(&cache, &[("a", 0, 10), ("a", 1, 10), ("b", 0, 10)]);
        let ctx = cache.resolve(&request(id, 1, &[], &[]), Instant::now()).unwrap();
        let mut errored = data(-1, 0);
        errored.error_code = 6;
        // a-0 has records, a-1 a new high watermark, b-0 an error.
        let answer = cache.answer(&ctx, vec![data(12, 100), data(11, 0), errored]);
        assert_eq!(answered(&answer), vec![("a".to_string(), 0), ("a".to_string(), 1), ("b".to_string(), 0)]);
        // Next round: a-1's watermark is as sent; b-0 still fails and is answered again.
        let ctx = cache.resolve(&request(id, 2, &[("a", 0, 12)], &[]), Instant::now()).unwrap();
        let mut errored = data(-1, 0);
        errored.error_code = 6;
        let a1 = ctx.wanted().iter().position(|w| w.partition == 1 && w.topic == name("a")).unwrap();
        let mut round = vec![data(12, 0), data(12, 0), data(12, 0)];
        round[a1] = data(11, 0);
        let b0 = ctx.wanted().iter().position(|w| w.topic == name("b")).unwrap();
        round[b0] = errored;
        assert_eq!(answered(&cache.answer(&ctx, round)), vec![("b".to_string(), 0)]);
    }

    #[test]
    fn partitions_that_returned_records_are_read_last_next_time() {
        let cache = FetchSessions::new(10);
        let id = open(&cache, &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)]);
        let ctx = cache.resolve(&request(id, 1, &[], &[]), Instant::now()).unwrap();
        cache.answer(&ctx, vec![data(10, 50), data(10, 0), data(10, 0)]);
        let ctx = cache.resolve(&request(id, 2, &[("a", 0, 10)], &[]), Instant::now()).unwrap();
        assert_eq!(keys(ctx.wanted()), vec![("a".into(), 1, 0), ("a".into(), 2, 0), ("a".into(), 0, 10)]);
    }

    #[test]
    fn requests_update_add_and_forget_partitions() {
        let cache = FetchSessions::new(10);
        let id = open(&cache, &[("a", 0, 0), ("a", 1, 0)]);
        let ctx = cache.resolve(&request(id, 1, &[("a", 1, 40), ("c", 3, 2)], &[("a", 0)]), Instant::now()).unwrap();
        assert_eq!(keys(ctx.wanted()), vec![("a".into(), 1, 40), ("c".into(), 3, 2)]);
        // The added partition has never been answered: it is now, even with nothing new.
        let answer = cache.answer(&ctx, vec![data(10, 0), data(2, 0)]);
        assert_eq!(answered(&answer), vec![("c".to_string(), 3)]);
    }

    #[test]
    fn from_fetch_v13_a_session_holds_partitions_by_topic_id() {
        let cache = FetchSessions::new(10);
        let (a, gone, other_gone) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        // As the handler passes a v13 request on: names looked up by id,
        // empty for ids no topic has.
        let by_id = |session_id: i32, epoch: i32, partitions: &[(Uuid, &str, i32)], forget: &[(Uuid, i32)]| {
            let topics = partitions
                .iter()
                .map(|(id, n, p)| {
                    let partition = FetchPartition::default().with_partition(*p).with_partition_max_bytes(1 << 20);
                    FetchTopic::default().with_topic_id(*id).with_topic(name(n)).with_partitions(vec![partition])
                })
                .collect();
            let forgotten = forget.iter().map(|(id, p)| ForgottenTopic::default().with_topic_id(*id).with_partitions(vec![*p])).collect();
            FetchRequest::default().with_session_id(session_id).with_session_epoch(epoch).with_topics(topics).with_forgotten_topics_data(forgotten)
        };
        let ctx = cache.resolve(&by_id(0, 0, &[(a, "a", 0), (gone, "", 0), (other_gone, "", 0)], &[]), Instant::now()).unwrap();
        let id = ctx.session_id();
        assert_eq!(ctx.wanted().len(), 3, "two unknown topic ids are two partitions, not one");
        assert_eq!(ctx.wanted()[1].topic_id, gone);
        cache.answer(&ctx, vec![data(1, 0), data(-1, 0), data(-1, 0)]);
        // Forgotten by id alone: the request names no topic.
        let ctx = cache.resolve(&by_id(id, 1, &[], &[(gone, 0), (other_gone, 0)]), Instant::now()).unwrap();
        assert_eq!(ctx.wanted().iter().map(|w| w.topic_id).collect::<Vec<_>>(), vec![a]);
    }

    #[test]
    fn unknown_sessions_and_epochs_out_of_turn_are_refused() {
        let cache = FetchSessions::new(10);
        let id = open(&cache, &[("a", 0, 0)]);
        assert_eq!(cache.resolve(&request(id.wrapping_add(1), 1, &[], &[]), Instant::now()), Err(ResponseError::FetchSessionIdNotFound));
        assert_eq!(cache.resolve(&request(id, 2, &[], &[]), Instant::now()), Err(ResponseError::InvalidFetchSessionEpoch));
        assert!(cache.resolve(&request(id, 1, &[], &[]), Instant::now()).is_ok());
        // A retry of the same epoch is out of turn: the client starts over.
        assert_eq!(cache.resolve(&request(id, 1, &[], &[]), Instant::now()), Err(ResponseError::InvalidFetchSessionEpoch));
        // Epoch -1 with the id closes the session.
        assert_eq!(cache.resolve(&request(id, -1, &[("a", 0, 0)], &[]), Instant::now()).unwrap().session_id(), 0);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.resolve(&request(id, 2, &[], &[]), Instant::now()), Err(ResponseError::FetchSessionIdNotFound));
    }

    #[test]
    fn a_full_cache_evicts_only_sessions_idle_for_two_minutes() {
        let cache = FetchSessions::new(2);
        let start = Instant::now();
        let first = cache.resolve(&request(0, 0, &[("a", 0, 0)], &[]), start).unwrap().session_id();
        let second = cache.resolve(&request(0, 0, &[("a", 0, 0)], &[]), start + Duration::from_secs(60)).unwrap().session_id();
        // Full, and the oldest was used 100 s ago: no session for the third.
        assert_eq!(cache.resolve(&request(0, 0, &[("a", 0, 0)], &[]), start + Duration::from_secs(100)).unwrap().session_id(), 0);
        let third = cache.resolve(&request(0, 0, &[("a", 0, 0)], &[]), start + Duration::from_secs(130)).unwrap().session_id();
        assert!(third > 0 && cache.len() == 2);
        assert_eq!(cache.resolve(&request(first, 1, &[], &[]), start + Duration::from_secs(131)), Err(ResponseError::FetchSessionIdNotFound));
        assert!(cache.resolve(&request(second, 1, &[], &[]), start + Duration::from_secs(131)).is_ok());
        // No slots: no sessions at all.
        let none = FetchSessions::new(0);
        assert_eq!(none.resolve(&request(0, 0, &[("a", 0, 0)], &[]), start).unwrap(), Context::Sessionless(keys_to_wanted(&[("a", 0, 0)])));
    }

    fn keys_to_wanted(k: &[(&str, i32, i64)]) -> Vec<Wanted> {
        k.iter()
            .map(|(t, p, o)| Wanted {
                topic: name(t),
                topic_id: Uuid::nil(),
                partition: *p,
                fetch_offset: *o,
                partition_max_bytes: 1 << 20,
                current_leader_epoch: -1,
            })
            .collect()
    }
}
