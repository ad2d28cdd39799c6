//! Typed mails: one variant per kind, holding exactly the variables its templates use. The
//! template folder and metric label ([`Mail::kind`]), the preview samples ([`Mail::sample`],
//! for `authd mail preview` and `authd templates check`) and the variables handed to Tera
//! ([`Mail::vars`]) all derive from it, so a kind cannot be queued with another kind's
//! variables, and no caller writes template variables by hand.
//!
//! Every template also gets `product_name`, `email`, `language` and `origin` (added when it
//! is rendered).

use authd_domain::Clock;
use serde::Serialize;

use crate::MailKind;

/// A mail to render, with its variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mail {
    PasswordReset(Code),
    EmailOtpSetup(Code),
    EmailOtpChallenge(Code),
    EmailTransferVerify(Code),
    PasswordChanged(Changed),
    RecoveryCodesReset(Changed),
    TwoFactorChanged(TwoFactorChange),
    RecoveryCodeUsed(RecoveryCodeUse),
    EmailChanged(EmailChange),
}

/// The kinds that carry a one-time code (issued by the OtpIssuer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    PasswordReset,
    EmailOtpSetup,
    EmailOtpChallenge,
    EmailTransferVerify,
}

impl CodeKind {
    /// The mail of this kind carrying `code`.
    pub fn mail(self, code: Code) -> Mail {
        match self {
            Self::PasswordReset => Mail::PasswordReset(code),
            Self::EmailOtpSetup => Mail::EmailOtpSetup(code),
            Self::EmailOtpChallenge => Mail::EmailOtpChallenge(code),
            Self::EmailTransferVerify => Mail::EmailTransferVerify(code),
        }
    }

    pub fn kind(self) -> MailKind {
        match self {
            Self::PasswordReset => MailKind::PasswordReset,
            Self::EmailOtpSetup => MailKind::EmailOtpSetup,
            Self::EmailOtpChallenge => MailKind::EmailOtpChallenge,
            Self::EmailTransferVerify => MailKind::EmailTransferVerify,
        }
    }
}

/// A one-time code mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Code {
    pub code: String,
    /// The origin's link pattern filled with the address and code (reset mails).
    pub link: Option<String>,
    pub expires_minutes: u64,
}

/// A notice that something changed, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub changed_at: String,
}

impl Changed {
    /// Now, on `clock`, as notices show it (`2026-11-26 22:40 UTC`).
    pub fn now(clock: &Clock) -> Self {
        Self {
            changed_at: chrono::DateTime::from_timestamp_millis(clock.now_ms())
                .unwrap_or_default()
                .format("%Y-%m-%d %H:%M UTC")
                .to_string(),
        }
    }
}

/// A second factor turned on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TwoFactorChange {
    /// `email_otp` or `totp`.
    pub method: &'static str,
    pub enabled: bool,
    /// Whether two-factor authentication is still on after the change.
    pub two_factor_on: bool,
    #[serde(flatten)]
    pub changed: Changed,
}

/// A recovery code was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryCodeUse {
    pub remaining: i64,
    #[serde(flatten)]
    pub changed: Changed,
}

/// The login address changed (sent to the old address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailChange {
    /// The new address, masked (`b***@example.org`): the old owner learns that, not where.
    pub new_email_masked: String,
    #[serde(flatten)]
    pub changed: Changed,
}

impl Mail {
    pub fn kind(&self) -> MailKind {
        match self {
            Self::PasswordReset(_) => MailKind::PasswordReset,
            Self::EmailOtpSetup(_) => MailKind::EmailOtpSetup,
            Self::EmailOtpChallenge(_) => MailKind::EmailOtpChallenge,
            Self::EmailTransferVerify(_) => MailKind::EmailTransferVerify,
            Self::PasswordChanged(_) => MailKind::PasswordChanged,
            Self::RecoveryCodesReset(_) => MailKind::RecoveryCodesReset,
            Self::TwoFactorChanged(_) => MailKind::TwoFactorChanged,
            Self::RecoveryCodeUsed(_) => MailKind::RecoveryCodeUsed,
            Self::EmailChanged(_) => MailKind::EmailChanged,
        }
    }

    /// The template variables, as a JSON object.
    pub fn vars(&self) -> serde_json::Value {
        let value = match self {
            Self::PasswordReset(c)
            | Self::EmailOtpSetup(c)
            | Self::EmailOtpChallenge(c)
            | Self::EmailTransferVerify(c) => serde_json::to_value(c),
            Self::PasswordChanged(c) | Self::RecoveryCodesReset(c) => serde_json::to_value(c),
            Self::TwoFactorChanged(c) => serde_json::to_value(c),
            Self::RecoveryCodeUsed(c) => serde_json::to_value(c),
            Self::EmailChanged(c) => serde_json::to_value(c),
        };
        // Plain structs of strings, numbers and booleans always serialise.
        value.unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()))
    }

    /// Example values for every variable of a kind, for previews and template checks.
    pub fn sample(kind: MailKind) -> Self {
        let changed = || Changed {
            changed_at: "2026-11-26 22:40 UTC".to_owned(),
        };
        let code = |link: Option<&str>| Code {
            code: "123456".to_owned(),
            link: link.map(str::to_owned),
            expires_minutes: 10,
        };
        match kind {
            MailKind::PasswordReset => Self::PasswordReset(code(Some(
                "https://app.example.org/reset?email=ann%40example.org&otp=123456",
            ))),
            MailKind::EmailOtpSetup => Self::EmailOtpSetup(code(None)),
            MailKind::EmailOtpChallenge => Self::EmailOtpChallenge(code(None)),
            MailKind::EmailTransferVerify => Self::EmailTransferVerify(code(None)),
            MailKind::PasswordChanged => Self::PasswordChanged(changed()),
            MailKind::RecoveryCodesReset => Self::RecoveryCodesReset(changed()),
            MailKind::TwoFactorChanged => Self::TwoFactorChanged(TwoFactorChange {
                method: "totp",
                enabled: true,
                two_factor_on: true,
                changed: changed(),
            }),
            MailKind::RecoveryCodeUsed => Self::RecoveryCodeUsed(RecoveryCodeUse {
                remaining: 2,
                changed: changed(),
            }),
            MailKind::EmailChanged => Self::EmailChanged(EmailChange {
                new_email_masked: "b***@example.org".to_owned(),
                changed: changed(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_sample_of_its_own_kind() {
        for kind in MailKind::ALL {
            assert_eq!(Mail::sample(*kind).kind(), *kind);
        }
    }

    #[test]
    fn the_variables_are_the_ones_the_templates_use() {
        let vars = Mail::sample(MailKind::RecoveryCodeUsed).vars();
        assert_eq!(
            vars,
            serde_json::json!({ "remaining": 2, "changed_at": "2026-11-26 22:40 UTC" })
        );
        let vars = Mail::sample(MailKind::PasswordReset).vars();
        assert_eq!(vars["code"], "123456");
        assert_eq!(vars["expires_minutes"], 10);
        for kind in [
            CodeKind::PasswordReset,
            CodeKind::EmailOtpSetup,
            CodeKind::EmailOtpChallenge,
            CodeKind::EmailTransferVerify,
        ] {
            let mail = kind.mail(Code {
                code: "000001".into(),
                link: None,
                expires_minutes: 1,
            });
            assert_eq!(mail.kind(), kind.kind());
        }
    }

    #[test]
    fn changed_at_reads_the_clock() {
        let clock = Clock::adjustable();
        let before = Changed::now(&clock);
        clock.advance(std::time::Duration::from_secs(2 * 86_400));
        assert_ne!(Changed::now(&clock), before);
        assert!(before.changed_at.ends_with(" UTC"));
    }
}
