//! Hands each mail to a sendmail-compatible program (`program -i -f FROM -- TO...`, message on
//! stdin), e.g. sendmail, postfix, msmtp. The program is run here rather than through lettre's
//! transport so that its exit status can be reported (`authd mail test`).

use std::path::PathBuf;
use std::process::Stdio;

use authd_settings::SendmailSettings;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lettre::address::Envelope as LettreEnvelope;
use lettre::Address;
use tokio::io::AsyncWriteExt;

use super::{Delivered, FailureReason, MailBackend, Outgoing, SendError};

#[derive(Debug)]
pub struct SendmailBackend {
    program: PathBuf,
}

impl SendmailBackend {
    pub fn new(s: &SendmailSettings) -> Self {
        Self {
            program: s.program.clone(),
        }
    }
}

/// The envelope of a queued mail, parsed back into lettre's type.
pub(super) fn envelope(mail: &Outgoing) -> Result<LettreEnvelope, SendError> {
    let parse = |a: &str| {
        a.parse::<Address>()
            .map_err(|e| SendError::permanent(FailureReason::Local, format!("bad address: {e}")))
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
    LettreEnvelope::new(from, to)
        .map_err(|e| SendError::permanent(FailureReason::Local, e.to_string()))
}

impl SendmailBackend {
    async fn run(&self, mail: &Outgoing) -> Result<Delivered, SendError> {
        let env = envelope(mail)?;
        // A failing program gives no reliable temporary/permanent signal: retry, and let
        // max_attempts decide.
        let failed = |what: String| SendError::transient(FailureReason::Local, what);
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.kill_on_drop(true).arg("-i");
        if let Some(from) = env.from() {
            cmd.arg("-f").arg(from);
        }
        cmd.arg("--")
            .args(env.to())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            failed(format!(
                "sendmail: cannot run {}: {e}",
                self.program.display()
            ))
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(mail.envelope.message.as_bytes())
                .await
                .map_err(|e| failed(format!("sendmail: cannot write the message: {e}")))?;
            // Dropping stdin closes it: the program reads the message to its end.
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| failed(format!("sendmail: {e}")))?;
        if out.status.success() {
            Ok(Delivered {
                detail: format!("{} exited with {}", self.program.display(), out.status),
            })
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(failed(format!(
                "sendmail: {} exited with {}: {}",
                self.program.display(),
                out.status,
                stderr.trim()
            )))
        }
    }
}

impl MailBackend for SendmailBackend {
    fn name(&self) -> &'static str {
        "sendmail"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<Delivered, SendError>> {
        self.run(mail).boxed()
    }
}
