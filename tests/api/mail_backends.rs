//! The SMTP and sendmail backends against a real SMTP server (aiosmtpd), the sendmail one
//! through a real sendmail-compatible program (msmtp): the reset mail that arrives is parsed
//! with a standard mail parser, and its code is the one the server accepts.

use std::time::Duration;

use authd_tests::smtp::{create_user, sendmail_program, SmtpServer};
use authd_tests::{both_dbs, Db, TestApp};
use mail_parser::{MessageParser, PartType};
use serde_json::json;

pub(crate) const AUTHD: &str = env!("CARGO_BIN_EXE_authd-under-test");
pub(crate) const PASSWORD: &str = "Correct1horse";
/// The subject of the default origin's English reset mail.
pub(crate) const RESET_SUBJECT: &str = "Reset your Example password";
const DELIVERY: Duration = Duration::from_secs(20);

/// A message as the SMTP server received it, parsed.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedMail {
    /// The envelope, as the server saw it (`X-MailFrom`, `X-RcptTo`).
    pub mail_from: String,
    pub rcpt_to: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl ReceivedMail {
    /// Parses a received message and checks its MIME structure: multipart/alternative with
    /// exactly one text/plain and one text/html part.
    pub fn parse(raw: &str) -> Self {
        let msg = MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap_or_else(|| panic!("not a mail message:\n{raw}"));
        let header = |name: &str| {
            msg.header_raw(name)
                .unwrap_or_else(|| panic!("no {name} header in:\n{raw}"))
                .trim()
                .to_owned()
        };
        let addr = |a: Option<&mail_parser::Address<'_>>, what: &str| {
            let list = a.unwrap_or_else(|| panic!("no {what} in:\n{raw}"));
            assert_eq!(list.iter().count(), 1, "one {what} address in:\n{raw}");
            list.first()
                .and_then(|a| a.address())
                .unwrap_or_else(|| panic!("no {what} address in:\n{raw}"))
                .to_owned()
        };
        let root_type = msg
            .root_part()
            .headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case("content-type"))
            .and_then(|h| h.value().as_content_type())
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .unwrap_or_default();
        assert_eq!(root_type, "multipart/alternative", "{raw}");
        let mut texts = Vec::new();
        let mut htmls = Vec::new();
        for part in &msg.parts {
            match &part.body {
                PartType::Text(t) => texts.push(t.to_string()),
                PartType::Html(h) => htmls.push(h.to_string()),
                PartType::Multipart(_) => {}
                other => panic!("unexpected part {other:?} in:\n{raw}"),
            }
        }
        assert_eq!(texts.len(), 1, "one text/plain part in:\n{raw}");
        assert_eq!(htmls.len(), 1, "one text/html part in:\n{raw}");
        Self {
            mail_from: header("X-MailFrom"),
            rcpt_to: header("X-RcptTo"),
            from: addr(msg.from(), "From"),
            to: addr(msg.to(), "To"),
            subject: msg
                .subject()
                .unwrap_or_else(|| panic!("no Subject in:\n{raw}"))
                .to_owned(),
            text: texts.remove(0),
            html: htmls.remove(0),
        }
    }

    /// The one-time code: the 6-digit `otp=` value of the link in the text part, which the
    /// text part also shows on its own and the HTML part shows too.
    pub fn code(&self) -> String {
        let at = self
            .text
            .find("otp=")
            .unwrap_or_else(|| panic!("no reset link with otp= in the text part:\n{}", self.text));
        let code: String = self.text[at + 4..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(code.len(), 6, "a 6-digit code in the link: {:?}", self.text);
        let standalone = six_digit_tokens(&self.text);
        assert!(
            standalone.iter().all(|t| *t == code) && !standalone.is_empty(),
            "the text part shows the code {code} and no other 6-digit number: {standalone:?}"
        );
        assert!(
            self.html.contains(&code),
            "the HTML part shows the code {code}"
        );
        code
    }

    /// Checks everything a reset mail for `to` from the default origin must carry, and returns
    /// its code.
    pub fn assert_reset_mail_for(&self, to: &str) -> String {
        assert_eq!(self.rcpt_to, to, "envelope recipient");
        assert_eq!(self.mail_from, "no-reply@example.org", "envelope sender");
        assert_eq!(self.to, to, "To header");
        assert_eq!(self.from, "no-reply@example.org", "From header");
        assert_eq!(self.subject, RESET_SUBJECT);
        assert!(self.text.contains("Enter this code"), "{}", self.text);
        assert!(
            self.html.contains("<html") || self.html.contains("<!DOCTYPE"),
            "{}",
            self.html
        );
        let code = self.code();
        let link = format!(
            "http://localhost:3000/reset-password?email={}&otp={code}",
            to.replace('@', "%40").replace('.', "%2E")
        );
        assert!(
            self.text.contains(&link),
            "the text part carries {link}:\n{}",
            self.text
        );
        code
    }
}

/// Every maximal run of exactly 6 ASCII digits.
fn six_digit_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|t| t.len() == 6)
        .map(str::to_owned)
        .collect()
}

fn smtp_settings(port: &str) -> [(&'static str, &str); 4] {
    [
        ("AUTHD__ORIGINS__DEFAULT__BACKEND", "smtp"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__HOST", "127.0.0.1"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__PORT", port),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__TLS", "none"),
    ]
}

/// Asks for a reset mail for `email` and returns the raw message the SMTP server received.
async fn reset_mail(app: &TestApp, smtp: &SmtpServer, email: &str) -> String {
    create_user(AUTHD, &app.db.url, email, PASSWORD);
    let res = app
        .post_json("/user/password/reset/send", &json!({ "email": email }))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    let mut messages = smtp.wait_for_async(1, DELIVERY).await;
    assert_eq!(messages.len(), 1, "one mail");
    messages.remove(0)
}

/// The mailed code is the live one: the server accepts it for that address.
async fn assert_code_is_valid(app: &TestApp, email: &str, code: &str) {
    let res = app
        .post_json(
            "/user/password/reset/validate",
            &json!({ "email": email, "otp": code }),
        )
        .await;
    assert_eq!(res.status, 200, "the mailed code validates: {}", res.text);
}

both_dbs!(
    the_smtp_backend_delivers_the_reset_mail_to_a_real_smtp_server,
    the_sendmail_backend_delivers_the_reset_mail_through_msmtp,
    both_backends_put_the_same_message_on_the_wire,
);

async fn the_smtp_backend_delivers_the_reset_mail_to_a_real_smtp_server(db: Db) {
    let smtp = SmtpServer::start();
    let port = smtp.port().to_string();
    let app = TestApp::spawn_with(db, &smtp_settings(&port)).await;

    let raw = reset_mail(&app, &smtp, "ann@example.org").await;
    let mail = ReceivedMail::parse(&raw);
    let code = mail.assert_reset_mail_for("ann@example.org");
    assert_code_is_valid(&app, "ann@example.org", &code).await;
}

async fn the_sendmail_backend_delivers_the_reset_mail_through_msmtp(db: Db) {
    let smtp = SmtpServer::start();
    let bin = tempfile::tempdir().unwrap();
    let program = sendmail_program(bin.path(), smtp.port());
    let program = program.to_str().unwrap();
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__ORIGINS__DEFAULT__BACKEND", "sendmail"),
            ("AUTHD__ORIGINS__DEFAULT__SENDMAIL__PROGRAM", program),
        ],
    )
    .await;

    let raw = reset_mail(&app, &smtp, "bob@example.org").await;
    let mail = ReceivedMail::parse(&raw);
    // The envelope sender is authd's (`-f`), not msmtp's configured fallback.
    let code = mail.assert_reset_mail_for("bob@example.org");
    assert_code_is_valid(&app, "bob@example.org", &code).await;
    let msmtp_log = std::fs::read_to_string(bin.path().join("msmtp.log")).unwrap();
    assert_eq!(
        msmtp_log.lines().count(),
        1,
        "msmtp relayed exactly one mail: {msmtp_log}"
    );
    assert!(msmtp_log.contains("smtpstatus=250"), "{msmtp_log}");
}

async fn both_backends_put_the_same_message_on_the_wire(db: Db) {
    let (via_smtp, via_sendmail) = (SmtpServer::start(), SmtpServer::start());
    let port = via_smtp.port().to_string();
    let bin = tempfile::tempdir().unwrap();
    let program = sendmail_program(bin.path(), via_sendmail.port());
    let smtp_app = TestApp::spawn_with(db, &smtp_settings(&port)).await;
    let sendmail_app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__ORIGINS__DEFAULT__BACKEND", "sendmail"),
            (
                "AUTHD__ORIGINS__DEFAULT__SENDMAIL__PROGRAM",
                program.to_str().unwrap(),
            ),
        ],
    )
    .await;

    let a = ReceivedMail::parse(&reset_mail(&smtp_app, &via_smtp, "cy@example.org").await);
    let b = ReceivedMail::parse(&reset_mail(&sendmail_app, &via_sendmail, "cy@example.org").await);
    let (code_a, code_b) = (
        a.assert_reset_mail_for("cy@example.org"),
        b.assert_reset_mail_for("cy@example.org"),
    );
    assert_eq!((&a.to, &a.from, &a.subject), (&b.to, &b.from, &b.subject));
    assert_eq!((&a.mail_from, &a.rcpt_to), (&b.mail_from, &b.rcpt_to));
    // Apart from the code, the parts are the same text: neither path rewrites the body.
    assert_eq!(
        a.text.replace(&code_a, "CODE"),
        b.text.replace(&code_b, "CODE")
    );
    assert_eq!(
        a.html.replace(&code_a, "CODE"),
        b.html.replace(&code_b, "CODE")
    );
    assert_code_is_valid(&smtp_app, "cy@example.org", &code_a).await;
    assert_code_is_valid(&sendmail_app, "cy@example.org", &code_b).await;
}
