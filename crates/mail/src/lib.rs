#![doc = include_str!("../README.md")]

pub mod backend;
mod catalog;
mod compose;
mod forbidden;
mod kind;
pub mod mailbox;
mod mailer;
mod mails;
mod origin;
mod seal;
mod templates;

pub use backend::{Delivered, FailureReason, MailBackend, Outgoing, SendError};
pub use catalog::{Catalog, RenderedParts, TemplateError};
pub use compose::{ComposeError, KIND_HEADER, LANGUAGE_HEADER};
pub use forbidden::ForbiddenDomains;
pub use kind::MailKind;
pub use mailer::{
    prepare_mail, render_delivery_test, render_mail, send_with_timeout, Drain, Mailer, MailerError,
    PreparedMail, Render, RenderError, Wake,
};
pub use mails::{Changed, Code, CodeKind, EmailChange, Mail, RecoveryCodeUse, TwoFactorChange};
pub use origin::Origin;
pub use seal::{Envelope, Sealer};
pub use templates::{watch as watch_templates, Templates};
