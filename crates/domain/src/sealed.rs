//! Authenticated encryption of secrets at rest (XChaCha20-Poly1305). Each use derives its own
//! key from a configured master key and a label, and binds every value to its context (for
//! example the user it belongs to), so a value copied to another row does not open.
//!
//! Two key derivations exist, told apart by the stored value itself:
//! - `v2.` + `base64(nonce || ciphertext || tag)`: the key is HKDF-SHA256 (RFC 5869) of the
//!   master key, without salt, with the label as `info`. Every new value is sealed this way.
//! - `base64(nonce || ciphertext || tag)` without a prefix: the key is HMAC-SHA256(master key,
//!   label), the derivation of the first releases. Such values are still opened, never
//!   written. The standard base64 alphabet has no `.`, so no such value starts with `v2.`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the value is not valid base64 or is too short")]
    Format,
    #[error("the value does not open with this key and context")]
    Tampered,
}

/// A key for one purpose. Values are `v2.base64(nonce || ciphertext || tag)` (see the module
/// documentation for the unprefixed values of the first releases).
#[derive(Clone)]
pub struct SecretBox {
    /// Seals and opens `v2.` values: the key derived with HKDF.
    cipher: XChaCha20Poly1305,
    /// Opens unprefixed values: the key derived with HMAC(master key, label).
    legacy: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

const NONCE_LEN: usize = 24;

/// The prefix of values sealed with the HKDF-derived key.
const V2: &str = "v2.";

impl SecretBox {
    /// Derives the key for `label` (e.g. `b"authd/totp/v1"`) from the master key.
    pub fn new(master_key: &[u8], label: &[u8]) -> Self {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, master_key)
            .expand(label, &mut key)
            .unwrap_or_else(|_| unreachable!("32 bytes is far below HKDF-SHA256's limit"));
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
            legacy: XChaCha20Poly1305::new(&legacy_key(master_key, label)),
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
        format!("{V2}{}", STANDARD.encode(out))
    }

    /// Opens a value sealed by [`SecretBox::seal`] of this or of an earlier release.
    pub fn open(&self, value: &str, context: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (cipher, encoded) = match value.strip_prefix(V2) {
            Some(rest) => (&self.cipher, rest),
            None => (&self.legacy, value),
        };
        let raw = STANDARD.decode(encoded).map_err(|_| OpenError::Format)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError::Format);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        cipher
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

/// The key of the first releases, kept only to open what they stored.
fn legacy_key(master_key: &[u8], label: &[u8]) -> chacha20poly1305::Key {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(label);
    mac.finalize().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &[u8] = b"master-key-master-key-master-key";

    #[test]
    fn a_sealed_value_opens_only_with_its_key_label_and_context() {
        let b = SecretBox::new(MASTER, b"authd/test/v1");
        let v = b.seal(b"secret", b"user:1");
        assert_eq!(b.open(&v, b"user:1").unwrap(), b"secret");
        assert_eq!(b.open(&v, b"user:2"), Err(OpenError::Tampered));
        let other_label = SecretBox::new(MASTER, b"authd/other/v1");
        assert_eq!(other_label.open(&v, b"user:1"), Err(OpenError::Tampered));
        let other_master = SecretBox::new(b"another-master-key-another-maste", b"authd/test/v1");
        assert_eq!(other_master.open(&v, b"user:1"), Err(OpenError::Tampered));
        assert_eq!(b.open("%%%", b"user:1"), Err(OpenError::Format));
        assert_eq!(b.open("AAAA", b"user:1"), Err(OpenError::Format));
        assert_eq!(b.open("v2.%%%", b"user:1"), Err(OpenError::Format));
        assert_eq!(b.open("v2.AAAA", b"user:1"), Err(OpenError::Format));
        assert_ne!(b.seal(b"secret", b"user:1"), v, "fresh nonce per value");
    }

    /// Sealed by the code of the first releases (HMAC-derived key, no prefix) with
    /// `SecretBox::new(MASTER, b"authd/test/v1").seal(b"secret", b"user:1")`, before the
    /// derivation changed: rows written then must open forever.
    const SEALED_BY_THE_FIRST_RELEASES: &str =
        "g5tsioP3LbSNLvi0O7GtebIRAFWagGL1Neh0vOzQSQo1hlyTMuc0S+8L9iLxhQ==";

    #[test]
    fn a_value_sealed_by_the_first_releases_still_opens_and_only_in_its_context() {
        let b = SecretBox::new(MASTER, b"authd/test/v1");
        assert_eq!(
            b.open(SEALED_BY_THE_FIRST_RELEASES, b"user:1").unwrap(),
            b"secret"
        );
        assert_eq!(
            b.open(SEALED_BY_THE_FIRST_RELEASES, b"user:2"),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            SecretBox::new(MASTER, b"authd/other/v1").open(SEALED_BY_THE_FIRST_RELEASES, b"user:1"),
            Err(OpenError::Tampered)
        );
        // The marker decides the key: the same bytes under the new marker do not open.
        assert_eq!(
            b.open(&format!("v2.{SEALED_BY_THE_FIRST_RELEASES}"), b"user:1"),
            Err(OpenError::Tampered)
        );
    }

    #[test]
    fn an_old_value_that_happens_to_start_with_v2_is_still_read_as_old() {
        // A nonce whose base64 starts with "v2" (but no "." can follow: it is not base64).
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..2].copy_from_slice(&[0xbf, 0x60]);
        let body = XChaCha20Poly1305::new(&legacy_key(MASTER, b"authd/test/v1"))
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: b"secret",
                    aad: b"user:1",
                },
            )
            .unwrap();
        let old = STANDARD.encode([nonce.as_slice(), &body].concat());
        assert!(old.starts_with("v2") && !old.contains('.'), "{old}");
        let b = SecretBox::new(MASTER, b"authd/test/v1");
        assert_eq!(b.open(&old, b"user:1").unwrap(), b"secret");
    }

    #[test]
    fn new_values_carry_the_marker_and_open_with_an_independently_derived_hkdf_key() {
        let b = SecretBox::new(MASTER, b"authd/test/v1");
        let v = b.seal(b"secret", b"user:1");
        let raw = STANDARD
            .decode(v.strip_prefix("v2.").expect("new values start with v2."))
            .unwrap();
        assert_eq!(raw.len(), NONCE_LEN + b"secret".len() + 16);

        // RFC 5869 with SHA-256, no salt, the label as info, computed here by hand from
        // HMAC-SHA256 (extract, then the first expand block) rather than by the code above.
        let hmac = |key: &[u8], parts: &[&[u8]]| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes()
        };
        let prk = hmac(&[0u8; 32], &[MASTER]);
        let okm = hmac(&prk, &[b"authd/test/v1", &[1u8]]);
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let plain = XChaCha20Poly1305::new(&okm)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: b"user:1",
                },
            )
            .expect("opens with the HKDF key");
        assert_eq!(plain, b"secret");

        // And not with the key of the first releases: the unprefixed value is refused.
        assert_eq!(
            b.open(v.strip_prefix("v2.").unwrap(), b"user:1"),
            Err(OpenError::Tampered)
        );
    }
}
