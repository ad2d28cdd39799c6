//! Mail backends. Adding one is one module here plus one line in [`build`].

use std::sync::Arc;

use authd_settings::Backend;
use futures_util::future::BoxFuture;

use crate::seal::Envelope;

mod file;
mod sendmail;
mod smtp;

/// Why a send failed: a metric label (`auth_mail_backend_failures_total{reason}`), so a fixed
/// set. `Auth`, `Connect` and `Timeout` are faults of our side or of the relay (the backend is
/// unusable, whatever the mail); `Deferred` and `Rejected` are the server's answer to one mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The relay refused our credentials (535 and friends) or offers no usable mechanism.
    Auth,
    /// No usable connection: refused, reset, TLS failed, the relay closing on us (421).
    Connect,
    /// The relay did not answer in time.
    Timeout,
    /// A temporary (4xx) answer to this mail.
    Deferred,
    /// A permanent (5xx) answer to this mail: its recipient or content is refused.
    Rejected,
    /// A fault on this host: an unreadable queued mail, a file that cannot be written, a
    /// sendmail program that fails or cannot be run.
    Local,
}

impl FailureReason {
    pub const ALL: &'static [FailureReason] = &[
        Self::Auth,
        Self::Connect,
        Self::Timeout,
        Self::Deferred,
        Self::Rejected,
        Self::Local,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Deferred => "deferred",
            Self::Rejected => "rejected",
            Self::Local => "local",
        }
    }

    /// Whether the backend itself is failing (so every mail of the origin will fail alike),
    /// rather than one mail being refused.
    pub fn is_backend_fault(self) -> bool {
        matches!(
            self,
            Self::Auth | Self::Connect | Self::Timeout | Self::Local
        )
    }
}

/// A failed send. Transient failures are retried with backoff; permanent ones mark the mail
/// dead at once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub reason: FailureReason,
    pub message: String,
}

impl SendError {
    pub fn transient(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            reason,
            message: redact_addresses(&message.into()),
        }
    }

    pub fn permanent(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            reason,
            message: redact_addresses(&message.into()),
        }
    }
}

/// What a backend reports for a mail it handed on: the relay's final answer (`250 ...`), the
/// file written, or the program's exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub detail: String,
}

/// Masks every address-looking word of a server's answer (`550 5.1.1 <ann@example.org>:
/// unknown`): the text is logged and kept in the outbox, and neither may hold a full address.
pub fn redact_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match word.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                let first: String = local.chars().take(1).collect();
                out.push_str(&first);
                out.push_str("***@");
                out.push_str(domain);
            }
            _ => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace()
            || matches!(
                c,
                '<' | '>' | '"' | '\'' | ',' | ';' | '(' | ')' | '[' | ']'
            )
        {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
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
    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<Delivered, SendError>>;
    /// Makes the round's sends durable, where `send` alone does not (the file backend syncs
    /// its directory once per round). Called after a round's sends and before its mails are
    /// marked sent; an error turns that round's deliveries through this backend into
    /// transient failures.
    fn flush(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_server_answers_are_masked() {
        assert_eq!(
            redact_addresses("permanent error (550): 5.1.1 <ann@example.org>: Recipient unknown"),
            "permanent error (550): 5.1.1 <a***@example.org>: Recipient unknown"
        );
        assert_eq!(
            redact_addresses("user bob.smith@mail.example.org, not found"),
            "user b***@mail.example.org, not found"
        );
        let plain = "permanent error (535): 5.7.8 Authentication credentials invalid";
        assert_eq!(redact_addresses(plain), plain);
        assert_eq!(redact_addresses("a @ b"), "a @ b");
    }
}
