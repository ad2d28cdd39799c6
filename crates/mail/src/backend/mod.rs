//! Mail backends. Adding one is one module here plus one line in [`build`].

use std::sync::Arc;

use authd_settings::Backend;
use futures_util::future::BoxFuture;

use crate::seal::Envelope;

mod file;
mod sendmail;
mod smtp;

/// A failed send. Transient failures are retried with backoff; permanent ones mark the mail
/// dead at once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }
}

/// One queued mail as a backend sees it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The outbox row id: unique, used by the file backend to name files.
    pub id: i64,
    pub created_at_ms: i64,
    pub envelope: Envelope,
}

pub trait MailBackend: Send + Sync + std::fmt::Debug {
    /// The name used in metric labels and the outbox (`smtp`, `sendmail`, `file`).
    fn name(&self) -> &'static str;
    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<(), SendError>>;
}

#[derive(Debug, thiserror::Error)]
#[error("mail backend: {0}")]
pub struct BackendError(pub String);

/// The registry: builds the backend an origin's settings name.
pub fn build(settings: Backend<'_>) -> Result<Arc<dyn MailBackend>, BackendError> {
    Ok(match settings {
        Backend::File(s) => Arc::new(file::FileBackend::new(s)?),
        Backend::Smtp(s) => Arc::new(smtp::SmtpBackend::new(s)?),
        Backend::Sendmail(s) => Arc::new(sendmail::SendmailBackend::new(s)),
    })
}
