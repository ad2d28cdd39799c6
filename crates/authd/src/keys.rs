//! The service's keys. From the configuration when given (always, in production); otherwise,
//! in development, generated on first start and kept in the database, so restarts and every
//! process on the same database agree on them.

use anyhow::{bail, Context};
use authd_settings::Settings;
use authd_store::{secrets, AnyConnection, Store, StoreError};
use rand::RngCore;
use secrecy::ExposeSecret;

/// Key material, never printed.
pub struct Keys {
    /// Keys the hashes of one-time codes and throttle keys, and (derived) the outbox
    /// encryption key.
    pub otp: Vec<u8>,
    /// Encrypts TOTP secrets at rest.
    pub totp: Vec<u8>,
    /// The Ed25519 private key (PKCS#8 PEM) that signs access, sudo and partial tokens.
    pub signing_pem: String,
    /// Older signing keys that still verify.
    pub retired_pems: Vec<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

const MIN_KEY_BYTES: usize = 32;

/// A configured symmetric key, or in development one generated for this database.
async fn symmetric_key(
    store: &Store,
    name: &'static str,
    configured: &secrecy::SecretString,
) -> anyhow::Result<Vec<u8>> {
    let configured = configured.expose_secret().as_bytes().to_vec();
    let key = if configured.is_empty() {
        store
            .run(move |c| generated_key(c, name))
            .await
            .with_context(|| format!("cannot load the generated development key {name}"))?
    } else {
        configured
    };
    checked_length(name, key)
}

/// The development key `name` kept in the database, created on first use.
fn generated_key(c: &mut AnyConnection, name: &'static str) -> Result<Vec<u8>, StoreError> {
    tracing::warn!(
        "secrets.{name} is not set: using a key generated for this database (development only)"
    );
    let now = chrono::Utc::now().timestamp_millis();
    let hex_key = secrets::get_or_create(
        c,
        name,
        || {
            let mut k = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut k);
            hex::encode(k)
        },
        now,
    )?;
    Ok(hex_key.into_bytes())
}

fn checked_length(name: &str, key: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if key.len() < MIN_KEY_BYTES {
        bail!("configuration: secrets.{name} must be at least {MIN_KEY_BYTES} bytes long");
    }
    Ok(key)
}

/// The OTP key (which also seals queued mails) for a one-shot command on a plain
/// connection, resolved exactly as `serve` resolves it, so servers can open what the command
/// queues.
pub fn otp_key_for_command(settings: &Settings, c: &mut AnyConnection) -> anyhow::Result<Vec<u8>> {
    let configured = settings.secrets.otp_key.expose_secret().as_bytes().to_vec();
    let key = if configured.is_empty() {
        generated_key(c, "otp_key").context("cannot load the generated development key otp_key")?
    } else {
        configured
    };
    checked_length("otp_key", key)
}

impl Keys {
    pub async fn resolve(settings: &Settings, store: &Store) -> anyhow::Result<Self> {
        let otp = symmetric_key(store, "otp_key", &settings.secrets.otp_key).await?;
        let totp = symmetric_key(store, "totp_key", &settings.secrets.totp_key).await?;
        let configured = settings
            .secrets
            .signing_key
            .expose_secret()
            .trim()
            .to_owned();
        let signing_pem = if configured.is_empty() {
            tracing::warn!("secrets.signing_key is not set: using a key generated for this database (development only)");
            let now = chrono::Utc::now().timestamp_millis();
            store
                .run(move |c| {
                    secrets::get_or_create(
                        c,
                        "signing_key",
                        || authd_domain::tokens::TokenSigner::generate_pem().unwrap_or_default(),
                        now,
                    )
                })
                .await
                .context("cannot load the generated development signing key")?
        } else {
            configured
        };
        let mut retired_pems = Vec::new();
        for path in &settings.tokens.retired_signing_key_files {
            retired_pems.push(std::fs::read_to_string(path).with_context(|| {
                format!(
                    "configuration: cannot read tokens.retired_signing_key_files entry {}",
                    path.display()
                )
            })?);
        }
        Ok(Self {
            otp,
            totp,
            signing_pem,
            retired_pems,
        })
    }
}
