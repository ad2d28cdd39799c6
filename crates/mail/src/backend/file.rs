//! Writes each mail as one `.eml` file, atomically (a temporary file, then a rename), named so
//! that a directory listing sorts by time: `<UTC time>-<outbox id>.eml`.
//!
//! Durable before it counts as sent: each file's data is synced before its rename, and the
//! directory (which holds the renames) once per delivery round, in [`MailBackend::flush`],
//! before the round's rows are marked sent. A crash in between leaves the rows pending, and
//! the mail is written again under the same name.

use std::io::Write;
use std::path::PathBuf;

use authd_settings::FileSettings;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::{BackendError, Delivered, FailureReason, MailBackend, Outgoing, SendError};

#[derive(Debug)]
pub struct FileBackend {
    dir: PathBuf,
}

impl FileBackend {
    pub fn new(s: &FileSettings) -> Result<Self, BackendError> {
        std::fs::create_dir_all(&s.dir)
            .map_err(|e| BackendError(format!("cannot create {}: {e}", s.dir.display())))?;
        Ok(Self { dir: s.dir.clone() })
    }
}

fn file_name(mail: &Outgoing) -> String {
    let at = chrono::DateTime::from_timestamp_millis(mail.created_at_ms).unwrap_or_default();
    format!("{}-{:010}.eml", at.format("%Y%m%dT%H%M%S%.3fZ"), mail.id)
}

impl MailBackend for FileBackend {
    fn name(&self) -> &'static str {
        "file"
    }

    fn send<'a>(&'a self, mail: &'a Outgoing) -> BoxFuture<'a, Result<Delivered, SendError>> {
        let dir = self.dir.clone();
        let name = file_name(mail);
        let body = mail.envelope.message.clone().into_bytes();
        async move {
            let path = tokio::task::spawn_blocking(move || {
                let tmp = dir.join(format!(".{name}.tmp"));
                let path = dir.join(&name);
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&body)?;
                file.sync_data()?;
                drop(file);
                std::fs::rename(&tmp, &path)?;
                Ok::<_, std::io::Error>(path)
            })
            .await
            .map_err(|e| SendError::transient(FailureReason::Local, e.to_string()))?
            .map_err(|e| {
                SendError::transient(
                    FailureReason::Local,
                    format!("cannot write the mail file: {e}"),
                )
            })?;
            Ok(Delivered {
                detail: format!("wrote {}", path.display()),
            })
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SendError>> {
        let dir = self.dir.clone();
        async move {
            tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
                .await
                .map_err(|e| SendError::transient(FailureReason::Local, e.to_string()))?
                .map_err(|e| {
                    SendError::transient(
                        FailureReason::Local,
                        format!("cannot sync the mail directory: {e}"),
                    )
                })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::Envelope;

    #[test]
    fn file_names_sort_by_time_then_id() {
        let mk = |id, at| Outgoing {
            id,
            created_at_ms: at,
            envelope: Envelope {
                from: String::new(),
                to: vec![],
                message: String::new(),
            },
        };
        let a = file_name(&mk(9, 1_700_000_000_000));
        let b = file_name(&mk(10, 1_700_000_000_000));
        let c = file_name(&mk(2, 1_700_000_000_001));
        assert_eq!(a, "20231114T221320.000Z-0000000009.eml");
        assert!(a < b && b < c);
    }
}
