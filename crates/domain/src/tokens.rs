//! Signed tokens (JWT, EdDSA over Ed25519): access, sudo and partial. Each carries a `typ`
//! claim, so no kind is accepted where another is expected. Several keys may verify while one
//! signs, which is how keys rotate without logging everyone out.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A new refresh token: 256 random bits, URL-safe.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a refresh token. A plain SHA-256 suffices: the token has 256 bits of
/// entropy, so there is nothing to brute-force.
pub fn refresh_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The kinds of signed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Sudo,
    Partial,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Sudo => "sudo",
            Self::Partial => "partial",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// The user id, as a string (RFC 7519).
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub typ: String,
    /// A unique id per token.
    pub jti: String,
    /// The login (refresh-token family) an access token was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Claims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("signing key: {0}")]
    Key(String),
    #[error("token refused: {0}")]
    Invalid(String),
}

struct PublicKey {
    x: String,
    decoding: DecodingKey,
}

/// Signs with one key, verifies with all of them.
pub struct TokenSigner {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    public: BTreeMap<String, PublicKey>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A key id derived from the public key, so every process names a key the same way.
fn kid_of(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn public_of(pem: &str) -> Result<([u8; 32], String), TokenError> {
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| TokenError::Key(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
    let public = key.verifying_key().to_bytes();
    Ok((public, kid_of(&public)))
}

impl TokenSigner {
    /// A fresh Ed25519 private key as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, TokenError> {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        key.to_pkcs8_pem(Default::default())
            .map(|p| p.to_string())
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// `signing_pem` signs; each of `retired_pems` (older private keys) only verifies.
    pub fn new(
        issuer: &str,
        signing_pem: &str,
        retired_pems: &[String],
    ) -> Result<Self, TokenError> {
        let (_, kid) = public_of(signing_pem)?;
        let encoding = EncodingKey::from_ed_pem(signing_pem.as_bytes())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let mut public = BTreeMap::new();
        for pem in std::iter::once(signing_pem).chain(retired_pems.iter().map(String::as_str)) {
            let (bytes, kid) = public_of(pem)?;
            let x = URL_SAFE_NO_PAD.encode(bytes);
            let decoding =
                DecodingKey::from_ed_components(&x).map_err(|e| TokenError::Key(e.to_string()))?;
            public.insert(kid, PublicKey { x, decoding });
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            kid,
            encoding,
            public,
        })
    }

    pub fn sign(
        &self,
        kind: TokenKind,
        user_id: i64,
        sid: Option<&str>,
        lifetime: Duration,
        now_secs: i64,
    ) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let mut jti = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut jti);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user_id.to_string(),
            iat: now_secs,
            exp: now_secs + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 4),
            typ: kind.as_str().to_owned(),
            jti: URL_SAFE_NO_PAD.encode(jti),
            sid: sid.map(str::to_owned),
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// Checks signature, issuer, expiry (no leeway) and kind.
    pub fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        now_secs: i64,
    ) -> Result<Claims, TokenError> {
        let invalid = |m: &str| TokenError::Invalid(m.to_owned());
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid("unexpected algorithm"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.public.get(k))
            .ok_or_else(|| invalid("unknown key"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = 0;
        // Expiry is checked below against the caller's clock, so tests can move time.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.exp <= now_secs {
            return Err(invalid("expired"));
        }
        if claims.typ != kind.as_str() {
            return Err(invalid("wrong kind"));
        }
        if claims.user_id().is_none() {
            return Err(invalid("bad subject"));
        }
        Ok(claims)
    }

    /// The public keys as a JWK set (RFC 7517, OKP keys of RFC 8037).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .public
            .iter()
            .map(|(kid, k)| {
                serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": k.x, "kid": kid, "alg": "EdDSA", "use": "sig" })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> (TokenSigner, String) {
        let pem = TokenSigner::generate_pem().unwrap();
        (TokenSigner::new("authd-test", &pem, &[]).unwrap(), pem)
    }

    #[test]
    fn a_token_verifies_as_its_own_kind_only_and_until_it_expires() {
        let (s, _) = signer();
        let t = s
            .sign(
                TokenKind::Access,
                42,
                Some("fam"),
                Duration::from_secs(300),
                1_000,
            )
            .unwrap();
        let c = s.verify(&t, TokenKind::Access, 1_299).unwrap();
        assert_eq!(c.user_id(), Some(42));
        assert_eq!(c.sid.as_deref(), Some("fam"));
        assert_eq!(c.sid.as_deref(), Some("fam"));
        assert!(s.verify(&t, TokenKind::Access, 1_300).is_err(), "expired");
        assert!(s.verify(&t, TokenKind::Sudo, 1_001).is_err());
        assert!(s.verify(&t, TokenKind::Partial, 1_001).is_err());
    }

    #[test]
    fn another_key_or_a_tampered_token_is_refused_and_retired_keys_still_verify() {
        let (old, old_pem) = signer();
        let (other, _) = signer();
        let t = old
            .sign(TokenKind::Access, 1, None, Duration::from_secs(60), 0)
            .unwrap();
        assert!(other.verify(&t, TokenKind::Access, 1).is_err());
        let mut tampered = t.clone();
        tampered.replace_range(t.len() - 3.., "AAA");
        assert!(old.verify(&tampered, TokenKind::Access, 1).is_err());
        let new_pem = TokenSigner::generate_pem().unwrap();
        let rotated = TokenSigner::new("authd-test", &new_pem, &[old_pem]).unwrap();
        assert!(rotated.verify(&t, TokenKind::Access, 1).is_ok());
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
    }
}
