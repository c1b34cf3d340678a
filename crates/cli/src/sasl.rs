//! The client side of SASL for `runnelctl produce` and `consume` on a
//! SASL_PLAINTEXT listener: PLAIN, or SCRAM-SHA-256/512 (RFC 5802), with
//! the server's final signature checked.

use anyhow::{Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use runnel_protocol::scram::ScramHash as Hash;

/// The credentials and mechanism to authenticate with.
#[derive(Clone)]
pub struct Credentials {
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

/// One exchange of SASL messages: the first message to send, then, for
/// each server message, the next one (or `None` when done).
pub enum Exchange {
    Plain,
    Scram { hash: Hash, username: String, password: String, client_first_bare: String, nonce: String, server_signature: Option<Vec<u8>> },
}

impl Credentials {
    /// The exchange for the mechanism and its first message.
    pub fn start(&self) -> Result<(Exchange, Vec<u8>)> {
        match self.mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok((Exchange::Plain, format!("\0{}\0{}", self.username, self.password).into_bytes())),
            m @ ("SCRAM-SHA-256" | "SCRAM-SHA-512") => {
                let hash = if m.ends_with("256") { Hash::Sha256 } else { Hash::Sha512 };
                let nonce_bytes: [u8; 24] = rand::random();
                let nonce = B64.encode(nonce_bytes);
                let user = self.username.replace('=', "=3D").replace(',', "=2C");
                let client_first_bare = format!("n={user},r={nonce}");
                let first = format!("n,,{client_first_bare}").into_bytes();
                let exchange = Exchange::Scram {
                    hash,
                    username: self.username.clone(),
                    password: self.password.clone(),
                    client_first_bare,
                    nonce,
                    server_signature: None,
                };
                Ok((exchange, first))
            }
            other => bail!("SASL mechanism {other:?} is not one runnelctl speaks: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
        }
    }
}

impl Exchange {
    /// The answer to a server message; `None` when authentication is complete.
    pub fn next(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Exchange::Plain => Ok(None),
            Exchange::Scram { hash, password, client_first_bare, nonce, server_signature, username } => {
                let text = std::str::from_utf8(server).map_err(|_| anyhow!("the server's SCRAM message is not UTF-8"))?;
                if let Some(expected) = server_signature.take() {
                    let v = text.strip_prefix("v=").ok_or_else(|| anyhow!("the server's final SCRAM message has no signature: {text:?}"))?;
                    if B64.decode(v).ok().as_deref() != Some(expected.as_slice()) {
                        bail!("the server's SCRAM signature is wrong: it does not know {username}'s key");
                    }
                    return Ok(None);
                }
                let attr = |k: &str| text.split(',').find_map(|kv| kv.strip_prefix(k)).map(str::to_string);
                let (Some(server_nonce), Some(salt), Some(iterations)) = (attr("r="), attr("s="), attr("i=")) else {
                    bail!("malformed SCRAM server-first message: {text:?}");
                };
                if !server_nonce.starts_with(nonce.as_str()) || server_nonce.len() <= nonce.len() {
                    bail!("the server's SCRAM nonce does not extend ours");
                }
                let salt = B64.decode(salt).map_err(|_| anyhow!("the SCRAM salt is not base64"))?;
                let iterations: u32 = iterations.parse().map_err(|_| anyhow!("the SCRAM iteration count is not a number"))?;
                if !(4096..=1_000_000).contains(&iterations) {
                    bail!("the server asks for {iterations} SCRAM iterations; runnelctl accepts 4096 to 1000000");
                }
                let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
                let client_key = hash.hmac(&salted, b"Client Key");
                let stored_key = hash.hash(&client_key);
                let without_proof = format!("c=biws,r={server_nonce}");
                let auth_message = format!("{client_first_bare},{text},{without_proof}");
                let signature = hash.hmac(&stored_key, auth_message.as_bytes());
                let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                let server_key = hash.hmac(&salted, b"Server Key");
                *server_signature = Some(hash.hmac(&server_key, auth_message.as_bytes()));
                Ok(Some(format!("{without_proof},p={}", B64.encode(proof)).into_bytes()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's client, with its nonce fixed.
    fn rfc_exchange() -> Exchange {
        Exchange::Scram {
            hash: Hash::Sha256,
            username: "user".into(),
            password: "pencil".into(),
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO".into(),
            server_signature: None,
        }
    }

    #[test]
    fn the_rfc_7677_client_proof() {
        // RFC 7677 section 3, with the client nonce fixed.
        let mut exchange = rfc_exchange();
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = exchange.next(server_first).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(exchange.next(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap().is_none());
        let mut bad = rfc_exchange();
        bad.next(server_first).unwrap();
        assert!(bad.next(b"v=AAAA").is_err(), "a server that does not know the key is caught");
    }
}
