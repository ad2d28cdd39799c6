//! Authenticated encryption of secrets at rest (XChaCha20-Poly1305). Each use derives its own
//! key from a configured master key and a label, and binds every value to its context (for
//! example the user it belongs to), so a value copied to another row does not open.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the value is not valid base64 or is too short")]
    Format,
    #[error("the value does not open with this key and context")]
    Tampered,
}

/// A key for one purpose. Values are `base64(nonce || ciphertext || tag)`.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

const NONCE_LEN: usize = 24;

impl SecretBox {
    /// Derives the key for `label` (e.g. `b"authd/totp/v1"`) from the master key.
    pub fn new(master_key: &[u8], label: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(label);
        let key = mac.finalize().into_bytes();
        Self {
            cipher: XChaCha20Poly1305::new(&key),
        }
    }

    /// Encrypts `plain`, bound to `context` (authenticated, not stored).
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and a fresh nonce cannot fail.
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, value: &str, context: &[u8]) -> Result<Vec<u8>, OpenError> {
        let raw = STANDARD.decode(value).map_err(|_| OpenError::Format)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError::Format);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .map_err(|_| OpenError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_label_and_context() {
        let b = SecretBox::new(b"master-key-master-key-master-key", b"authd/test/v1");
        let v = b.seal(b"secret", b"user:1");
        assert_eq!(b.open(&v, b"user:1").unwrap(), b"secret");
        assert_eq!(b.open(&v, b"user:2"), Err(OpenError::Tampered));
        let other_label = SecretBox::new(b"master-key-master-key-master-key", b"authd/other/v1");
        assert_eq!(other_label.open(&v, b"user:1"), Err(OpenError::Tampered));
        assert_eq!(b.open("%%%", b"user:1"), Err(OpenError::Format));
        assert_eq!(b.open("AAAA", b"user:1"), Err(OpenError::Format));
        assert_ne!(b.seal(b"secret", b"user:1"), v, "fresh nonce per value");
    }
}
