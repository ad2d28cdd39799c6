//! Security notices: mails that tell an account's owner something changed. They are rendered
//! before the transaction that makes the change and queued inside it, so the change and its
//! notice commit together.

use authd_mail::{Mail, Origin, PreparedMail, Render};
use authd_store::{AnyConnection, StoreError};

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

/// Makes a change and queues its notice in one transaction, then wakes the Mailer once it
/// committed: the one place a notice is queued. `change` gets the connection and the time
/// and answers its value and which of `notices` to queue: `None` when it changed nothing (a
/// code used by a parallel request), so no one is told of a change that did not happen; more
/// than one notice when its wording depends on what the transaction finds.
pub async fn commit<T, F>(
    state: &AppState,
    notices: Vec<Option<PreparedMail>>,
    mut change: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnMut(&mut AnyConnection, i64) -> Result<(T, Option<usize>), StoreError> + Send + 'static,
{
    let clock = state.clock.clone();
    let (value, queued) = state
        .store
        // The job's savepoint makes the change and its notice all-or-nothing: no inner
        // transaction needed.
        .run(move |c| {
            let now = clock.now_ms();
            let (value, which) = change(c, now)?;
            let notice = which.and_then(|i| notices.get(i)).and_then(Option::as_ref);
            if let Some(mail) = notice {
                authd_store::outbox::enqueue(c, &mail.as_new_mail(now))?;
            }
            Ok((value, notice.is_some()))
        })
        .await?;
    if queued {
        state.mailer.do_send(authd_mail::Wake);
    }
    Ok(value)
}
