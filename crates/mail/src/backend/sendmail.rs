//! Hands each mail to a sendmail-compatible program (`program -i -f FROM -- TO...`, message on
//! stdin), e.g. sendmail, postfix, msmtp.

use authd_settings::SendmailSettings;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lettre::address::Envelope as LettreEnvelope;
use lettre::{Address, AsyncSendmailTransport, AsyncTransport, Tokio1Executor};

use super::{MailBackend, Outgoing, SendError};

#[derive(Debug)]
pub struct SendmailBackend {
    transport: AsyncSendmailTransport<Tokio1Executor>,
}

impl SendmailBackend {
    pub fn new(s: &SendmailSettings) -> Self {
        Self {
            transport: AsyncSendmailTransport::new_with_command(s.program.as_os_str()),
        }
    }
}

/// The envelope of a queued mail, parsed back into lettre's type.
pub(super) fn envelope(mail: &Outgoing) -> Result<LettreEnvelope, SendError> {
    let parse = |a: &str| {
        a.parse::<Address>()
            .map_err(|e| SendError::permanent(format!("bad address: {e}")))
    };
    let from = if mail.envelope.from.is_empty() {
        None
    } else {
        Some(parse(&mail.envelope.from)?)
    };
    let to = mail
        .envelope
        .to
        .iter()
        .map(|a| parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    LettreEnvelope::new(from, to).map_err(|e| SendError::permanent(e.to_string()))
}

impl MailBackend for SendmailBackend {
    fn name(&self) -> &'static str {
        "sendmail"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let env = envelope(mail)?;
            // A failing program gives no reliable temporary/permanent signal: retry, and let
            // max_attempts decide.
            self.transport
                .send_raw(&env, mail.envelope.message.as_bytes())
                .await
                .map_err(|e| SendError::transient(format!("sendmail: {e}")))
        }
        .boxed()
    }
}
