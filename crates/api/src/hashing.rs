//! Password hashing, and the password policy, off the async workers, with bounded
//! concurrency: argon2 is CPU-bound, and more hashes at once than cores only delays everything
//! else.

use std::sync::{Arc, Mutex, PoisonError};

use authd_domain::{Argon2Params, Password, PasswordHash, PasswordHashError};
use tokio::sync::Semaphore;

use crate::ApiError;

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone)]
pub struct Hasher {
    params: Argon2Params,
    permits: Arc<Semaphore>,
    /// Verified against when there is no account, so that case costs what a real check costs.
    dummy: Arc<PasswordHash>,
    /// argon2 working memory, reused: at most one buffer per permit.
    memory: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
}

impl Hasher {
    /// Builds the hasher and its dummy hash (one argon2 run, at start).
    pub fn new(params: Argon2Params, concurrency: usize) -> Result<Self, PasswordHashError> {
        let n = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            concurrency
        };
        metrics::gauge!(authd_telemetry::names::PASSWORD_HASHING_CONCURRENCY).set(n as f64);
        let mut random = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        let dummy = PasswordHash::create(&Password::verified(&hex_string(&random)), &params)?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(n)),
            dummy: Arc::new(dummy),
            memory: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub fn dummy(&self) -> &PasswordHash {
        &self.dummy
    }

    pub fn params(&self) -> &Argon2Params {
        &self.params
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, PasswordHashError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// Applies the password policy to a new password. Its last rule, the common-password
    /// estimate, is CPU work that grows quickly with length and l33t characters (tens of
    /// milliseconds for a crafted 20-character password), so it runs here, not on a worker.
    pub async fn check_policy(&self, raw: String) -> Result<Password, ApiError> {
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || Password::parse(&raw))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, ApiError> {
        let params = self.params;
        self.blocking(move || PasswordHash::create(&password, &params))
            .await
    }

    pub async fn verify(&self, hash: PasswordHash, candidate: String) -> Result<bool, ApiError> {
        let pool = self.memory.clone();
        self.blocking(move || {
            let mut memory = pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_default();
            let result = hash.verify_with_memory(&candidate, &mut memory);
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
            result
        })
        .await
    }
}
