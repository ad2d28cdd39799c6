//! SMTP relays that require a login, a login that fails, `authd mail test`, and the
//! Message-ID a mail keeps across deliveries. The relay is a real aiosmtpd process requiring
//! AUTH (PLAIN/LOGIN); authd is the real server, in process or as the real binary.
//!
//! Keys proven here: `origins.<name>.smtp.username`, `origins.<name>.smtp.password`,
//! `origins.<name>.smtp.password_file`, `origins.<name>.reply_to`,
//! `origins.<name>.product_name`, `mail.send_timeout_secs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authd_tests::smtp::{
    create_user, sendmail_program, AuthdProcess, SmtpOptions, SmtpServer, TEST_OTP_KEY,
};
use authd_tests::{both_dbs, metric_value, Db, TestApp, TestDb};
use diesel::sql_types::{Integer, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use serde_json::json;

use crate::mail_backends::{ReceivedMail, AUTHD, PASSWORD};

const SEND: &str = "/user/password/reset/send";
const DELIVERY: Duration = Duration::from_secs(20);
const RELAY_USER: &str = "authd-relay";
const RELAY_PASSWORD: &str = "Relay-pass-7f3a";

/// The default origin sending through the relay on `port` as `RELAY_USER`.
fn smtp_with_login<'a>(port: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut settings = vec![
        ("AUTHD__ORIGINS__DEFAULT__BACKEND", "smtp"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__HOST", "127.0.0.1"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__PORT", port),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__TLS", "none"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__USERNAME", RELAY_USER),
    ];
    settings.extend_from_slice(extra);
    settings
}

/// The `Message-ID` header of a raw message.
fn message_id(raw: &str) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap_or_else(|| panic!("not a mail message:\n{raw}"));
    msg.header_raw("Message-ID")
        .unwrap_or_else(|| panic!("no Message-ID in:\n{raw}"))
        .trim()
        .to_owned()
}

fn header(raw: &str, name: &str) -> Option<String> {
    mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .and_then(|m| m.header_raw(name).map(|v| v.trim().to_owned()))
}

async fn ask_reset(app: &TestApp, email: &str) {
    create_user(AUTHD, &app.db.url, email, PASSWORD);
    let res = app.post_json(SEND, &json!({ "email": email })).await;
    assert_eq!(res.status, 200, "{}", res.text);
}

both_dbs!(
    a_relay_refusing_the_recipient_with_550_is_final_at_once_and_its_answer_is_kept_masked,
    the_reset_mail_reaches_a_relay_requiring_auth_with_smtp_username_and_inline_password,
    the_reset_mail_reaches_a_relay_requiring_auth_with_smtp_password_file,
    a_refused_smtp_login_keeps_the_mail_queued_counts_it_per_origin_and_delivers_it_once_accepted,
    a_mail_resent_after_a_crash_carries_the_same_message_id_on_the_sender_domain,
);

/// `origins.default.smtp.username` + `origins.default.smtp.password` (inline), and the
/// origin's `reply_to` and `product_name` on the mail the relay received.
async fn the_reset_mail_reaches_a_relay_requiring_auth_with_smtp_username_and_inline_password(
    db: Db,
) {
    let smtp = SmtpServer::start_with_auth(RELAY_USER, RELAY_PASSWORD);
    let port = smtp.port().to_string();
    let app = TestApp::spawn_with(
        db,
        &smtp_with_login(
            &port,
            &[
                ("AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD", RELAY_PASSWORD),
                (
                    "AUTHD__ORIGINS__DEFAULT__REPLY_TO",
                    "Help <help@example.org>",
                ),
                ("AUTHD__ORIGINS__DEFAULT__PRODUCT_NAME", "Exemplar"),
            ],
        ),
    )
    .await;
    ask_reset(&app, "ann@example.org").await;
    let raw = smtp.wait_for_async(1, DELIVERY).await.remove(0);
    let mail = ReceivedMail::parse(&raw);
    assert_eq!(mail.rcpt_to, "ann@example.org");
    assert_eq!(mail.subject, "Reset your Exemplar password", "product_name");
    assert!(mail.text.contains("Exemplar"), "{}", mail.text);
    let reply_to = header(&raw, "Reply-To").unwrap_or_default();
    assert!(
        reply_to.contains("help@example.org"),
        "Reply-To: {reply_to}"
    );
    let log = smtp.log();
    assert!(
        log.contains(&format!("relay: AUTH PLAIN user={RELAY_USER} accepted")),
        "{log}"
    );
    assert!(
        !log.contains(RELAY_PASSWORD),
        "the relay log shows no password"
    );
    // The code in the mail is the live one.
    let res = app
        .post_json(
            "/user/password/reset/validate",
            &json!({ "email": "ann@example.org", "otp": mail.code() }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
}

/// `origins.default.smtp.password_file`: the password comes from a file (with the trailing
/// newline `echo` leaves). Before it was read, authd logged in with an empty password.
async fn the_reset_mail_reaches_a_relay_requiring_auth_with_smtp_password_file(db: Db) {
    let smtp = SmtpServer::start_with_auth(RELAY_USER, RELAY_PASSWORD);
    let port = smtp.port().to_string();
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("smtp-password");
    std::fs::write(&file, format!("{RELAY_PASSWORD}\n")).unwrap();
    let file = file.display().to_string();
    let app = TestApp::spawn_with(
        db,
        &smtp_with_login(
            &port,
            &[("AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD_FILE", &file)],
        ),
    )
    .await;
    ask_reset(&app, "bob@example.org").await;
    let raw = smtp.wait_for_async(1, DELIVERY).await.remove(0);
    ReceivedMail::parse(&raw).assert_reset_mail_for("bob@example.org");
    assert!(smtp
        .log()
        .contains(&format!("relay: AUTH PLAIN user={RELAY_USER} accepted")));
}

/// One outbox row as the test reads it, on either database.
#[derive(Debug, QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
}

fn outbox(url: &str) -> Vec<Row> {
    let query = diesel::sql_query("SELECT status, attempts, last_error FROM outbox ORDER BY id");
    match url.strip_prefix("sqlite://") {
        Some(path) => query
            .load(&mut SqliteConnection::establish(path).expect("open the SQLite file"))
            .expect("read the outbox"),
        None => query
            .load(&mut PgConnection::establish(url).expect("connect to PostgreSQL"))
            .expect("read the outbox"),
    }
}

async fn wait_outbox(url: &str, what: &str, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = Instant::now() + DELIVERY;
    loop {
        let rows = outbox(url);
        if done(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not reach \"{what}\": {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Log lines (JSON) whose message starts with `prefix`.
fn log_lines<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| {
                    let f = v.get("fields").unwrap_or(&v);
                    f.get("message")?.as_str().map(|m| m.starts_with(prefix))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// A wrong `origins.default.smtp.password`: the relay answers 535, and that is our fault,
/// not the recipient's. The mail stays queued and is retried (it used to die at the first
/// attempt), each failure is counted for its origin, the failing relay is logged once, and
/// once the relay accepts the password the mail goes out.
async fn a_refused_smtp_login_keeps_the_mail_queued_counts_it_per_origin_and_delivers_it_once_accepted(
    db: Db,
) {
    let db = TestDb::create(db);
    create_user(AUTHD, &db.url, "cy@example.org", PASSWORD);
    let mut smtp = SmtpServer::start_with_auth(RELAY_USER, "Rotated-on-the-relay");
    let port = smtp.port().to_string();
    let authd = AuthdProcess::start(
        AUTHD,
        &db.url,
        &smtp_with_login(
            &port,
            &[
                ("AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD", RELAY_PASSWORD),
                ("AUTHD__MAIL__BACKOFF_INITIAL_MS", "100"),
                ("AUTHD__MAIL__BACKOFF_MAX_SECS", "1"),
                ("AUTHD__MAIL__MAX_ATTEMPTS", "1000"),
            ],
        ),
    );
    let res = authd
        .post_json(SEND, &json!({ "email": "cy@example.org" }))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);

    wait_outbox(&db.url, "pending after 3 refused logins", |rows| {
        rows.len() == 1 && rows[0].attempts >= 3
    })
    .await;
    let rows = outbox(&db.url);
    assert_eq!(rows[0].status, "pending", "not given up: {rows:?}");
    assert!(smtp.messages().is_empty());
    let metrics = authd.metrics().await;
    let failures = |origin: &str, reason: &str| {
        metric_value(
            &metrics,
            &format!("auth_mail_backend_failures_total{{origin=\"{origin}\",reason=\"{reason}\"}}"),
        )
    };
    assert!(
        failures("default", "auth").unwrap_or(0.0) >= 3.0,
        "auth failures of the default origin counted:\n{metrics}"
    );
    assert_eq!(failures("default", "rejected"), Some(0.0), "{metrics}");
    assert_eq!(failures("acme", "auth"), Some(0.0), "{metrics}");
    let log = authd.log();
    let failing = log_lines(&log, "mail backend is failing");
    assert_eq!(failing.len(), 1, "logged once for the streak:\n{log}");
    assert!(
        failing[0].contains("\"origin\":\"default\"") && failing[0].contains("\"reason\":\"auth\""),
        "{}",
        failing[0]
    );
    assert!(failing[0].contains("535"), "{}", failing[0]);
    assert!(!log.contains(RELAY_PASSWORD), "no password in the log");
    assert!(
        !log.contains("cy@example.org"),
        "no full address in the log"
    );

    // The relay's administrator sets the password authd has.
    smtp.stop();
    smtp.set_auth(RELAY_USER, RELAY_PASSWORD);
    smtp.restart();
    let raw = smtp.wait_for_async(1, DELIVERY).await.remove(0);
    let code = ReceivedMail::parse(&raw).assert_reset_mail_for("cy@example.org");
    wait_outbox(&db.url, "sent", |rows| rows[0].status == "sent").await;
    let res = authd
        .post_json(
            "/user/password/reset/validate",
            &json!({ "email": "cy@example.org", "otp": code }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let log = authd.log();
    assert_eq!(log_lines(&log, "mail backend is failing").len(), 1, "{log}");
    assert_eq!(log_lines(&log, "mail backend recovered").len(), 1, "{log}");
}

/// The other side of the rule: a relay's permanent answer to the mail itself (550 for its
/// recipient) is final at the first attempt — retrying cannot help. The relay's answer, which
/// names the address, is kept and logged with the address masked.
async fn a_relay_refusing_the_recipient_with_550_is_final_at_once_and_its_answer_is_kept_masked(
    db: Db,
) {
    let db = TestDb::create(db);
    create_user(AUTHD, &db.url, "gone@example.org", PASSWORD);
    let smtp = SmtpServer::start_with(SmtpOptions {
        auth: Some((RELAY_USER.into(), RELAY_PASSWORD.into())),
        reject_rcpt: Some("gone@example.org".into()),
        ..SmtpOptions::default()
    });
    let port = smtp.port().to_string();
    let authd = AuthdProcess::start(
        AUTHD,
        &db.url,
        &smtp_with_login(
            &port,
            &[
                ("AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD", RELAY_PASSWORD),
                ("AUTHD__MAIL__MAX_ATTEMPTS", "1000"),
            ],
        ),
    );
    let res = authd
        .post_json(SEND, &json!({ "email": "gone@example.org" }))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let rows = wait_outbox(&db.url, "dead", |rows| {
        rows.len() == 1 && rows[0].status == "dead"
    })
    .await;
    assert_eq!(rows[0].attempts, 1, "final at the first attempt");
    let error = rows[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("(550)") && error.contains("g***@example.org"),
        "{error}"
    );
    assert!(!error.contains("gone@example.org"), "{error}");
    let metrics = authd.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"auth_mail_backend_failures_total{origin="default",reason="rejected"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    let log = authd.log();
    assert!(log.contains("mail is dead"), "{log}");
    assert!(
        !log.contains("gone@example.org"),
        "no full address in the log:\n{log}"
    );
    assert!(
        log_lines(&log, "mail backend is failing").is_empty(),
        "{log}"
    );
    assert!(smtp.messages().is_empty());
}

/// A crash during delivery: the relay has stored the mail, authd dies before the relay's 250
/// (the relay takes 30 s to answer). Another process takes the mail over after the lease and
/// sends it again — at least once is right — with the same Message-ID, on the domain of the
/// origin's From address (`no-reply@example.org`), so the receiver can drop the copy.
async fn a_mail_resent_after_a_crash_carries_the_same_message_id_on_the_sender_domain(db: Db) {
    let db = TestDb::create(db);
    create_user(AUTHD, &db.url, "dee@example.org", PASSWORD);
    let smtp = SmtpServer::start_with(SmtpOptions {
        slow_ms: 30_000,
        store_first: true,
        ..SmtpOptions::default()
    });
    let port = smtp.port().to_string();
    let settings = [
        ("AUTHD__ORIGINS__DEFAULT__BACKEND", "smtp"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__HOST", "127.0.0.1"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__PORT", port.as_str()),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__TLS", "none"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__TIMEOUT_SECS", "60"),
        ("AUTHD__MAIL__SEND_TIMEOUT_SECS", "2"),
        ("AUTHD__MAIL__LEASE_SECS", "4"),
        ("AUTHD__MAIL__BACKOFF_INITIAL_MS", "100"),
        ("AUTHD__MAIL__BACKOFF_MAX_SECS", "1"),
    ];
    let mut first = AuthdProcess::start(AUTHD, &db.url, &settings);
    let res = first
        .post_json(SEND, &json!({ "email": "dee@example.org" }))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    smtp.wait_for_async(1, DELIVERY).await;
    first.kill();

    let _second = AuthdProcess::start(AUTHD, &db.url, &settings);
    let messages = smtp.wait_for_async(2, DELIVERY).await;
    let ids: Vec<String> = messages.iter().map(|m| message_id(m)).collect();
    assert_eq!(ids[0], ids[1], "one Message-ID for both deliveries");
    assert!(
        ids[0].starts_with('<') && ids[0].ends_with("@example.org>"),
        "the Message-ID is on the From domain: {}",
        ids[0]
    );
    let (a, b) = (
        ReceivedMail::parse(&messages[0]),
        ReceivedMail::parse(&messages[1]),
    );
    assert_eq!(
        a.assert_reset_mail_for("dee@example.org"),
        b.assert_reset_mail_for("dee@example.org"),
        "the same mail, the same code"
    );
}

/// Runs `authd mail test` with the test settings and `env`; returns (exit code, stdout,
/// stderr).
fn mail_test(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(AUTHD);
    cmd.args(["mail", "test"])
        .args(args)
        .current_dir(dir)
        .env("AUTHD_ENV", "development")
        .env_remove("RUST_LOG")
        .env(
            "AUTHD__DATABASE__URL",
            format!("sqlite://{}", dir.join("authd.db").display()),
        )
        .env("AUTHD__MAIL__TEMPLATES_DIR", authd_tests::templates_dir())
        .env("AUTHD__SECRETS__OTP_KEY", TEST_OTP_KEY)
        .env("AUTHD__LOG__LEVEL", "warn")
        .env(
            "AUTHD__ORIGINS__DEFAULT__FILE__DIR",
            dir.join("mail").display().to_string(),
        )
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("authd mail test runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `authd mail test` through a relay requiring AUTH (`origins.default.smtp.username`,
/// `.password`): the relay's final answer is printed, the relay logged the login and the
/// whole dialogue, and the test mail (subject from `origins.default.product_name`) arrived.
#[test]
fn mail_test_sends_through_the_auth_relay_and_prints_its_250_answer() {
    let smtp = SmtpServer::start_with_auth(RELAY_USER, RELAY_PASSWORD);
    let port = smtp.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut env = smtp_with_login(
        &port,
        &[("AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD", RELAY_PASSWORD)],
    );
    env.push(("AUTHD__ORIGINS__DEFAULT__PRODUCT_NAME", "Exemplar"));
    let (code, out, err) = mail_test(
        dir.path(),
        &["--origin", "default", "--to", "ann@example.org"],
        &env,
    );
    let log = smtp.log();
    // The transcript, shown with --no-capture.
    println!("$ authd mail test --origin default --to ann@example.org\n{out}{err}");
    println!("--- relay log ---\n{log}");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("origin default: test mail to a***@example.org handed to the smtp backend"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("250 ")),
        "the relay's final answer: {out}"
    );
    assert!(log.contains(&format!("relay: AUTH PLAIN user={RELAY_USER} accepted")));
    assert!(
        log.contains("<< b'235 2.7.0 Authentication successful'"),
        "{log}"
    );
    assert!(!log.contains(RELAY_PASSWORD), "{log}");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        header(&messages[0], "Subject").as_deref(),
        Some("Exemplar mail delivery test")
    );
    assert!(message_id(&messages[0]).ends_with("@example.org>"));
}

#[test]
fn mail_test_with_a_wrong_smtp_password_fails_with_the_relays_535() {
    let smtp = SmtpServer::start_with_auth(RELAY_USER, RELAY_PASSWORD);
    let port = smtp.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = mail_test(
        dir.path(),
        &["--origin", "default", "--to", "ann@example.org"],
        &smtp_with_login(
            &port,
            &[(
                "AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD",
                "Not-the-password",
            )],
        ),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("error: origin default: the smtp backend failed (auth, transient"),
        "{err}"
    );
    assert!(err.contains("535"), "{err}");
    assert!(!err.contains("Not-the-password"), "{err}");
    assert!(smtp.messages().is_empty());
}

/// `mail.send_timeout_secs` bounds the test send: a relay that never answers is a timeout.
#[test]
fn mail_test_gives_up_on_a_silent_relay_after_mail_send_timeout_secs() {
    let mut smtp = SmtpServer::start();
    smtp.pause();
    let port = smtp.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, out, err) = mail_test(
        dir.path(),
        &["--origin", "default", "--to", "ann@example.org"],
        &[
            ("AUTHD__ORIGINS__DEFAULT__BACKEND", "smtp"),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__HOST", "127.0.0.1"),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__PORT", &port),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__TLS", "none"),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__TIMEOUT_SECS", "60"),
            ("AUTHD__MAIL__SEND_TIMEOUT_SECS", "1"),
            ("AUTHD__MAIL__LEASE_SECS", "2"),
        ],
    );
    let took = started.elapsed();
    smtp.resume();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("(timeout, transient"), "{err}");
    assert!(err.contains("mail.send_timeout_secs"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn mail_test_of_an_unknown_origin_fails_and_names_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = mail_test(
        dir.path(),
        &["--origin", "nope", "--to", "ann@example.org"],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.starts_with("error: no enabled origin named \"nope\"; configured: acme, default"),
        "{err}"
    );
}

#[test]
fn mail_test_through_the_file_backend_prints_the_path_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = mail_test(
        dir.path(),
        &["--origin", "default", "--to", "ann@example.org"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let path = out
        .lines()
        .find_map(|l| l.strip_prefix("wrote "))
        .unwrap_or_else(|| panic!("no path in {out}"));
    let raw = std::fs::read_to_string(path).unwrap();
    assert!(raw.contains("Subject: Example mail delivery test"), "{raw}");
    assert!(path.starts_with(&dir.path().join("mail").display().to_string()));
}

#[test]
fn mail_test_through_sendmail_prints_the_programs_exit_status() {
    let smtp = SmtpServer::start();
    let bin = tempfile::tempdir().unwrap();
    let program = sendmail_program(bin.path(), smtp.port());
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = mail_test(
        dir.path(),
        &["--origin", "default", "--to", "ann@example.org"],
        &[
            ("AUTHD__ORIGINS__DEFAULT__BACKEND", "sendmail"),
            (
                "AUTHD__ORIGINS__DEFAULT__SENDMAIL__PROGRAM",
                program.to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("exited with exit status: 0"), "{out}");
    let messages = smtp.wait_for(1, DELIVERY);
    assert!(messages[0].contains("X-RcptTo: ann@example.org"));
    // A relay that is gone: msmtp fails, and so does the command, with its status.
    drop(smtp);
    let (code, _, err) = mail_test(
        dir.path(),
        &["--origin", "default", "--to", "ann@example.org"],
        &[
            ("AUTHD__ORIGINS__DEFAULT__BACKEND", "sendmail"),
            (
                "AUTHD__ORIGINS__DEFAULT__SENDMAIL__PROGRAM",
                program.to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exited with exit status:"), "{err}");
}
