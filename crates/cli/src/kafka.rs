//! The Kafka client behind `runnelctl produce` and `runnelctl consume`: one
//! connection per broker, requests answered in order, partition leaders from
//! Metadata, refreshed when a broker says it no longer leads. It speaks the
//! same wire protocol as every other client, so it works against any node.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, FindCoordinatorRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestHeader, RequestKind,
    ResponseHeader, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sasl::Credentials;

/// How a connection secures itself: TLS (SSL and SASL_SSL listeners) and
/// SASL (SASL_PLAINTEXT and SASL_SSL ones).
#[derive(Default)]
pub struct Security {
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    pub sasl: Option<Credentials>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Versions this client sends; every one is in Runnel's supported range
/// (docs/compatibility.md) and in Kafka 2.x and later.
const METADATA_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 9;
const LIST_OFFSETS_VERSION: i16 = 7;
const FETCH_VERSION: i16 = 12;
/// The largest response frame accepted (a fetch asks for at most 8 MiB).
const MAX_FRAME: usize = 64 << 20;

/// How often, and how far apart, a request whose partition leader moved is
/// sent again after looking the leader up.
const LEADER_RETRIES: u32 = 30;
const LEADER_RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// The partition's leader moved or is being elected: ask again.
fn leadership_moved(e: ResponseError) -> bool {
    matches!(e, ResponseError::NotLeaderOrFollower | ResponseError::LeaderNotAvailable | ResponseError::FencedLeaderEpoch | ResponseError::UnknownLeaderEpoch)
}

/// ListOffsets' special timestamps.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

struct Conn {
    stream: Box<dyn Stream>,
    correlation_id: i32,
}

impl Conn {
    async fn connect(addr: &str, timeout: Duration, security: &Security) -> Result<Conn> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("cannot reach the Kafka listener {addr}: timed out"))?
            .with_context(|| format!("cannot reach the Kafka listener {addr}"))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &security.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host).trim_start_matches('[').trim_end_matches(']');
                let name = rustls_pki_types::ServerName::try_from(host.to_string()).with_context(|| format!("{host:?} is not a TLS server name"))?;
                let tls = tokio::time::timeout(timeout, tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp))
                    .await
                    .map_err(|_| anyhow!("TLS handshake with {addr}: timed out"))?
                    .with_context(|| format!("TLS handshake with {addr}"))?;
                Box::new(tls)
            }
        };
        let mut conn = Conn { stream, correlation_id: 0 };
        if let Some(auth) = &security.sasl {
            tokio::time::timeout(timeout, conn.authenticate(auth))
                .await
                .map_err(|_| anyhow!("no answer from {addr} while authenticating"))?
                .with_context(|| format!("SASL/{} authentication as {:?} at {addr}", auth.mechanism, auth.username))?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1, then SaslAuthenticate frames until the mechanism is done.
    async fn authenticate(&mut self, auth: &Credentials) -> Result<()> {
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(auth.mechanism.to_ascii_uppercase()));
        let ResponseKind::SaslHandshake(r) = self.call(ApiKey::SaslHandshake, 1, RequestKind::SaslHandshake(handshake)).await? else {
            bail!("a SaslHandshake request was answered with another response");
        };
        if let Some(e) = ResponseError::try_from_code(r.error_code) {
            let offered: Vec<String> = r.mechanisms.iter().map(ToString::to_string).collect();
            bail!("{e} (the listener offers {})", if offered.is_empty() { "no SASL".into() } else { offered.join(", ") });
        }
        let (mut exchange, mut message) = auth.start()?;
        loop {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
            let ResponseKind::SaslAuthenticate(r) = self.call(ApiKey::SaslAuthenticate, 1, RequestKind::SaslAuthenticate(request)).await? else {
                bail!("a SaslAuthenticate request was answered with another response");
            };
            if let Some(e) = ResponseError::try_from_code(r.error_code) {
                bail!("{}", r.error_message.map_or_else(|| e.to_string(), |m| m.to_string()));
            }
            match exchange.next(&r.auth_bytes)? {
                Some(next) => message = next,
                None => return Ok(()),
            }
        }
    }

    /// Writes one request frame.
    async fn send(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> Result<()> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("runnelctl")))
            .encode(&mut buf, api_key.request_header_version(version))?;
        body.encode(&mut buf, version)?;
        let mut frame = Vec::with_capacity(4 + buf.len());
        frame.extend_from_slice(&(buf.len() as i32).to_be_bytes());
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn call(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> Result<ResponseKind> {
        self.send(api_key, version, body).await?;
        let len = self.stream.read_i32().await? as usize;
        if len > MAX_FRAME {
            bail!("a {len}-byte response frame is larger than {MAX_FRAME} bytes");
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))?;
        if header.correlation_id != self.correlation_id {
            bail!("response {} to request {}", header.correlation_id, self.correlation_id);
        }
        ResponseKind::decode(api_key, &mut body, version)
    }
}

/// A partition as Metadata describes it.
#[derive(Clone, Debug)]
pub struct PartitionInfo {
    pub index: i32,
    pub leader: i32,
}

/// A record read from a partition.
pub struct Fetched {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// What a Fetch returned for one partition.
pub struct FetchedPartition {
    pub partition: i32,
    pub error: Option<ResponseError>,
    pub records: Vec<Fetched>,
    /// One past the last offset in what came back (control records
    /// included), where the next fetch starts; `None` if nothing came.
    pub next_offset: Option<i64>,
}

/// A record to write.
#[derive(Debug)]
pub struct Outgoing {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

pub struct KafkaClient {
    bootstrap: Vec<String>,
    timeout: Duration,
    /// Connections by broker id; -1 is the bootstrap connection.
    conns: HashMap<i32, Conn>,
    /// Kafka addresses by broker id, from the last Metadata answer.
    brokers: HashMap<i32, String>,
    security: Security,
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

impl KafkaClient {
    pub fn new(bootstrap: Vec<String>, timeout: Duration, security: Security) -> KafkaClient {
        KafkaClient { bootstrap, timeout, conns: HashMap::new(), brokers: HashMap::new(), security }
    }

    /// A connection to broker `node` (-1: any bootstrap address that answers).
    async fn conn(&mut self, node: i32) -> Result<&mut Conn> {
        if !self.conns.contains_key(&node) {
            let conn = if node < 0 {
                let mut last = None;
                let mut found = None;
                for addr in &self.bootstrap {
                    match Conn::connect(addr, self.timeout, &self.security).await {
                        Ok(c) => {
                            found = Some(c);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                found.ok_or_else(|| last.unwrap_or_else(|| anyhow!("no Kafka address to bootstrap from")))?
            } else {
                let addr = self.brokers.get(&node).with_context(|| format!("broker {node} is not in the cluster's metadata"))?.clone();
                Conn::connect(&addr, self.timeout, &self.security).await?
            };
            self.conns.insert(node, conn);
        }
        Ok(self.conns.get_mut(&node).expect("inserted above"))
    }

    /// Sends a request to broker `node`, bounded by the timeout; a failed
    /// connection is dropped so the next call connects again.
    async fn call(&mut self, node: i32, api_key: ApiKey, version: i16, body: RequestKind) -> Result<ResponseKind> {
        let timeout = self.timeout;
        let result = async {
            let conn = self.conn(node).await?;
            tokio::time::timeout(timeout, conn.call(api_key, version, body)).await.map_err(|_| anyhow!("no answer within {timeout:?}"))?
        }
        .await;
        if result.is_err() {
            self.conns.remove(&node);
        }
        result.with_context(|| format!("{api_key:?} request to {}", self.describe(node)))
    }

    /// Sends an admin request (CreateAcls and the like) to any broker.
    pub async fn admin(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> Result<ResponseKind> {
        self.call(-1, api_key, version, body).await
    }

    /// The coordinator of `key` (`key_type` 0 for a group, 1 for a
    /// transactional id), as FindCoordinator names it; remembers its address.
    pub async fn coordinator(&mut self, key_type: i8, key: &str) -> Result<i32> {
        let request = FindCoordinatorRequest::default().with_key_type(key_type).with_key(StrBytes::from_string(key.to_string()));
        let ResponseKind::FindCoordinator(r) = self.call(-1, ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(request)).await? else {
            bail!("a FindCoordinator request was answered with another response");
        };
        if let Some(e) = ResponseError::try_from_code(r.error_code) {
            bail!("no coordinator for {key:?}: {e} {}", r.error_message.as_deref().unwrap_or_default());
        }
        self.brokers.insert(r.node_id.0, format!("{}:{}", r.host.as_str(), r.port));
        Ok(r.node_id.0)
    }

    /// The brokers' ids, from a Metadata request for no topic; remembers
    /// their addresses for [`Self::call_node`].
    pub async fn broker_ids(&mut self) -> Result<Vec<i32>> {
        let request = MetadataRequest::default().with_topics(Some(Vec::new())).with_allow_auto_topic_creation(false);
        let ResponseKind::Metadata(response) = self.call(-1, ApiKey::Metadata, METADATA_VERSION, RequestKind::Metadata(request)).await? else {
            bail!("a Metadata request was answered with another response");
        };
        self.brokers = response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
        Ok(self.brokers.keys().copied().collect())
    }

    /// Sends a request to broker `node` (one [`Self::coordinator`] or
    /// [`Self::broker_ids`] named).
    pub async fn call_node(&mut self, node: i32, api_key: ApiKey, version: i16, body: RequestKind) -> Result<ResponseKind> {
        self.call(node, api_key, version, body).await
    }

    fn describe(&self, node: i32) -> String {
        match self.brokers.get(&node) {
            Some(addr) => format!("broker {node} ({addr})"),
            None => self.bootstrap.join(","),
        }
    }

    /// The topic's partitions and their leaders; refreshes the broker addresses.
    pub async fn partitions(&mut self, topic: &str) -> Result<Vec<PartitionInfo>> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
            .with_allow_auto_topic_creation(false);
        let ResponseKind::Metadata(response) = self.call(-1, ApiKey::Metadata, METADATA_VERSION, RequestKind::Metadata(request)).await? else {
            bail!("a Metadata request was answered with another response");
        };
        self.brokers = response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
        let t = response.topics.into_iter().next().context("the Metadata response names no topic")?;
        if let Some(e) = ResponseError::try_from_code(t.error_code) {
            if e == ResponseError::UnknownTopicOrPartition {
                bail!("topic {topic:?} does not exist");
            }
            bail!("topic {topic:?}: {e}");
        }
        let mut partitions: Vec<PartitionInfo> = t.partitions.iter().map(|p| PartitionInfo { index: p.partition_index, leader: p.leader_id.0 }).collect();
        partitions.sort_by_key(|p| p.index);
        Ok(partitions)
    }

    /// Writes `records` to one partition as one batch; the offset of the
    /// first, or the broker's refusal with the message it gave.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: &PartitionInfo,
        records: &[Outgoing],
        acks: i16,
    ) -> Result<Result<i64, (ResponseError, Option<String>)>> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let batch: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.iter().map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone())).collect(),
            })
            .collect();
        let mut encoded = BytesMut::new();
        RecordBatchEncoder::encode(&mut encoded, &batch, &RecordEncodeOptions { version: 2, compression: Compression::None })?;
        let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default().with_index(partition.index).with_records(Some(encoded.freeze()))]),
        ]);
        if acks == 0 {
            // No response comes; the request is only written.
            self.conn(partition.leader).await?.send(ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(request)).await?;
            return Ok(Ok(-1));
        }
        let ResponseKind::Produce(response) = self.call(partition.leader, ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(request)).await? else {
            bail!("a Produce request was answered with another response");
        };
        let p = response.responses.first().and_then(|t| t.partition_responses.first()).context("the Produce response names no partition")?;
        Ok(match ResponseError::try_from_code(p.error_code) {
            None => Ok(p.base_offset),
            Some(e) => Err((e, p.error_message.as_ref().map(|m| m.to_string()).filter(|m| !m.is_empty()))),
        })
    }

    /// ListOffsets for every partition of `partitions` at `timestamp`
    /// (EARLIEST, LATEST, or milliseconds since the epoch), asked of each
    /// partition's leader; -1 where no record is at or after the time. A
    /// leader that moved (an election, a broker stopping) is looked up
    /// again and asked again, for a few seconds, as Kafka clients do.
    pub async fn offsets(&mut self, topic: &str, partitions: &[PartitionInfo], timestamp: i64) -> Result<HashMap<i32, i64>> {
        let mut current = partitions.to_vec();
        let mut attempts = 0;
        loop {
            match self.offsets_once(topic, &current, timestamp).await? {
                Ok(out) => return Ok(out),
                Err((_, e)) if leadership_moved(e) && attempts < LEADER_RETRIES => {
                    attempts += 1;
                    tokio::time::sleep(LEADER_RETRY_BACKOFF).await;
                    let fresh = self.partitions(topic).await?;
                    current = partitions.iter().filter_map(|p| fresh.iter().find(|f| f.index == p.index).cloned()).collect();
                }
                Err((partition, e)) => bail!("offsets of {topic}-{partition}: {e}"),
            }
        }
    }

    /// One pass of [`KafkaClient::offsets`]: the offsets, or the first
    /// partition's error.
    async fn offsets_once(&mut self, topic: &str, partitions: &[PartitionInfo], timestamp: i64) -> Result<Result<HashMap<i32, i64>, (i32, ResponseError)>> {
        let mut by_leader: HashMap<i32, Vec<&PartitionInfo>> = HashMap::new();
        for p in partitions {
            by_leader.entry(p.leader).or_default().push(p);
        }
        let mut out = HashMap::new();
        for (leader, ps) in by_leader {
            if leader < 0 {
                return Ok(Err((ps[0].index, ResponseError::LeaderNotAvailable)));
            }
            let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(1).with_topics(vec![
                ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(
                    ps.iter()
                        .map(|p| ListOffsetsPartition::default().with_partition_index(p.index).with_current_leader_epoch(-1).with_timestamp(timestamp))
                        .collect(),
                ),
            ]);
            let ResponseKind::ListOffsets(response) = self.call(leader, ApiKey::ListOffsets, LIST_OFFSETS_VERSION, RequestKind::ListOffsets(request)).await?
            else {
                bail!("a ListOffsets request was answered with another response");
            };
            for t in response.topics {
                for p in t.partitions {
                    if let Some(e) = ResponseError::try_from_code(p.error_code) {
                        return Ok(Err((p.partition_index, e)));
                    }
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        Ok(Ok(out))
    }

    /// One Fetch from `leader` for the given partitions at their positions,
    /// waiting up to `max_wait` for data.
    pub async fn fetch(&mut self, leader: i32, topic: &str, positions: &[(i32, i64)], max_wait: Duration) -> Result<Vec<FetchedPartition>> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(8 << 20)
            .with_isolation_level(1)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default().with_topic(topic_name(topic)).with_partitions(
                    positions
                        .iter()
                        .map(|&(p, offset)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(offset)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                ),
            ]);
        let ResponseKind::Fetch(response) = self.call(leader, ApiKey::Fetch, FETCH_VERSION, RequestKind::Fetch(request)).await? else {
            bail!("a Fetch request was answered with another response");
        };
        decode_fetch(response, positions)
    }
}

fn decode_fetch(response: FetchResponse, positions: &[(i32, i64)]) -> Result<Vec<FetchedPartition>> {
    if let Some(e) = ResponseError::try_from_code(response.error_code) {
        bail!("fetch: {e}");
    }
    let mut out = Vec::new();
    for t in response.responses {
        for p in t.partitions {
            let from = positions.iter().find(|(i, _)| *i == p.partition_index).map_or(0, |(_, o)| *o);
            let mut records = Vec::new();
            let mut next_offset = None;
            if let Some(mut bytes) = p.records {
                while bytes.has_remaining() {
                    // A fetch may end in the middle of a batch; what is cut off
                    // comes again in the next fetch.
                    if bytes.remaining() < 12 {
                        break;
                    }
                    let batch_len = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
                    if bytes.remaining() < 12 + batch_len {
                        break;
                    }
                    let mut batch = bytes.split_to(12 + batch_len);
                    // The batch's last offset, which a compacted log's batch
                    // keeps though its last records may be gone.
                    if batch.len() >= 27 {
                        let base = i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"));
                        let last_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
                        next_offset = next_offset.max(Some(base + i64::from(last_delta) + 1));
                    }
                    let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| anyhow!("a batch of partition {} does not decode: {e}", p.partition_index))?;
                    for r in set.records {
                        next_offset = next_offset.max(Some(r.offset + 1));
                        if r.control || r.offset < from {
                            continue;
                        }
                        records.push(Fetched {
                            partition: p.partition_index,
                            offset: r.offset,
                            timestamp: r.timestamp,
                            key: r.key,
                            value: r.value,
                            headers: r.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                        });
                    }
                }
            }
            out.push(FetchedPartition { partition: p.partition_index, error: ResponseError::try_from_code(p.error_code), records, next_offset });
        }
    }
    Ok(out)
}

/// Kafka's default partitioner for keyed records (the Java client's and
/// kafka-python's): murmur2 of the key, made positive, modulo the count.
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)) as i32
}

fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values of org.apache.kafka.common.utils.Utils.murmur2, which
        // kafka-python's tests also pin.
        assert_eq!(murmur2(b""), 275_646_681);
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58_897_971);
        assert_eq!(murmur2(b"abc"), 479_470_107);
        // kafka-python's pinned partitions for 1,000 partitions.
        for (key, partition) in [(&b""[..], 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)] {
            assert_eq!(partition_for_key(key, 1000), partition, "key {key:?}");
        }
    }

    #[test]
    fn keys_map_to_partitions_in_range() {
        for key in [&b"a"[..], b"order-17", b""] {
            let p = partition_for_key(key, 6);
            assert!((0..6).contains(&p));
            assert_eq!(p, partition_for_key(key, 6));
        }
    }
}
