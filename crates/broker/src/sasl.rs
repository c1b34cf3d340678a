//! SASL authentication on Kafka listeners whose security protocol is
//! SASL_PLAINTEXT or SASL_SSL (inside TLS, see [`crate::tls`]):
//! SaslHandshake (v1) picks a mechanism, then SaslAuthenticate (v0-2)
//! frames carry its messages (KIP-152). Mechanisms: PLAIN (RFC 4616)
//! and SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677; no channel
//! binding). Until a connection has authenticated, it may send only
//! ApiVersions and those two; anything else closes it, as Kafka does. A
//! failed authentication is answered after a delay (password guessing is
//! slow) and the connection is closed. With a session lifetime
//! (`connections_max_reauth_ms`, KIP-368) the client re-authenticates on
//! its connection, as the same user, before its session ends; a request
//! after the end closes the connection.
//!
//! Credentials come from the node's users file (SCRAM keys derived from
//! each password at start-up with a random salt, so the passwords are not
//! needed after that) and, for SCRAM, from the cluster metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use runnel_controller::Metadata;
pub use runnel_controller::metadata::ScramCredentialRecord as ScramCredential;
use runnel_protocol::kafka_protocol::error::ResponseError;
use runnel_protocol::kafka_protocol::messages::{RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse};
use runnel_protocol::kafka_protocol::protocol::StrBytes;
use runnel_protocol::scram::ScramHash;

/// SCRAM iterations for keys derived here (Kafka's minimum, and its default).
const SCRAM_ITERATIONS: u32 = 4096;

/// A listener's security protocol (Kafka's names): TLS or not, SASL or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!("unknown security protocol {s:?}: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [Mechanism::Plain, Mechanism::ScramSha256, Mechanism::ScramSha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(s: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }
}

impl Mechanism {
    fn scram(self) -> ScramHash {
        match self {
            Mechanism::ScramSha512 => ScramHash::Sha512,
            _ => ScramHash::Sha256,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        self.scram().hmac(key, data)
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        self.scram().hash(data)
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        self.scram().salted_password(password, salt, iterations)
    }

    /// What the server keeps of a user whose salted password (Hi) is given.
    pub fn credential_from_salted(self, salt: Vec<u8>, iterations: u32, salted: &[u8]) -> ScramCredential {
        let client_key = self.hmac(salted, b"Client Key");
        ScramCredential { stored_key: self.hash(&client_key), server_key: self.hmac(salted, b"Server Key"), salt, iterations }
    }

    /// What the server keeps of a user with this password and salt.
    pub fn credential(self, password: &str, salt: Vec<u8>, iterations: u32) -> ScramCredential {
        let salted = self.salted_password(password.as_bytes(), &salt, iterations);
        self.credential_from_salted(salt, iterations, &salted)
    }

    /// Kafka's code for a SCRAM mechanism (AlterUserScramCredentials).
    pub fn from_kafka_code(code: i8) -> Option<Mechanism> {
        match code {
            1 => Some(Mechanism::ScramSha256),
            2 => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }

    pub fn kafka_code(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
            Mechanism::Plain => 0,
        }
    }
}

/// Equal bytes, compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SASL settings of a node: mechanisms offered, users, and the delay
/// before a failed authentication is answered.
pub struct SaslConfig {
    pub mechanisms: Vec<Mechanism>,
    plain: BTreeMap<String, String>,
    scram: BTreeMap<(String, Mechanism), ScramCredential>,
    pub failed_authentication_delay: Duration,
    /// How long an authentication lasts (Kafka's `connections.max.reauth.ms`,
    /// KIP-368): clients are told, and re-authenticate on the same
    /// connection before it ends; a connection that sends any other request
    /// after its session ended is closed. `None`: sessions last as long as
    /// their connections.
    pub reauthentication: Option<Duration>,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the passwords or keys.
        f.debug_struct("SaslConfig")
            .field("mechanisms", &self.mechanisms)
            .field("users", &self.plain.keys().collect::<Vec<_>>())
            .field("failed_authentication_delay", &self.failed_authentication_delay)
            .field("reauthentication", &self.reauthentication)
            .finish()
    }
}

impl SaslConfig {
    /// Users by name with their passwords; SCRAM keys are derived here.
    pub fn new(mechanisms: Vec<Mechanism>, users: BTreeMap<String, String>, failed_authentication_delay: Duration) -> Result<SaslConfig, String> {
        if mechanisms.is_empty() {
            return Err("no SASL mechanism enabled".into());
        }
        if let Some(bad) = users.keys().find(|u| u.is_empty() || u.contains('\0')) {
            return Err(format!("user name {bad:?} is empty or has a NUL byte"));
        }
        let mut scram = BTreeMap::new();
        for m in mechanisms.iter().copied().filter(|m| *m != Mechanism::Plain) {
            for (user, password) in &users {
                let salt: [u8; 16] = rand::random();
                scram.insert((user.clone(), m), m.credential(password, salt.to_vec(), SCRAM_ITERATIONS));
            }
        }
        Ok(SaslConfig { mechanisms, plain: users, scram, failed_authentication_delay, reauthentication: None })
    }

    /// Sessions that end after `lifetime` unless the client re-authenticates.
    pub fn with_reauthentication(self, lifetime: Option<Duration>) -> SaslConfig {
        SaslConfig { reauthentication: lifetime, ..self }
    }
}

/// What the connection does with a request.
pub enum Step {
    /// Handle it as usual.
    Pass,
    /// Answer with this, after `delay`; then close the connection if `close`.
    Reply { response: Box<ResponseKind>, delay: Duration, close: bool },
    /// Close the connection without an answer.
    Close(String),
}

enum State {
    /// Waiting for SaslHandshake.
    Handshake,
    /// Waiting for the first SaslAuthenticate of this mechanism.
    Authenticate(Mechanism),
    /// SCRAM: server-first sent, waiting for client-final.
    ScramFinal { mechanism: Mechanism, user: String, client_first_bare: String, server_first: String, nonce: String },
    /// Authenticated (the user is the session's).
    Done,
}

/// One connection's authentication.
pub struct SaslSession {
    config: Arc<SaslConfig>,
    /// SCRAM users kept in the cluster metadata (feature level 4).
    metadata: Option<Metadata>,
    state: State,
    /// The authenticated user, and when the session ends (with re-authentication).
    session: Option<(String, Option<Instant>)>,
    /// The version and arrival of the request being decided on.
    version: i16,
    now: Instant,
}

fn handshake_response(error: Option<ResponseError>, mechanisms: &[Mechanism]) -> ResponseKind {
    ResponseKind::SaslHandshake(
        SaslHandshakeResponse::default()
            .with_error_code(error.map_or(0, |e| e.code()))
            .with_mechanisms(mechanisms.iter().map(|m| StrBytes::from_static_str(m.name())).collect()),
    )
}

fn authenticate_response(bytes: Vec<u8>) -> ResponseKind {
    ResponseKind::SaslAuthenticate(SaslAuthenticateResponse::default().with_auth_bytes(bytes.into()))
}

impl SaslSession {
    pub fn new(config: Arc<SaslConfig>, metadata: Option<Metadata>) -> SaslSession {
        SaslSession { config, metadata, state: State::Handshake, session: None, version: 0, now: Instant::now() }
    }

    /// A SCRAM user's credential: from the cluster metadata, else the users file.
    fn credential_of(&self, user: &str, m: Mechanism) -> Option<ScramCredential> {
        let stored = self.metadata.as_ref().and_then(|md| md.state().image.scram.get(&(user.to_string(), m.name().to_string())).cloned());
        stored.or_else(|| self.config.scram.get(&(user.to_string(), m)).cloned())
    }

    /// The authenticated user, once there is one.
    pub fn principal(&self) -> Option<&str> {
        self.session.as_ref().map(|(user, _)| user.as_str())
    }

    /// A successful exchange: `bytes` are the last server message. A
    /// re-authentication must be as the same user (as Kafka requires).
    fn authenticated(&mut self, mechanism: Mechanism, user: String, bytes: Vec<u8>) -> Step {
        let again = match &self.session {
            Some((before, _)) if *before != user => return self.failed(mechanism, "re-authentication as another user"),
            Some(_) => true,
            None => false,
        };
        let lifetime = self.config.reauthentication;
        let mut response = SaslAuthenticateResponse::default().with_auth_bytes(bytes.into());
        if let (Some(lifetime), true) = (lifetime, self.version >= 1) {
            response = response.with_session_lifetime_ms(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX));
        }
        if again {
            tracing::info!(%user, mechanism = mechanism.name(), "SASL re-authenticated");
        } else {
            tracing::debug!(%user, mechanism = mechanism.name(), "SASL authenticated");
        }
        self.session = Some((user, lifetime.map(|l| self.now + l)));
        self.state = State::Done;
        Step::Reply { response: Box::new(ResponseKind::SaslAuthenticate(response)), delay: Duration::ZERO, close: false }
    }

    fn failed(&mut self, mechanism: Mechanism, why: &str) -> Step {
        // Password guessing fails many times a second: counted (by the
        // connection, as a refused "sasl" request), one a second logged.
        static LAST_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if crate::acl::once_a_second(&LAST_LOGGED) {
            tracing::info!(mechanism = mechanism.name(), reason = why, "SASL authentication failed");
        }
        let message = format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {}", mechanism.name());
        let response = ResponseKind::SaslAuthenticate(
            SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        );
        self.state = State::Handshake;
        Step::Reply { response: Box::new(response), delay: self.config.failed_authentication_delay, close: true }
    }

    /// Decides on a request of this `version` that arrived `now`.
    pub fn on_request(&mut self, body: &RequestKind, version: i16, now: Instant) -> Step {
        self.version = version;
        self.now = now;
        let exchange = matches!(body, RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_));
        if let Some((user, ends)) = &self.session {
            if !exchange {
                if ends.is_some_and(|end| now >= end) {
                    return Step::Close(format!("the SASL session of {user:?} ended and the client did not re-authenticate"));
                }
                return Step::Pass;
            }
            if self.config.reauthentication.is_none() {
                // Answered IllegalSaslState by the API's handler.
                return Step::Pass;
            }
            if matches!(body, RequestKind::SaslHandshake(_)) && matches!(self.state, State::Done) {
                // KIP-368: a new exchange on the authenticated connection.
                self.state = State::Handshake;
            }
        }
        match (body, &self.state) {
            (RequestKind::ApiVersions(_), _) => Step::Pass,
            (RequestKind::SaslHandshake(r), State::Handshake) => {
                let offered = &self.config.mechanisms;
                match Mechanism::parse(&r.mechanism).filter(|m| offered.contains(m)) {
                    Some(m) => {
                        self.state = State::Authenticate(m);
                        Step::Reply { response: Box::new(handshake_response(None, offered)), delay: Duration::ZERO, close: false }
                    }
                    None => Step::Reply {
                        response: Box::new(handshake_response(Some(ResponseError::UnsupportedSaslMechanism), offered)),
                        delay: Duration::ZERO,
                        close: false,
                    },
                }
            }
            (RequestKind::SaslAuthenticate(r), State::Authenticate(m)) => {
                let m = *m;
                match m {
                    Mechanism::Plain => self.plain(&r.auth_bytes),
                    _ => self.scram_first(m, &r.auth_bytes),
                }
            }
            (RequestKind::SaslAuthenticate(r), State::ScramFinal { .. }) => self.scram_final(&r.auth_bytes),
            (other, _) => Step::Close(format!("{:?} before SASL authentication completed", api_name(other))),
        }
    }

    fn plain(&mut self, bytes: &[u8]) -> Step {
        let parts: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
        let [authzid, user, password] = parts.as_slice() else { return self.failed(Mechanism::Plain, "malformed PLAIN message") };
        let user = String::from_utf8_lossy(user).into_owned();
        if !authzid.is_empty() && *authzid != user.as_bytes() {
            return self.failed(Mechanism::Plain, "authorization id differs from the user");
        }
        match self.config.plain.get(&user) {
            Some(expected) if same(expected.as_bytes(), password) => self.authenticated(Mechanism::Plain, user, Vec::new()),
            _ => self.failed(Mechanism::Plain, "unknown user or wrong password"),
        }
    }

    fn scram_first(&mut self, m: Mechanism, bytes: &[u8]) -> Step {
        let Ok(text) = std::str::from_utf8(bytes) else { return self.failed(m, "client-first is not UTF-8") };
        // gs2-header: "n,," or "n,a=authzid," (no channel binding: "y" is
        // fine too, "p=" is refused).
        let mut parts = text.splitn(3, ',');
        let (Some(cb), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
            return self.failed(m, "malformed client-first");
        };
        if cb != "n" && cb != "y" {
            return self.failed(m, "channel binding is not supported");
        }
        let attr = |s: &str, key: &str| s.split(',').find_map(|kv| kv.strip_prefix(key).map(str::to_string));
        let (Some(user), Some(client_nonce)) = (attr(bare, "n="), attr(bare, "r=")) else { return self.failed(m, "client-first lacks n= or r=") };
        let user = user.replace("=2C", ",").replace("=3D", "=");
        if let Some(a) = authzid.strip_prefix("a=")
            && a.replace("=2C", ",").replace("=3D", "=") != user
        {
            return self.failed(m, "authorization id differs from the user");
        }
        let Some(cred) = self.credential_of(&user, m) else { return self.failed(m, "unknown user") };
        let server_nonce: [u8; 18] = rand::random();
        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&cred.salt), cred.iterations);
        self.state = State::ScramFinal { mechanism: m, user, client_first_bare: bare.to_string(), server_first: server_first.clone(), nonce };
        Step::Reply { response: Box::new(authenticate_response(server_first.into_bytes())), delay: Duration::ZERO, close: false }
    }

    fn scram_final(&mut self, bytes: &[u8]) -> Step {
        let State::ScramFinal { mechanism: m, user, client_first_bare, server_first, nonce } = std::mem::replace(&mut self.state, State::Handshake) else {
            unreachable!("called in ScramFinal only")
        };
        let Ok(text) = std::str::from_utf8(bytes) else { return self.failed(m, "client-final is not UTF-8") };
        let Some((without_proof, proof)) = text.rsplit_once(",p=") else { return self.failed(m, "client-final lacks a proof") };
        let attr = |key: &str| without_proof.split(',').find_map(|kv| kv.strip_prefix(key).map(str::to_string));
        // Kafka accepts a client nonce that ends with the server's (librdkafka
        // 2.0.x, Debian 12's kcat among them, sends its own nonce twice).
        if attr("r=").is_none_or(|r| !r.ends_with(nonce.as_str())) {
            return self.failed(m, "nonce mismatch");
        }
        if attr("c=").is_none_or(|c| c != "biws" && c != "eSws") {
            // base64 of "n,," or "y,,": no authzid is all the clients send.
            if attr("c=").and_then(|c| B64.decode(c).ok()).is_none_or(|c| !(c.starts_with(b"n,") || c.starts_with(b"y,"))) {
                return self.failed(m, "bad channel binding attribute");
            }
        }
        let Ok(proof) = B64.decode(proof) else { return self.failed(m, "proof is not base64") };
        let Some(cred) = self.credential_of(&user, m) else { return self.failed(m, "unknown user") };
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = m.hmac(&cred.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return self.failed(m, "proof of the wrong length");
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !same(&m.hash(&client_key), &cred.stored_key) {
            return self.failed(m, "wrong password");
        }
        let server_signature = m.hmac(&cred.server_key, auth_message.as_bytes());
        self.authenticated(m, user, format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

fn api_name(body: &RequestKind) -> String {
    let debug = format!("{body:?}");
    debug.split('(').next().unwrap_or("request").to_string()
}

#[cfg(test)]
mod tests {
    use runnel_protocol::kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest};

    use super::*;

    fn config() -> Arc<SaslConfig> {
        let users = BTreeMap::from([("alice".to_string(), "alice-secret".to_string())]);
        Arc::new(SaslConfig::new(Mechanism::ALL.to_vec(), users, Duration::from_millis(100)).unwrap())
    }

    fn handshake(s: &mut SaslSession, mechanism: &'static str) -> Step {
        s.on_request(&RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism))), 1, Instant::now())
    }

    fn authenticate(s: &mut SaslSession, bytes: &[u8]) -> Step {
        s.on_request(&RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default().with_auth_bytes(bytes.to_vec().into())), 1, Instant::now())
    }

    fn reply(step: Step) -> (ResponseKind, bool) {
        match step {
            Step::Reply { response, close, .. } => (*response, close),
            Step::Pass => panic!("passed"),
            Step::Close(why) => panic!("closed: {why}"),
        }
    }

    fn auth_error(response: &ResponseKind) -> i16 {
        match response {
            ResponseKind::SaslAuthenticate(r) => r.error_code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_checks_the_password_and_nothing_else_passes_before() {
        let mut s = SaslSession::new(config(), None);
        assert!(matches!(s.on_request(&RequestKind::ApiVersions(ApiVersionsRequest::default()), 3, Instant::now()), Step::Pass));
        assert!(matches!(s.on_request(&RequestKind::Metadata(MetadataRequest::default()), 12, Instant::now()), Step::Close(_)));
        let (r, _) = reply(handshake(&mut s, "GSSAPI"));
        assert!(matches!(r, ResponseKind::SaslHandshake(ref h) if h.error_code == ResponseError::UnsupportedSaslMechanism.code() && h.mechanisms.len() == 3));
        reply(handshake(&mut s, "PLAIN"));
        let (r, close) = reply(authenticate(&mut s, b"\0alice\0wrong"));
        assert_eq!((auth_error(&r), close), (ResponseError::SaslAuthenticationFailed.code(), true));

        let mut s = SaslSession::new(config(), None);
        reply(handshake(&mut s, "PLAIN"));
        let (r, close) = reply(authenticate(&mut s, b"\0alice\0alice-secret"));
        assert_eq!((auth_error(&r), close), (0, false));
        assert_eq!(s.principal(), Some("alice"));
        assert!(matches!(s.on_request(&RequestKind::Metadata(MetadataRequest::default()), 12, Instant::now()), Step::Pass));
    }

    /// A SCRAM client, as RFC 5802 describes it.
    fn scram_client(m: Mechanism, s: &mut SaslSession, user: &str, password: &str) -> Result<(), i16> {
        reply(handshake(s, m.name()));
        let client_nonce = "fyko+d2lbbFgONRv9qkxdawL";
        let bare = format!("n={user},r={client_nonce}");
        let (r, _) = reply(authenticate(s, format!("n,,{bare}").as_bytes()));
        let server_first = match r {
            ResponseKind::SaslAuthenticate(r) if r.error_code == 0 => String::from_utf8(r.auth_bytes.to_vec()).unwrap(),
            ResponseKind::SaslAuthenticate(r) => return Err(r.error_code),
            other => panic!("{other:?}"),
        };
        let attr = |k: &str| server_first.split(',').find_map(|kv| kv.strip_prefix(k)).unwrap().to_string();
        let (nonce, salt, iterations) = (attr("r="), B64.decode(attr("s=")).unwrap(), attr("i=").parse::<u32>().unwrap());
        assert!(nonce.starts_with(client_nonce));
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let (r, _) = reply(authenticate(s, format!("{without_proof},p={}", B64.encode(proof)).as_bytes()));
        match r {
            ResponseKind::SaslAuthenticate(r) if r.error_code == 0 => {
                let server_key = m.hmac(&salted, b"Server Key");
                let expected = format!("v={}", B64.encode(m.hmac(&server_key, auth_message.as_bytes())));
                assert_eq!(String::from_utf8(r.auth_bytes.to_vec()).unwrap(), expected, "the server proves it knows the key");
                Ok(())
            }
            ResponseKind::SaslAuthenticate(r) => Err(r.error_code),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scram_sha_256_and_512_authenticate_and_refuse_a_wrong_password() {
        for m in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            let mut s = SaslSession::new(config(), None);
            assert_eq!(scram_client(m, &mut s, "alice", "alice-secret"), Ok(()), "{m:?}");
            assert_eq!(s.principal(), Some("alice"));
            let mut s = SaslSession::new(config(), None);
            assert_eq!(scram_client(m, &mut s, "alice", "guess"), Err(ResponseError::SaslAuthenticationFailed.code()));
            let mut s = SaslSession::new(config(), None);
            assert_eq!(scram_client(m, &mut s, "mallory", "x"), Err(ResponseError::SaslAuthenticationFailed.code()));
        }
    }

    #[test]
    fn the_rfc_7677_example_derives_the_same_keys() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Mechanism::ScramSha256.credential("pencil", salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = Mechanism::ScramSha256.hmac(&cred.server_key, auth_message.as_bytes());
        assert_eq!(B64.encode(server_signature), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    fn reauthenticating_config() -> SaslConfig {
        let users = BTreeMap::from([("alice".to_string(), "alice-secret".to_string()), ("bob".to_string(), "b0b".to_string())]);
        SaslConfig::new(Mechanism::ALL.to_vec(), users, Duration::from_millis(100)).unwrap().with_reauthentication(Some(Duration::from_secs(10)))
    }

    fn metadata_at(s: &mut SaslSession, at: Instant) -> Step {
        s.on_request(&RequestKind::Metadata(MetadataRequest::default()), 12, at)
    }

    fn lifetime(response: &ResponseKind) -> i64 {
        match response {
            ResponseKind::SaslAuthenticate(r) => r.session_lifetime_ms,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sessions_end_unless_the_client_re_authenticates_as_the_same_user() {
        let config = Arc::new(reauthenticating_config());
        let mut s = SaslSession::new(config, None);
        let start = Instant::now();
        reply(handshake(&mut s, "PLAIN"));
        let (r, close) = reply(authenticate(&mut s, b"\0alice\0alice-secret"));
        assert_eq!((auth_error(&r), close, lifetime(&r)), (0, false, 10_000), "v1 tells the client how long the session lasts");
        assert!(matches!(metadata_at(&mut s, start + Duration::from_secs(5)), Step::Pass));

        // Re-authenticating on the same connection (KIP-368) starts a new session.
        assert_eq!(scram_client(Mechanism::ScramSha256, &mut s, "alice", "alice-secret"), Ok(()));
        assert_eq!(s.principal(), Some("alice"));
        let renewed = Instant::now();
        assert!(matches!(metadata_at(&mut s, renewed + Duration::from_secs(9)), Step::Pass), "the new session runs from the re-authentication");
        assert!(matches!(metadata_at(&mut s, renewed + Duration::from_secs(11)), Step::Close(_)), "an ended session closes the connection");

        // Another user cannot take over an authenticated connection.
        let config = Arc::new(reauthenticating_config());
        let mut s = SaslSession::new(config, None);
        reply(handshake(&mut s, "PLAIN"));
        reply(authenticate(&mut s, b"\0alice\0alice-secret"));
        reply(handshake(&mut s, "PLAIN"));
        let (r, close) = reply(authenticate(&mut s, b"\0bob\0b0b"));
        assert_eq!((auth_error(&r), close), (ResponseError::SaslAuthenticationFailed.code(), true));
    }

    #[test]
    fn without_reauthentication_a_session_lasts_as_long_as_its_connection() {
        let mut s = SaslSession::new(config(), None);
        reply(handshake(&mut s, "PLAIN"));
        let (r, _) = reply(authenticate(&mut s, b"\0alice\0alice-secret"));
        assert_eq!(lifetime(&r), 0);
        assert!(matches!(metadata_at(&mut s, Instant::now() + Duration::from_secs(86_400)), Step::Pass));
        // A second handshake goes to the handler, which answers IllegalSaslState.
        assert!(matches!(handshake(&mut s, "PLAIN"), Step::Pass));
    }
}
