#![doc = include_str!("../README.md")]

use std::time::Duration;

use actix::prelude::*;
use authd_domain::{Clock, Email};
use authd_mail::{Code, CodeKind, Mail, Mailer, Origin, Render, RenderError, Wake};
use authd_store::{otps, outbox, AnyConnection, Store, StoreError};
use authd_telemetry::names;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What a code is for; it lives in the domain crate so the store and the API name it too.
pub use authd_domain::Purpose;

pub struct OtpIssuer {
    store: Store,
    key: Vec<u8>,
    lifetime: Duration,
    max_attempts: u32,
    mailer: Addr<Mailer>,
    clock: Clock,
}

impl std::fmt::Debug for OtpIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpIssuer")
            .field("lifetime", &self.lifetime)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// A fresh 6-digit code, uniform over 000000–999999, from the OS CSPRNG.
fn generate_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// The keyed hash stored for a code, bound to its user and purpose.
fn code_hash(key: &[u8], user_id: i64, purpose: Purpose, code: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(purpose.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(&user_id.to_be_bytes());
    mac.update(code.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Fills `{email}` and `{otp}` in a link pattern, URL-encoded.
pub fn fill_link(pattern: &str, email: &str, code: &str) -> String {
    pattern
        .replace(
            "{email}",
            &utf8_percent_encode(email, NON_ALPHANUMERIC).to_string(),
        )
        .replace(
            "{otp}",
            &utf8_percent_encode(code, NON_ALPHANUMERIC).to_string(),
        )
}

impl OtpIssuer {
    pub fn new(
        store: Store,
        key: &[u8],
        lifetime: Duration,
        max_attempts: u32,
        mailer: Addr<Mailer>,
        clock: Clock,
    ) -> Self {
        Self {
            clock,
            store,
            key: key.to_vec(),
            lifetime,
            max_attempts,
            mailer,
        }
    }
}

impl Actor for OtpIssuer {
    type Context = Context<Self>;

    /// The code counters exist from the start (at 0, or as they are when a test starts a second
    /// issuer in one process), so dashboards and `rate()` read 0 rather than nothing before
    /// the first code of a kind.
    fn started(&mut self, _ctx: &mut Self::Context) {
        for purpose in Purpose::ALL {
            metrics::counter!(names::OTP_ISSUED_TOTAL, "purpose" => purpose.as_str()).increment(0);
            for outcome in ["valid", "wrong", "burnt", "absent"] {
                metrics::counter!(names::OTP_CHECKS_TOTAL, "purpose" => purpose.as_str(), "outcome" => outcome)
                    .increment(0);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mailer unavailable: {0}")]
    Mailer(#[from] MailboxError),
}

/// Issues a code for a user and mails it, in one transaction with its outbox row.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), IssueError>")]
pub struct Issue {
    pub user_id: i64,
    pub purpose: Purpose,
    pub to: Email,
    pub origin: Origin,
    pub language: Option<String>,
    pub kind: CodeKind,
    /// Link pattern with `{email}` and `{otp}`, if the mail carries a link.
    pub link: Option<String>,
    /// What the code confirms, stored with it (e.g. the address being set up).
    pub target: Option<String>,
    /// The request named the origin or language: remember them for the user's later notices.
    pub remember: bool,
}

fn code_mail(kind: CodeKind, code: &str, link: Option<String>, lifetime: Duration) -> Mail {
    kind.mail(Code {
        code: code.to_owned(),
        link,
        expires_minutes: lifetime.as_secs().div_ceil(60),
    })
}

impl Handler<Issue> for OtpIssuer {
    type Result = ResponseFuture<Result<(), IssueError>>;

    fn handle(&mut self, msg: Issue, _: &mut Self::Context) -> Self::Result {
        let code = generate_code();
        let hash = code_hash(&self.key, msg.user_id, msg.purpose, &code);
        let link = msg
            .link
            .as_deref()
            .map(|p| fill_link(p, msg.to.as_str(), &code));
        let mail = code_mail(msg.kind, &code, link, self.lifetime);
        let (store, mailer, lifetime) = (self.store.clone(), self.mailer.clone(), self.lifetime);
        let clock = self.clock.clone();
        Box::pin(async move {
            let prepared = mailer
                .send(Render {
                    origin: msg.origin.clone(),
                    mail,
                    language: msg.language,
                    to: msg.to,
                })
                .await??;
            let (user_id, purpose, target, remember) =
                (msg.user_id, msg.purpose, msg.target, msg.remember);
            // One job of the store is all-or-nothing (its own savepoint in the writer's
            // batch): the code and its mail are stored together or not at all.
            store
                .run(move |c| {
                    let now = clock.now_ms();
                    otps::replace(
                        c,
                        &otps::NewOtp {
                            user_id,
                            purpose,
                            code_hash: &hash,
                            expires_at_ms: now
                                + i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 2),
                            now_ms: now,
                            origin: &prepared.origin,
                            language: &prepared.language,
                            target: target.as_deref(),
                        },
                    )?;
                    if remember {
                        authd_store::users::remember_mail_target(
                            c,
                            user_id,
                            &prepared.origin,
                            &prepared.language,
                        )?;
                    }
                    outbox::enqueue(c, &prepared.as_new_mail(now))
                })
                .await?;
            metrics::counter!(names::OTP_ISSUED_TOTAL, "purpose" => purpose.as_str()).increment(1);
            mailer.do_send(Wake);
            Ok(())
        })
    }
}

/// Renders the same mail an `Issue` would and runs the same statements, undone, storing
/// nothing: the work done for an address that has no account, so that its answer (including
/// a template failure) and its cost look the same as for a real one.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), IssueError>")]
pub struct Decoy {
    pub to: Email,
    pub origin: Origin,
    pub language: Option<String>,
    pub kind: CodeKind,
    pub link: Option<String>,
}

impl Handler<Decoy> for OtpIssuer {
    type Result = ResponseFuture<Result<(), IssueError>>;

    fn handle(&mut self, msg: Decoy, _: &mut Self::Context) -> Self::Result {
        let code = generate_code();
        let _ = code_hash(&self.key, 0, Purpose::PasswordReset, &code);
        let link = msg
            .link
            .as_deref()
            .map(|p| fill_link(p, msg.to.as_str(), &code));
        let mail = code_mail(msg.kind, &code, link, self.lifetime);
        let (mailer, store) = (self.mailer.clone(), self.store.clone());
        let clock = self.clock.clone();
        Box::pin(async move {
            let prepared = mailer
                .send(Render {
                    origin: msg.origin,
                    mail,
                    language: msg.language,
                    to: msg.to,
                })
                .await??;
            // The same statements as an issue, in a transaction of the same shape, undone:
            // an unknown address costs what a known one does.
            store
                .run(move |c| otps::rehearse_issue(c, &prepared.as_new_mail(clock.now_ms())))
                .await?;
            Ok(())
        })
    }
}

/// A code that matched, and the origin, language and target it was issued with. Only the
/// OtpIssuer makes one, and using the code up goes through it: [`VerifiedOtp::consume`],
/// inside the caller's transaction, so the code is gone exactly when the change it allows is
/// committed.
#[derive(Debug, Clone)]
pub struct VerifiedOtp {
    id: i64,
    code_hash: String,
    origin: String,
    language: String,
    target: Option<String>,
    max_attempts: i32,
}

impl VerifiedOtp {
    /// The origin whose mail carried the code.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The language of that mail.
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The address the code confirms (email-OTP setup, email transfer), if any.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// Uses the code up; call inside the transaction that makes the change the code allows.
    /// False when it is no longer the same live code (used by a parallel request, replaced,
    /// burnt or expired since it was checked): the caller then changes nothing.
    pub fn consume(&self, conn: &mut AnyConnection, now_ms: i64) -> Result<bool, StoreError> {
        otps::consume(conn, self.id, &self.code_hash, self.max_attempts, now_ms)
    }
}

/// Ends every outstanding code of a user, of every purpose (a password or address change makes
/// codes mailed before it worthless). Call inside the transaction that makes the change.
pub fn revoke_all(conn: &mut AnyConnection, user_id: i64) -> Result<(), StoreError> {
    otps::delete_all_for_user(conn, user_id).map(|_| ())
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the code is wrong, expired or used up")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a code without using it up. The guess is admitted and counted against the code
/// by one conditional statement before it is compared, so parallel guesses cannot all be
/// compared against one row: at most `max_attempts` guesses per code are ever compared. A
/// right guess gives its count back; a wrong one that reaches the maximum burns the code.
///
/// `user_id: None` (an address with no account) does the same database work against a row
/// that cannot exist and answers `Invalid`.
#[derive(Debug, Message)]
#[rtype(result = "Result<VerifiedOtp, CheckError>")]
pub struct Check {
    pub user_id: Option<i64>,
    pub purpose: Purpose,
    pub code: String,
}

impl Handler<Check> for OtpIssuer {
    type Result = ResponseFuture<Result<VerifiedOtp, CheckError>>;

    fn handle(&mut self, msg: Check, _: &mut Self::Context) -> Self::Result {
        // No account: hash against an id no row has (ids start at 1), same cost.
        let user_id = msg.user_id.unwrap_or(-1);
        let candidate = code_hash(&self.key, user_id, msg.purpose, &msg.code);
        let store = self.store.clone();
        let max = i32::try_from(self.max_attempts).unwrap_or(i32::MAX);
        let purpose = msg.purpose;
        let now = self.clock.now_ms();
        Box::pin(async move {
            let row = store
                .run(move |c| otps::admit_guess(c, user_id, purpose, max, now))
                .await?;
            let outcome = |o: &'static str| {
                metrics::counter!(names::OTP_CHECKS_TOTAL, "purpose" => purpose.as_str(), "outcome" => o).increment(1);
            };
            let Some(row) = row else {
                outcome("absent");
                return Err(CheckError::Invalid);
            };
            let id = row.id;
            if bool::from(row.code_hash.as_bytes().ct_eq(candidate.as_bytes())) {
                store.run(move |c| otps::give_back_attempt(c, id)).await?;
                outcome("valid");
                return Ok(VerifiedOtp {
                    id: row.id,
                    code_hash: row.code_hash,
                    origin: row.origin,
                    language: row.language,
                    target: row.target,
                    max_attempts: max,
                });
            }
            let burnt =
                row.attempts >= max && store.run(move |c| otps::burn_if_spent(c, id, max)).await?;
            outcome(if burnt { "burnt" } else { "wrong" });
            Err(CheckError::Invalid)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..200).map(|_| generate_code()).collect();
        assert!(codes
            .iter()
            .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        assert!(codes.len() > 190);
    }

    #[test]
    fn hashes_are_bound_to_user_purpose_and_key() {
        let h = code_hash(b"k", 1, Purpose::PasswordReset, "123456");
        assert_ne!(h, code_hash(b"k", 2, Purpose::PasswordReset, "123456"));
        assert_ne!(h, code_hash(b"other", 1, Purpose::PasswordReset, "123456"));
        assert!(!h.contains("123456"));
    }

    #[test]
    fn links_carry_url_encoded_values() {
        assert_eq!(
            fill_link(
                "https://app/reset?email={email}&otp={otp}",
                "a+b@x.org",
                "012345"
            ),
            "https://app/reset?email=a%2Bb%40x%2Eorg&otp=012345"
        );
    }
}
