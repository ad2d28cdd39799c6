//! An SMTP relay through lettre's pooled async transport, with `none`, `starttls` or `tls`.
//!
//! Which failures are final: only the relay's permanent answer to one mail (a 5xx for its
//! recipient or content). A refused login (535), a relay that cannot be reached or does not
//! answer are our side's or the relay's fault, not the recipient's: the mail waits and is
//! retried, and the failure is counted per origin.

use std::time::Duration;

use authd_settings::{SmtpSettings, SmtpTls};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use super::sendmail::envelope;
use super::{BackendError, Delivered, FailureReason, MailBackend, Outgoing, SendError};

#[derive(Debug)]
pub struct SmtpBackend {
    /// Always `Some` until dropped (see the `Drop` impl).
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
}

/// lettre's connection pool closes its connections on a task it spawns when dropped, which
/// panics outside a Tokio runtime — as when the actor system has already stopped at process
/// exit or at the end of a test, turning a clean shutdown into an abort. There the pool is
/// left to the exit instead (the kernel closes its sockets).
impl Drop for SmtpBackend {
    fn drop(&mut self) {
        if let Some(transport) = self.transport.take() {
            if tokio::runtime::Handle::try_current().is_err() {
                std::mem::forget(transport);
            }
        }
    }
}

impl SmtpBackend {
    pub fn new(s: &SmtpSettings) -> Result<Self, BackendError> {
        let tls = match s.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let params =
                    TlsParameters::new(s.host.clone()).map_err(|e| BackendError(e.to_string()))?;
                if s.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(s.timeout_secs)))
            .pool_config(PoolConfig::new().max_size(s.pool_size));
        if !s.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                s.username.clone(),
                s.password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: Some(builder.build()),
        })
    }
}

/// Reply codes that mean "your login failed" (RFC 4954): 530 authentication required, 534
/// mechanism too weak, 535 credentials invalid, 538 encryption required, 454 temporary
/// authentication failure.
const AUTH_CODES: &[u16] = &[454, 530, 534, 535, 538];

/// Sorts a failed send: its reason, and whether it is final for this mail.
fn classify(code: Option<u16>, timed_out: bool, auth_client_error: bool) -> (FailureReason, bool) {
    match code {
        _ if timed_out => (FailureReason::Timeout, false),
        Some(c) if AUTH_CODES.contains(&c) => (FailureReason::Auth, false),
        // "Service not available, closing transmission channel".
        Some(421) => (FailureReason::Connect, false),
        Some(c) if (500..600).contains(&c) => (FailureReason::Rejected, true),
        Some(_) => (FailureReason::Deferred, false),
        None if auth_client_error => (FailureReason::Auth, false),
        None => (FailureReason::Connect, false),
    }
}

fn send_error(e: &lettre::transport::smtp::Error) -> SendError {
    let text = format!("smtp: {e}");
    let auth_client_error = e.is_client() && text.to_ascii_lowercase().contains("authentication");
    let (reason, permanent) =
        classify(e.status().map(u16::from), e.is_timeout(), auth_client_error);
    if permanent {
        SendError::permanent(reason, text)
    } else {
        SendError::transient(reason, text)
    }
}

impl MailBackend for SmtpBackend {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<Delivered, SendError>> {
        async move {
            let env = envelope(mail)?;
            let Some(transport) = self.transport.as_ref() else {
                return Err(SendError::transient(
                    FailureReason::Connect,
                    "smtp: the backend is shutting down",
                ));
            };
            let response = transport
                .send_raw(&env, mail.envelope.message.as_bytes())
                .await
                .map_err(|e| send_error(&e))?;
            let text: Vec<&str> = response.message().collect();
            Ok(Delivered {
                detail: format!("{} {}", response.code(), text.join(" ")),
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_permanent_answer_to_the_mail_is_final() {
        use FailureReason::*;
        assert_eq!(classify(Some(550), false, false), (Rejected, true));
        assert_eq!(classify(Some(553), false, false), (Rejected, true));
        assert_eq!(classify(Some(552), false, false), (Rejected, true));
        for code in [535, 530, 534, 538, 454] {
            assert_eq!(classify(Some(code), false, false), (Auth, false), "{code}");
        }
        assert_eq!(classify(Some(421), false, false), (Connect, false));
        assert_eq!(classify(Some(451), false, false), (Deferred, false));
        assert_eq!(classify(None, false, false), (Connect, false));
        assert_eq!(classify(None, true, false), (Timeout, false));
        assert_eq!(classify(None, false, true), (Auth, false));
    }
}
