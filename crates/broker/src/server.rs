//! The Kafka listener: accepts connections and runs each one as a reader task
//! (frames in, requests dispatched in arrival order) and a writer loop
//! (responses out, in request order, as Kafka clients require).
//!
//! Limits: `connections_max` connections (more are closed at accept),
//! `inflight_requests_max` requests read ahead of their responses per
//! connection, `frame_bytes_max` bytes per request, `queued_request_bytes_max`
//! bytes of requests read or handled node-wide ([`RequestMemory`]: a
//! request's bytes are reserved before its body is read, so a connection
//! whose next request does not fit stops being read and TCP pushes back on
//! its client), and `connections_max_idle` without a byte from the client.
//! Listeners whose protocol is SSL or SASL_SSL run TLS first ([`crate::tls`],
//! the handshake bounded in time); SASL ones authenticate before anything
//! else ([`crate::sasl`]). A frame that breaks the protocol (bad length, unknown API, unsupported
//! version, undecodable body) closes its connection and nothing else.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use runnel_protocol::frame::{LENGTH_PREFIX_BYTES, check_frame_len};
use runnel_protocol::request::encode_api_versions_fallback;
use runnel_protocol::{Decoded, decode_request, encode_response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::api::{self, Client, PendingResponse};
use crate::broker::Broker;
use crate::sasl::Step;

/// Requests up to this size draw on a pool of their own.
const SMALL_REQUEST_BYTES: usize = 1024 * 1024;

/// The node-wide budget of request bytes being read or handled. Large
/// requests and small ones (up to [`SMALL_REQUEST_BYTES`]) have separate
/// pools, the small one a quarter of the large: clients that send the
/// lengths of huge requests and then stall hold the large pool (until their
/// idle timeout), and ordinary produce and fetch requests keep flowing.
pub struct RequestMemory {
    large: Arc<Semaphore>,
    small: Arc<Semaphore>,
    large_max: usize,
    small_max: usize,
}

impl RequestMemory {
    pub fn new(bytes_max: usize) -> RequestMemory {
        let small_max = (bytes_max / 4).max(SMALL_REQUEST_BYTES);
        RequestMemory { large: Arc::new(Semaphore::new(bytes_max)), small: Arc::new(Semaphore::new(small_max)), large_max: bytes_max, small_max }
    }

    /// Waits until `len` bytes fit, and holds them until the permit drops. A
    /// request larger than its whole pool takes all of it.
    async fn reserve(&self, len: usize) -> OwnedSemaphorePermit {
        let (pool, max) = if len <= SMALL_REQUEST_BYTES { (&self.small, self.small_max) } else { (&self.large, self.large_max) };
        let n = u32::try_from(len.clamp(1, max)).unwrap_or(u32::MAX);
        pool.clone().acquire_many_owned(n).await.expect("the request memory pools are never closed")
    }

    /// Bytes reserved now, in both pools.
    pub fn in_use(&self) -> usize {
        (self.large_max - self.large.available_permits()) + (self.small_max - self.small.available_permits())
    }
}

/// Accepts connections until shutdown, then waits for open connections to
/// finish the requests they have read.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, external: bool) {
    let permits = Arc::new(Semaphore::new(broker.config.connections_max));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, limit = broker.config.connections_max, "connection limit reached; closing new connection");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                connections.spawn(
                    async move {
                        let _permit = permit;
                        broker.metrics.connection(true);
                        let client = Client { peer, external };
                        if broker.config.security_protocol(external).uses_tls() {
                            if let Some((tls, principal)) = handshake(&broker, stream, peer).await {
                                let (rd, wr) = tokio::io::split(tls);
                                connection(broker.clone(), rd, wr, client, principal).await;
                            }
                        } else {
                            let (rd, wr) = stream.into_split();
                            connection(broker.clone(), rd, wr, client, None).await;
                        }
                        broker.metrics.connection(false);
                    }
                    // Every line logged for this connection (SASL failures,
                    // authorization denials, ...) names the client's address.
                    .instrument(tracing::info_span!("client", %peer)),
                );
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// The TLS handshake of a connection to an SSL or SASL_SSL listener, bounded
/// by the idle timeout, with the principal of the client's certificate if it
/// sent one (`User:CN=...`); `None` closes the connection.
async fn handshake(broker: &Broker, stream: TcpStream, peer: std::net::SocketAddr) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Option<String>)> {
    let tls = broker.config.tls.as_ref().expect("a TLS listener has a certificate (checked at start-up)");
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(broker.config.connections_max_idle.min(TLS_HANDSHAKE_TIMEOUT), tls.acceptor().accept(stream)) => accepted,
        _ = broker.shutdown.cancelled() => return None,
    };
    match accepted {
        Ok(Ok(stream)) => {
            let principal = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(crate::tls::certificate_principal);
            if let Some(principal) = &principal {
                tracing::debug!(%peer, %principal, "client certificate accepted");
            }
            Some((stream, principal.map(|p| format!("User:{p}"))))
        }
        // A client retrying with a certificate that will never pass fails
        // many times a second: the failures are counted, one a second logged.
        Ok(Err(e)) => {
            if crate::acl::once_a_second(&TLS_FAILURE_LOGGED) {
                tracing::info!(%peer, error = %e, "TLS handshake failed; closing connection (further failures this second are counted, not logged)");
            }
            broker.metrics.request_refused("tls");
            None
        }
        Err(_) => {
            if crate::acl::once_a_second(&TLS_FAILURE_LOGGED) {
                tracing::info!(%peer, "TLS handshake timed out; closing connection (further failures this second are counted, not logged)");
            }
            broker.metrics.request_refused("tls");
            None
        }
    }
}

static TLS_FAILURE_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A client that has not finished its TLS handshake by then is closed.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn connection<R, W>(broker: Arc<Broker>, rd: R, mut wr: W, client: Client, tls_principal: Option<String>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let peer = client.peer;
    let inflight_max = broker.config.inflight_requests_max;
    let (tx, mut rx) = mpsc::channel::<PendingResponse>(inflight_max);
    let reader = tokio::spawn(read_requests(broker, rd, tx, client, tls_principal).in_current_span());
    let mut inflight: FuturesOrdered<PendingResponse> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            Some(done) = inflight.next(), if !inflight.is_empty() => match done {
                Ok(Some(frame)) => {
                    if let Err(e) = wr.write_all(&frame).await {
                        tracing::debug!(%peer, error = %e, "write failed; closing connection");
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(%peer, error = %e, "could not build a response; closing connection");
                    break;
                }
            },
            next = rx.recv(), if reading && inflight.len() < inflight_max => match next {
                Some(pending) => inflight.push_back(pending),
                None => reading = false,
            },
            else => break,
        }
    }
    reader.abort();
    let _ = wr.shutdown().await;
}

/// Reads frames, decodes them and dispatches each in arrival order; the
/// dispatch runs a request's ordered part (e.g. the append of a produce) before
/// the next frame is read. Each request acts as the connection's principal
/// at the time: the SASL user once authenticated, else the client
/// certificate's subject, else `User:ANONYMOUS`.
async fn read_requests<R: AsyncRead + Unpin>(broker: Arc<Broker>, rd: R, tx: mpsc::Sender<PendingResponse>, client: Client, tls_principal: Option<String>) {
    let peer = client.peer;
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut sasl = match (broker.config.security_protocol(client.external).uses_sasl(), &broker.config.sasl) {
        (true, Some(config)) => Some(crate::sasl::SaslSession::new(config.clone(), Some(broker.metadata.clone()))),
        _ => None,
    };
    let frame_max = broker.config.frame_bytes_max;
    let idle = broker.config.connections_max_idle;
    let unauthenticated: Arc<str> = Arc::from(tls_principal.as_deref().unwrap_or(crate::acl::ANONYMOUS));
    let mut principal = unauthenticated.clone();
    loop {
        let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
        tokio::select! {
            read = tokio::time::timeout(idle, rd.read_exact(&mut prefix)) => match read {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        tracing::debug!(%peer, error = %e, "read failed");
                    }
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, idle_ms = idle.as_millis() as u64, "closing an idle connection");
                    return;
                }
            },
            _ = broker.shutdown.cancelled() => return,
        }
        let len = match check_frame_len(prefix, frame_max) {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                broker.metrics.request_refused("frame");
                return;
            }
        };
        // Nothing of the body is read (or allocated) until its bytes fit.
        let permit = tokio::select! {
            permit = broker.request_memory.reserve(len) => permit,
            _ = broker.shutdown.cancelled() => return,
        };
        // Read into the buffer's spare capacity: no zeroing of what the
        // socket is about to overwrite.
        let mut body = Vec::with_capacity(len);
        while body.len() < len {
            let mut rest = (&mut rd).take((len - body.len()) as u64);
            match tokio::time::timeout(idle, rest.read_buf(&mut body)).await {
                Ok(Ok(0)) => {
                    tracing::debug!(%peer, "connection closed mid-frame");
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection failed mid-frame");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, read = body.len(), len, "closing a connection idle in the middle of a request");
                    return;
                }
            }
        }
        let api = api::name_of_frame(&body);
        let pending: PendingResponse = match decode_request(Bytes::from(body)) {
            Ok(Decoded::Request(request)) => match sasl.as_mut().map(|s| s.on_request(&request.body, request.version, std::time::Instant::now())) {
                None | Some(Step::Pass) => {
                    let user = sasl.as_ref().and_then(|s| s.principal());
                    let current = match user {
                        Some(u) => principal.strip_prefix("User:") == Some(u),
                        None => Arc::ptr_eq(&principal, &unauthenticated),
                    };
                    if !current {
                        principal = user.map_or_else(|| unauthenticated.clone(), |u| Arc::from(format!("User:{u}")));
                    }
                    api::dispatch(&broker, *request, client, &principal)
                }
                Some(Step::Reply { response, delay, close }) => {
                    let frame = encode_response(request.api_key, request.version, request.header.correlation_id, &response);
                    let pending: PendingResponse = Box::pin(async move {
                        tokio::time::sleep(delay).await;
                        frame.map(Some).map_err(api::ResponseFailure::from)
                    });
                    if close {
                        // A failed authentication: the answer goes out,
                        // then the connection closes.
                        broker.metrics.request_refused("sasl");
                        let _ = tx.send(pending).await;
                        return;
                    }
                    pending
                }
                Some(Step::Close(why)) => {
                    tracing::info!(%peer, reason = %why, "closing a connection that is not authenticated");
                    broker.metrics.request_refused("sasl");
                    return;
                }
            },
            Ok(Decoded::ApiVersionsFallback { correlation_id }) => {
                let frame = encode_api_versions_fallback(correlation_id);
                Box::pin(async move { Ok(Some(frame)) })
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                broker.metrics.request_refused(api);
                return;
            }
        };
        // The request's bytes stay reserved until its response is built.
        let pending: PendingResponse = Box::pin(async move {
            let response = pending.await;
            drop(permit);
            response
        });
        if tx.send(pending).await.is_err() {
            return;
        }
    }
}
