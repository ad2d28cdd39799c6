//! Security events in the log (issue 10, finding 7; OWASP ASVS 7.2): a wrong password, a lockout,
//! a wrong emailed code and a reused refresh token each leave one structured warn line with the
//! user id and the client IP, and never the address, the password or the code. Read from the
//! JSON log of the real binary.

use authd_tests::smtp::{create_user, AuthdProcess};
use authd_tests::{both_dbs, Db, TestDb};
use serde_json::{json, Value};

use crate::mail_backends::AUTHD;

const PASSWORD: &str = "Correct1horse";
const WRONG: &str = "Wrong1horse-secret";
const ANN: &str = "ann.secret-address@example.org";

both_dbs!(security_events_are_logged_with_user_id_and_client_ip_and_no_secret);

/// The JSON log lines that carry this `security_event`.
fn events(log: &str, event: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["security_event"] == event)
        .collect()
}

async fn security_events_are_logged_with_user_id_and_client_ip_and_no_secret(db: Db) {
    let db = TestDb::create(db);
    create_user(AUTHD, &db.url, ANN, PASSWORD);
    let authd = AuthdProcess::start(
        AUTHD,
        &db.url,
        &[("AUTHD__LIMITS__PASSWORD_BACKOFF__INITIAL_WAIT_SECS", "60")],
    );
    let authd = &authd;
    let login = |password: &'static str| async move {
        let body = json!({ "username": ANN, "password": password });
        authd.post_json("/auth/login", &body).await
    };
    // A rotated refresh token presented again.
    let refresh = login(PASSWORD).await;
    assert_eq!(refresh.status, 200, "{}", refresh.text);
    let rotate = |token: String| async move {
        reqwest::Client::new()
            .get(authd.url("/auth/refreshtoken"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(rotate(refresh.text.clone()).await, 200);
    assert_eq!(rotate(refresh.text.clone()).await, 401);
    for _ in 0..3 {
        assert_eq!(login(WRONG).await.status, 401);
    }
    assert_eq!(login(PASSWORD).await.status, 429);
    let res = authd
        .post_json(
            "/user/password/reset/validate",
            &json!({ "email": ANN, "otp": "012345" }),
        )
        .await;
    assert_eq!(res.status, 401, "{}", res.text);

    // Wait for the lines to reach the log reader.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let log = loop {
        let log = authd.log();
        if events(&log, "lockout").len() == 1
            && events(&log, "wrong_guess").len() == 4
            && events(&log, "refresh_token_reuse").len() == 1
        {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "security events missing:\n{log}"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let wrong = events(&log, "wrong_guess");
    let kinds: Vec<&str> = wrong.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["password", "password", "password", "emailed_code"]);
    let others = [events(&log, "lockout"), events(&log, "refresh_token_reuse")].concat();
    for line in wrong.iter().chain(others.iter()) {
        assert_eq!(line["level"], "WARN", "{line}");
        assert!(line["user_id"].as_i64().is_some_and(|id| id > 0), "{line}");
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    }
    assert_eq!(events(&log, "lockout")[0]["scope"], "network");
    for secret in [
        ANN,
        "secret-address",
        WRONG,
        PASSWORD,
        "012345",
        &refresh.text,
    ] {
        assert!(!log.contains(secret), "the log carries {secret:?}:\n{log}");
    }
}
