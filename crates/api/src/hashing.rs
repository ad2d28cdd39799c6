//! Password hashing off the async workers, with bounded concurrency: argon2 is CPU-bound, and
//! more hashes at once than cores only delays everything else.

use std::sync::Arc;

use authd_domain::{Argon2Params, Password, PasswordHash, PasswordHashError};
use tokio::sync::Semaphore;

use crate::ApiError;

#[derive(Debug, Clone)]
pub struct Hasher {
    params: Argon2Params,
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(params: Argon2Params, concurrency: usize) -> Self {
        let n = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            concurrency
        };
        Self {
            params,
            permits: Arc::new(Semaphore::new(n)),
        }
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

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, ApiError> {
        let params = self.params;
        self.blocking(move || PasswordHash::create(&password, &params))
            .await
    }

    pub async fn verify(&self, hash: PasswordHash, candidate: String) -> Result<bool, ApiError> {
        self.blocking(move || hash.verify(&candidate)).await
    }
}
