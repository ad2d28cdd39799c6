//! Queued mails hold one-time codes, so the outbox stores them encrypted (XChaCha20-Poly1305,
//! a key derived from the configured OTP key) and erases them once delivered.

use authd_domain::sealed::{OpenError, SecretBox};
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone)]
pub struct Sealer {
    key: SecretBox,
}

impl Sealer {
    /// Derives the outbox key from the master key, so one configured secret serves several
    /// purposes without any two sharing a key.
    pub fn new(master_key: &[u8]) -> Self {
        Self {
            key: SecretBox::new(master_key, b"authd/outbox/v1"),
        }
    }

    pub fn seal(&self, envelope: &Envelope) -> String {
        let plain = serde_json::to_vec(envelope).unwrap_or_default();
        self.key.seal(&plain, b"")
    }

    pub fn open(&self, payload: &str) -> Result<Envelope, SealError> {
        let plain = self.key.open(payload, b"").map_err(|e| match e {
            OpenError::Tampered => SealError::Open,
            OpenError::Format => SealError::Format(e.to_string()),
        })?;
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

    /// An outbox payload sealed by the first releases (HMAC-derived key, no `v2.` prefix),
    /// with the key above: mails queued before an upgrade are still delivered after it.
    const QUEUED_BY_THE_FIRST_RELEASES: &str = "mBkxForWrZwpmSD+kIIQZ1HFymfpfexeibBrMJ79GU4PkQW14C3OmvnM1I0B1da74JTDVyFnCCFxpNglcrXERtj89bJqjfEqSHCvsubehAtf0BlhnbS/3DzE4RZfHdfmQ9twF3Jpj9A7gkPE7i/t6Ac=";

    #[test]
    fn mail_queued_by_the_first_releases_still_opens() {
        let sealer = Sealer::new(b"k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1");
        let env = sealer.open(QUEUED_BY_THE_FIRST_RELEASES).unwrap();
        assert_eq!(
            env,
            Envelope {
                from: "a@x.org".into(),
                to: vec!["b@y.org".into()],
                message: "Subject: 123456\r\n\r\nhi".into(),
            }
        );
        assert!(
            sealer.seal(&env).starts_with("v2."),
            "new payloads use the new key"
        );
        assert!(matches!(
            Sealer::new(b"other").open(QUEUED_BY_THE_FIRST_RELEASES),
            Err(SealError::Open)
        ));
    }
}
