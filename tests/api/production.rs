//! `config/production.example.toml` starts as written (issue 11, item 7): the real binary in
//! `AUTHD_ENV=production`, every secret and the database URL read from files, PostgreSQL, and
//! the reset mail through an SMTP relay that requires a login. Only paths, hosts and ports are
//! overridden, as a deployment would.

use std::time::Duration;

use authd_tests::smtp::{create_user, AuthdProcess, SmtpServer};
use authd_tests::{Db, TestDb};
use serde_json::json;

use crate::mail_backends::AUTHD;

#[actix_web::test]
async fn the_production_example_starts_on_postgresql_with_secrets_from_files_and_mails_via_smtp() {
    let db = TestDb::create(Db::Postgres);
    create_user(AUTHD, &db.url, "ann@example.org", "Correct1horse");
    let secrets = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = secrets.path().join(name);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        path.display().to_string()
    };
    let url_file = file("authd_database_url", &db.url);
    let otp = file("authd_otp_key", &"a1".repeat(32));
    let totp = file("authd_totp_key", &"b2".repeat(32));
    let signing = file(
        "authd_signing_key.pem",
        &authd_domain::tokens::TokenSigner::generate_pem().unwrap(),
    );
    let smtp_password = file("authd_smtp_password", "relay-secret-9");
    let smtp = SmtpServer::start_with_auth("authd", "relay-secret-9");
    let smtp_port = smtp.port().to_string();
    let example = format!(
        "{}/../config/production.example.toml",
        env!("CARGO_MANIFEST_DIR")
    );

    let authd = AuthdProcess::start_with_args(
        AUTHD,
        &["--config", &example, "serve"],
        &db.url,
        &[
            ("AUTHD_ENV", "production"),
            // The harness's development settings that production takes from files instead.
            ("AUTHD__DATABASE__URL", ""),
            ("AUTHD__SECRETS__OTP_KEY", ""),
            // Paths and hosts of this machine.
            ("AUTHD__DATABASE__URL_FILE", &url_file),
            ("AUTHD__SECRETS__OTP_KEY_FILE", &otp),
            ("AUTHD__SECRETS__TOTP_KEY_FILE", &totp),
            ("AUTHD__SECRETS__SIGNING_KEY_FILE", &signing),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__HOST", "127.0.0.1"),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__PORT", &smtp_port),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__TLS", "none"),
            (
                "AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD_FILE",
                &smtp_password,
            ),
        ],
    );
    let ready = authd.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    // dev.mailbox = "auto" (the default) is off in production.
    assert_eq!(authd.get("/dev/mail").await.status, 404);
    let res = authd
        .post_json(
            "/user/password/reset/send",
            &json!({ "email": "ann@example.org" }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let raw = smtp.wait_for(1, Duration::from_secs(20)).remove(0);
    let mail = authd_tests::Mail::parse(std::path::PathBuf::new(), raw);
    assert!(
        mail.text
            .contains("https://app.example.org/reset-password?email=ann%40example%2Eorg"),
        "the example's reset_url: {}",
        mail.text
    );
    let log = authd.log();
    assert!(log.contains("\"environment\":\"production\""), "{log}");
    assert!(
        !log.contains("generated for this database"),
        "production never generates keys: {log}"
    );
    for secret in ["relay-secret-9", &"a1".repeat(32)] {
        assert!(!log.contains(secret), "the log carries a secret: {log}");
    }
}

/// `dev.mailbox = true` would show every mailed code to anyone reaching the server: with
/// `AUTHD_ENV=production` the start is refused with the key named; `"auto"` (the default) is
/// off there.
#[test]
fn production_refuses_to_start_with_the_mailbox_switched_on() {
    let example = format!(
        "{}/../config/production.example.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let signing = authd_domain::tokens::TokenSigner::generate_pem().unwrap();
    let otp = "a1".repeat(32);
    let totp = "b2".repeat(32);
    let run = |command: &[&str], mailbox: &str| {
        let out = std::process::Command::new(AUTHD)
            .args(["--config", &example])
            .args(command)
            .env("AUTHD_ENV", "production")
            .env("AUTHD__LOG__LEVEL", "warn")
            .env("AUTHD__HTTP__BIND", "127.0.0.1:0")
            .env("AUTHD__METRICS__BIND", "127.0.0.1:0")
            .env("AUTHD__DATABASE__URL_FILE", "")
            .env("AUTHD__DATABASE__URL", "postgres://authd@127.0.0.1:1/authd")
            .env("AUTHD__SECRETS__OTP_KEY_FILE", "")
            .env("AUTHD__SECRETS__OTP_KEY", &otp)
            .env("AUTHD__SECRETS__TOTP_KEY_FILE", "")
            .env("AUTHD__SECRETS__TOTP_KEY", &totp)
            .env("AUTHD__SECRETS__SIGNING_KEY_FILE", "")
            .env("AUTHD__SECRETS__SIGNING_KEY", &signing)
            .env("AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD_FILE", "")
            .env("AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD", "relay-secret-9")
            .env("AUTHD__DEV__MAILBOX", mailbox)
            .output()
            .expect("authd runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["config", "check"], "auto");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("dev.mailbox: off"), "{out}");
    assert!(out.contains("dev.reload_templates: off"), "{out}");
    for command in [&["config", "check"][..], &["serve"]] {
        let (code, _, err) = run(command, "true");
        assert_eq!(code, Some(1), "{command:?}: {err}");
        assert!(
            err.contains("dev.mailbox: the mailbox page shows every mail"),
            "{command:?}: {err}"
        );
    }
}
