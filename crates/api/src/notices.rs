//! Security notices: mails that tell an account's owner something changed. They are rendered
//! before the transaction that makes the change and queued inside it, so the change and its
//! notice commit together.

use authd_mail::{Mail, Origin, PreparedMail, Render};

use crate::{ApiError, AppState};

/// Renders a notice for the outbox. A template failure is counted and logged by the Mailer and
/// yields `None`: the change itself must not fail for want of a notice.
pub async fn render(
    state: &AppState,
    mail: Mail,
    origin: Origin,
    language: Option<String>,
    to: authd_domain::Email,
) -> Result<Option<PreparedMail>, ApiError> {
    let kind = mail.kind();
    let render = Render {
        origin,
        mail,
        language,
        to,
    };
    match state.mailer.send(render).await {
        Ok(Ok(mail)) => Ok(Some(mail)),
        Ok(Err(e)) => {
            tracing::error!(kind = kind.as_str(), cause = %e, "a notice could not be rendered");
            Ok(None)
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Queues a rendered notice; call inside the transaction that makes the change.
pub fn enqueue(
    conn: &mut authd_store::AnyConnection,
    notice: Option<&PreparedMail>,
    now_ms: i64,
) -> Result<(), authd_store::StoreError> {
    if let Some(mail) = notice {
        authd_store::outbox::enqueue(conn, &mail.as_new_mail(now_ms))?;
    }
    Ok(())
}
