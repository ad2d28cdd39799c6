//! Queued mails hold one-time codes, so the outbox stores them encrypted (XChaCha20-Poly1305,
//! a key derived from the configured OTP key) and erases them once delivered.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What the delivery loop needs to send one mail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub to: Vec<String>,
    /// The whole RFC 5322 message.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("queued mail cannot be decrypted (wrong key or damaged row)")]
    Open,
    #[error("queued mail is malformed: {0}")]
    Format(String),
}

#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// Derives the outbox key from the master key, so one configured secret serves several
    /// purposes without any two sharing a key.
    pub fn new(master_key: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"authd/outbox/v1");
        let key = mac.finalize().into_bytes();
        Self {
            cipher: XChaCha20Poly1305::new(&key),
        }
    }

    pub fn seal(&self, envelope: &Envelope) -> String {
        let plain = serde_json::to_vec(envelope).unwrap_or_default();
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce cannot fail.
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_slice())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, payload: &str) -> Result<Envelope, SealError> {
        let raw = STANDARD
            .decode(payload)
            .map_err(|e| SealError::Format(e.to_string()))?;
        if raw.len() < 24 {
            return Err(SealError::Format("too short".into()));
        }
        let (nonce, body) = raw.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), body)
            .map_err(|_| SealError::Open)?;
        serde_json::from_slice(&plain).map_err(|e| SealError::Format(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_mail_opens_with_the_same_key_only() {
        let env = Envelope {
            from: "a@x.org".into(),
            to: vec!["b@y.org".into()],
            message: "Subject: 123456\r\n\r\nhi".into(),
        };
        let sealer = Sealer::new(b"k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1");
        let payload = sealer.seal(&env);
        assert!(!payload.contains("123456"));
        assert_eq!(sealer.open(&payload).unwrap(), env);
        assert!(matches!(
            Sealer::new(b"other").open(&payload),
            Err(SealError::Open)
        ));
        assert!(sealer.open("not base64!").is_err());
    }
}
