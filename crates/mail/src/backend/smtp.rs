//! An SMTP relay through lettre's pooled async transport, with `none`, `starttls` or `tls`.

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
use super::{BackendError, MailBackend, Outgoing, SendError};

#[derive(Debug)]
pub struct SmtpBackend {
    transport: AsyncSmtpTransport<Tokio1Executor>,
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
            transport: builder.build(),
        })
    }
}

impl MailBackend for SmtpBackend {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let env = envelope(mail)?;
            self.transport
                .send_raw(&env, mail.envelope.message.as_bytes())
                .await
                .map(|_| ())
                .map_err(|e| {
                    // 5xx answers are final; everything else (4xx, connection refused, timeouts)
                    // may pass on a later try.
                    if e.is_permanent() {
                        SendError::permanent(format!("smtp: {e}"))
                    } else {
                        SendError::transient(format!("smtp: {e}"))
                    }
                })
        }
        .boxed()
    }
}
