//! Rendered parts → one RFC 5322 message (multipart/alternative: text and HTML) and its
//! envelope.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

use crate::catalog::RenderedParts;
use crate::seal::Envelope;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid address in {field}: {cause}")]
    Address { field: &'static str, cause: String },
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// Checks an origin's sender addresses once, at start.
pub fn check_addresses(from: &str, reply_to: &str) -> Result<(), ComposeError> {
    from.parse::<Mailbox>().map_err(|e| ComposeError::Address {
        field: "from",
        cause: e.to_string(),
    })?;
    if !reply_to.is_empty() {
        reply_to
            .parse::<Mailbox>()
            .map_err(|e| ComposeError::Address {
                field: "reply_to",
                cause: e.to_string(),
            })?;
    }
    Ok(())
}

/// A new Message-ID on the sender's domain (`<random@example.org>`), not this host's name: it
/// is made once, when the mail is rendered for the outbox, and travels inside the queued
/// message, so every delivery attempt of one outbox row (a retry, or a re-send after a crash
/// took the result with it) carries the same Message-ID and receivers can drop duplicates.
fn message_id(from: &Mailbox) -> String {
    format!(
        "<{}@{}>",
        uuid::Uuid::new_v4().simple(),
        from.email.domain()
    )
}

/// Header naming the mail's kind (`password_reset`, …, `delivery_test`): the development
/// mailbox shows it, and a receiver's filters can sort by it.
pub const KIND_HEADER: &str = "X-Authd-Kind";
/// Header naming the language the mail was rendered in (after the fallback chain).
pub const LANGUAGE_HEADER: &str = "X-Authd-Language";

pub fn compose(
    from: &str,
    reply_to: &str,
    to: &str,
    kind: &'static str,
    parts: &RenderedParts,
) -> Result<Envelope, ComposeError> {
    let from: Mailbox =
        from.parse()
            .map_err(|e: lettre::address::AddressError| ComposeError::Address {
                field: "from",
                cause: e.to_string(),
            })?;
    let to: Mailbox =
        to.parse()
            .map_err(|e: lettre::address::AddressError| ComposeError::Address {
                field: "to",
                cause: e.to_string(),
            })?;
    let message_id = message_id(&from);
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(parts.subject.clone())
        .message_id(Some(message_id))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(KIND_HEADER),
            kind.to_owned(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(LANGUAGE_HEADER),
            parts.language.clone(),
        ));
    if !reply_to.is_empty() {
        let reply: Mailbox = reply_to
            .parse()
            .map_err(|e: lettre::address::AddressError| ComposeError::Address {
                field: "reply_to",
                cause: e.to_string(),
            })?;
        builder = builder.reply_to(reply);
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(
            parts.text.clone(),
            parts.html.clone(),
        ))
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    let envelope = message.envelope();
    Ok(Envelope {
        from: envelope.from().map(ToString::to_string).unwrap_or_default(),
        to: envelope.to().iter().map(ToString::to_string).collect(),
        message: String::from_utf8(message.formatted())
            .map_err(|e| ComposeError::Build(e.to_string()))?,
    })
}
