//! Guessing limits that protect the account (issue 10, findings 1, 3 and 5, and the codes that
//! outlive a change): wrong emailed codes wait per account, purpose and client network, across
//! codes; every backoff has an account-wide ceiling across all networks; a stranger's wrong
//! passwords do not lock the owner out; one code is compared at most `max_attempts` times
//! however many guesses arrive at once; codes mailed before a password or address change stop
//! working.
//!
//! Client networks are simulated with `X-Forwarded-For` from a trusted proxy (127.0.0.1), the
//! way a load balancer reports them.

use std::sync::Arc;

use authd_tests::two_factor::{
    assert_429, assert_ten_recovery_codes, other_code, totp_at, totp_codes, STEP_SECS,
};
use authd_tests::{both_dbs, metric_value, Db, Reply, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "Correct1horse";
const NEW_PASSWORD: &str = "Another2horse";
const ANN: &str = "ann@example.org";

both_dbs!(
    wrong_reset_codes_wait_per_account_and_network_across_codes_and_the_owner_still_resets,
    every_emailed_code_call_answers_too_many_otp_checks_after_three_wrong_codes,
    the_account_ceiling_stops_guessing_spread_over_many_networks,
    a_stranger_guessing_passwords_does_not_lock_the_owner_out_but_the_ceiling_holds,
    ipv6_guessers_are_counted_per_slash_64,
    sixty_guesses_released_together_compare_one_code_at_most_max_attempts_times,
    codes_mailed_before_a_password_or_address_change_stop_working,
    each_backoff_waits_no_longer_than_its_max_wait_secs,
    a_stranger_guessing_totp_and_recovery_codes_does_not_lock_the_owner_out,
);

/// A server behind a trusted proxy at 127.0.0.1, with these extra settings.
async fn behind_proxy(db: Db, extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![("AUTHD__HTTP__TRUSTED_PROXIES", "127.0.0.1")];
    overrides.extend_from_slice(extra);
    TestApp::spawn_with(db, &overrides).await
}

/// A request from client `ip` (through the trusted proxy).
async fn from(
    app: &TestApp,
    ip: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Reply {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("X-Forwarded-For", ip)
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    app.send(req).await
}

async fn validate_from(app: &TestApp, ip: &str, email: &str, otp: &str) -> Reply {
    let body = json!({ "email": email, "otp": otp });
    from(
        app,
        ip,
        Method::POST,
        "/user/password/reset/validate",
        None,
        &body,
    )
    .await
}

async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> Reply {
    let body = json!({ "username": email, "password": password });
    from(app, ip, Method::POST, "/auth/login", None, &body).await
}

/// A 6-digit code that is not `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

/// Asserts a `TOO_MANY_OTP_CHECKS` whose wait is about `secs` (it may have ticked down).
fn assert_otp_wait(reply: &Reply, secs: i64) {
    let wait = assert_429(reply, "TOO_MANY_OTP_CHECKS");
    assert!(
        (secs - 2..=secs).contains(&wait),
        "retryAfter {wait}, expected about {secs}"
    );
}

/// Waits (up to 10 s) for a mail carrying a code to `to` that is not among `seen` (file
/// names), and returns its code. Notices (no code) in between are skipped.
async fn new_code(app: &TestApp, to: &str, seen: &[std::path::PathBuf]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let fresh = app.mails_to(to).into_iter().find(|m| {
            !seen.contains(&m.file)
                && m.text
                    .lines()
                    .any(|l| l.trim().len() == 6 && l.trim().bytes().all(|b| b.is_ascii_digit()))
        });
        if let Some(m) = fresh {
            return m.code();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new code mail to {to}"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn files_to(app: &TestApp, to: &str) -> Vec<std::path::PathBuf> {
    app.mails_to(to).into_iter().map(|m| m.file).collect()
}

/// Sends a reset code to `email` and returns it.
async fn reset_code(app: &TestApp, email: &str) -> String {
    let seen = files_to(app, email);
    let res = app.reset_send(email, "").await;
    assert_eq!(res.status, 200, "reset send: {}", res.text);
    new_code(app, email, &seen).await
}

async fn wrong_reset_codes_wait_per_account_and_network_across_codes_and_the_owner_still_resets(
    db: Db,
) {
    let app = behind_proxy(
        db,
        &[
            (
                "AUTHD__LIMITS__EMAILED_CODE_BACKOFF__INITIAL_WAIT_SECS",
                "60",
            ),
            ("AUTHD__LIMITS__RESET_MAIL__WINDOW_SECS", "1"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let code = reset_code(&app, ANN).await;
    let stranger = "198.51.100.7";

    // Three free wrong guesses (fewer than the 5 that burn the code), then the network waits.
    for _ in 0..3 {
        validate_from(&app, stranger, ANN, &wrong(&code))
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    assert_otp_wait(&validate_from(&app, stranger, ANN, &wrong(&code)).await, 60);
    // While it waits even the right code is not compared, on both reset calls.
    assert_otp_wait(&validate_from(&app, stranger, ANN, &code).await, 60);
    let body = json!({ "userEmail": ANN, "otp": code, "newPassword": NEW_PASSWORD });
    let res = from(
        &app,
        stranger,
        Method::PUT,
        "/user/password/otp",
        None,
        &body,
    )
    .await;
    assert_otp_wait(&res, 60);

    // A fresh code brings no fresh guesses: the count is per account, across codes.
    app.advance_ms(1100);
    let code = reset_code(&app, ANN).await;
    assert_otp_wait(&validate_from(&app, stranger, ANN, &wrong(&code)).await, 60);

    // The owner, on another network, is not locked out by the stranger.
    let owner = "203.0.113.20";
    let res = validate_from(&app, owner, ANN, &code).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = json!({ "userEmail": ANN, "otp": code, "newPassword": NEW_PASSWORD });
    let res = from(&app, owner, Method::PUT, "/user/password/otp", None, &body).await;
    assert_eq!(res.status, 200, "{}", res.text);
    app.login_ok(ANN, NEW_PASSWORD).await;

    // An unknown address answers the same way: 401s, then the same 429.
    for _ in 0..3 {
        validate_from(&app, stranger, "nobody@example.org", "123456")
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    assert_otp_wait(
        &validate_from(&app, stranger, "nobody@example.org", "123456").await,
        60,
    );
}

async fn every_emailed_code_call_answers_too_many_otp_checks_after_three_wrong_codes(db: Db) {
    let app = behind_proxy(
        db,
        &[
            (
                "AUTHD__LIMITS__EMAILED_CODE_BACKOFF__INITIAL_WAIT_SECS",
                "60",
            ),
            ("AUTHD__LIMITS__OTP_MAIL__WINDOW_SECS", "1"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    app.create_user("bob@example.org", PASSWORD).await;
    let (net, other) = ("198.51.100.8", "203.0.113.21");

    // Email OTP enable.
    let access = app.login_access(ANN, PASSWORD).await;
    let res = app
        .email_otp_setup(&access, "ann.2fa@example.org", "")
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let code = app.wait_for_mail_to("ann.2fa@example.org", 1).await.code();
    let enable = |ip: &'static str, otp: String| {
        let (app, access) = (&app, access.clone());
        async move {
            let body = json!({ "otp": otp });
            from(
                app,
                ip,
                Method::POST,
                "/user/2fa/email-otp/enable",
                Some(&access),
                &body,
            )
            .await
        }
    };
    for _ in 0..3 {
        enable(net, wrong(&code))
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    assert_otp_wait(&enable(net, code.clone()).await, 60);
    let res = enable(other, code).await;
    assert_eq!(res.status, 200, "enable from another network: {}", res.text);

    // Email OTP authenticate (a second factor at login, with the partial token).
    app.advance_ms(1100);
    let res = app.login(ANN, PASSWORD).await;
    assert_eq!(res.status, 401, "{}", res.text);
    let partial = res.json()["partialToken"].as_str().unwrap().to_owned();
    let res = app.email_otp_challenge(&partial, "").await;
    assert_eq!(res.status, 200, "{}", res.text);
    let code = app.wait_for_mail_to("ann.2fa@example.org", 2).await.code();
    let authenticate = |ip: &'static str, otp: String| {
        let (app, partial) = (&app, partial.clone());
        async move {
            let body = json!({ "otp": otp });
            let path = "/user/2fa/email-otp/authenticate";
            from(app, ip, Method::POST, path, Some(&partial), &body).await
        }
    };
    for _ in 0..3 {
        authenticate(net, wrong(&code))
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    assert_otp_wait(&authenticate(net, code.clone()).await, 60);
    let res = authenticate(other, code).await;
    assert_eq!(
        res.status, 200,
        "authenticate from another network: {}",
        res.text
    );

    // Completing an email transfer.
    let bob = app.login_access("bob@example.org", PASSWORD).await;
    let body = json!({ "email": "bob.new@example.org" });
    let res = app.post_with("/user/email/initiate", &bob, &body).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let code = app.wait_for_mail_to("bob.new@example.org", 1).await.code();
    let complete = |ip: &'static str, otp: String| {
        let (app, bob) = (&app, bob.clone());
        async move {
            let body = json!({ "otp": otp });
            from(app, ip, Method::PUT, "/user/email", Some(&bob), &body).await
        }
    };
    for _ in 0..3 {
        complete(net, wrong(&code))
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    assert_otp_wait(&complete(net, code.clone()).await, 60);
    let res = complete(other, code).await;
    assert_eq!(
        res.status, 200,
        "transfer from another network: {}",
        res.text
    );

    // Each purpose is counted on its own: Ann's reset is not blocked by her 2FA guesses.
    let code = reset_code(&app, ANN).await;
    let res = validate_from(&app, net, ANN, &code).await;
    assert_eq!(res.status, 200, "{}", res.text);
}

async fn the_account_ceiling_stops_guessing_spread_over_many_networks(db: Db) {
    let app = behind_proxy(
        db,
        &[
            ("AUTHD__LIMITS__EMAILED_CODE_BACKOFF__FREE_FAILURES", "2"),
            (
                "AUTHD__LIMITS__EMAILED_CODE_BACKOFF__INITIAL_WAIT_SECS",
                "60",
            ),
            ("AUTHD__LIMITS__ACCOUNT_CEILING__MAX_FAILURES", "4"),
            ("AUTHD__LIMITS__ACCOUNT_CEILING__INITIAL_WAIT_SECS", "120"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let code = reset_code(&app, ANN).await;
    let (first, second) = ("198.51.100.1", "198.51.100.2");
    for _ in 0..2 {
        validate_from(&app, first, ANN, &wrong(&code))
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    // The first network's own wait.
    assert_otp_wait(&validate_from(&app, first, ANN, &wrong(&code)).await, 60);
    for _ in 0..2 {
        validate_from(&app, second, ANN, &wrong(&code))
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    // The account's wait is the longer one, and the one reported.
    assert_otp_wait(&validate_from(&app, second, ANN, &wrong(&code)).await, 120);
    // Four failures from all networks together: the whole account waits, whoever asks, even
    // with the right code.
    assert_otp_wait(&validate_from(&app, "203.0.113.50", ANN, &code).await, 120);
    assert_otp_wait(&validate_from(&app, "192.0.2.99", ANN, &code).await, 120);
    let metrics = app.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "auth_throttle_hits_total{limit=\"emailed_code:account\"}"
        )
        .is_some_and(|v| v >= 2.0),
        "ceiling refusals are counted"
    );
}

async fn a_stranger_guessing_passwords_does_not_lock_the_owner_out_but_the_ceiling_holds(db: Db) {
    let app = behind_proxy(
        db,
        &[
            ("AUTHD__LIMITS__PASSWORD_BACKOFF__INITIAL_WAIT_SECS", "60"),
            ("AUTHD__LIMITS__ACCOUNT_CEILING__MAX_FAILURES", "6"),
            ("AUTHD__LIMITS__ACCOUNT_CEILING__INITIAL_WAIT_SECS", "120"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let stranger = "198.51.100.9";
    for _ in 0..3 {
        login_from(&app, stranger, ANN, "Wrong1horse")
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    let wait = assert_429(
        &login_from(&app, stranger, ANN, PASSWORD).await,
        "TOO_MANY_FAILED_PASSWORD_CHECKS",
    );
    assert!((58..=60).contains(&wait), "{wait}");

    // The owner on a clean network logs in; the stranger still waits.
    let res = login_from(&app, "203.0.113.30", ANN, PASSWORD).await;
    assert_eq!(res.status, 200, "the owner logs in: {}", res.text);
    assert_429(
        &login_from(&app, stranger, ANN, PASSWORD).await,
        "TOO_MANY_FAILED_PASSWORD_CHECKS",
    );

    // Distributed guessing: three free failures from each of two more networks reach the
    // ceiling of six, and then the whole account waits.
    for net in ["192.0.2.1", "192.0.2.2"] {
        for _ in 0..3 {
            login_from(&app, net, ANN, "Wrong1horse")
                .await
                .assert_error(401, "PASSWORD_INCORRECT");
        }
    }
    let wait = assert_429(
        &login_from(&app, "203.0.113.31", ANN, PASSWORD).await,
        "TOO_MANY_FAILED_PASSWORD_CHECKS",
    );
    assert!((118..=120).contains(&wait), "{wait}");
}

async fn ipv6_guessers_are_counted_per_slash_64(db: Db) {
    let app = behind_proxy(
        db,
        &[("AUTHD__LIMITS__PASSWORD_BACKOFF__INITIAL_WAIT_SECS", "60")],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    // Rotating addresses inside one /64 does not buy fresh guesses.
    for ip in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:aaaa::3"] {
        login_from(&app, ip, ANN, "Wrong1horse")
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    assert_429(
        &login_from(&app, "2001:db8:5:6:ffff::4", ANN, PASSWORD).await,
        "TOO_MANY_FAILED_PASSWORD_CHECKS",
    );
    // Another /64 is another network.
    let res = login_from(&app, "2001:db8:5:7::1", ANN, PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.text);
}

async fn sixty_guesses_released_together_compare_one_code_at_most_max_attempts_times(db: Db) {
    // The backoffs are opened wide so that only the per-code limit is at work.
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__LIMITS__EMAILED_CODE_BACKOFF__FREE_FAILURES", "1000"),
            ("AUTHD__LIMITS__ACCOUNT_CEILING__MAX_FAILURES", "1000"),
            ("AUTHD__HTTP__WORKERS", "4"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let code = reset_code(&app, ANN).await;
    let guess = wrong(&code);
    let barrier = Arc::new(tokio::sync::Barrier::new(60));
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            let (app, barrier, guess) = (app.clone(), barrier.clone(), guess.clone());
            actix_rt::spawn(async move {
                let req = app
                    .client
                    .post(app.url("/user/password/reset/validate"))
                    .json(&json!({ "email": ANN, "otp": guess }));
                barrier.wait().await;
                app.send(req).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().assert_error(401, "OTP_INVALID_EXPIRED");
    }
    let metrics = app.metrics().await;
    let series = |outcome: &str| {
        metric_value(
            &metrics,
            &format!("auth_otp_checks_total{{purpose=\"password_reset\",outcome=\"{outcome}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let compared = series("wrong") + series("burnt");
    assert_eq!(
        compared, 5.0,
        "exactly max_attempts guesses were compared: {metrics}"
    );
    assert_eq!(series("absent"), 55.0, "the rest found no live code");
    assert_eq!(series("burnt"), 1.0, "the fifth burnt the code");
    // Burnt: the right code no longer works.
    app.reset_validate(ANN, &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
}

async fn codes_mailed_before_a_password_or_address_change_stop_working(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__RESET_MAIL__WINDOW_SECS", "1")]).await;
    app.create_user(ANN, PASSWORD).await;

    // A password change ends a reset code mailed before it.
    let code = reset_code(&app, ANN).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let res = app.change_password(&access, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.text);
    app.reset_validate(ANN, &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");

    // An address change ends a reset code mailed before it (to the old address).
    app.advance_ms(1100);
    let reset = reset_code(&app, ANN).await;
    let body = json!({ "email": "ann.new@example.org" });
    let res = app.post_with("/user/email/initiate", &access, &body).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let transfer = app.wait_for_mail_to("ann.new@example.org", 1).await.code();
    let res = app
        .call(
            Method::PUT,
            "/user/email",
            Some(&access),
            Some(&json!({ "otp": transfer })),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    app.reset_validate("ann.new@example.org", &reset)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
}

/// Two wrong guesses a little over a second apart on the server's clock, each followed by a refused one: with an
/// initial wait of 1 s and a cap of 1 s, the second wait is 1 s, not the doubled 2 s.
async fn assert_capped_at_one_second<F, Fut>(app: &TestApp, guess: F, too_many: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    for round in 0..2 {
        let first = guess().await;
        assert_ne!(first.status, 429, "round {round}: {}", first.text);
        let wait = assert_429(&guess().await, too_many);
        assert_eq!(wait, 1, "round {round}: the wait is capped at 1 s");
        app.advance_ms(1100);
    }
}

async fn each_backoff_waits_no_longer_than_its_max_wait_secs(db: Db) {
    // limits.emailed_code_backoff.max_wait_secs and limits.totp_backoff.max_wait_secs.
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__LIMITS__EMAILED_CODE_BACKOFF__FREE_FAILURES", "1"),
            (
                "AUTHD__LIMITS__EMAILED_CODE_BACKOFF__INITIAL_WAIT_SECS",
                "1",
            ),
            ("AUTHD__LIMITS__EMAILED_CODE_BACKOFF__MAX_WAIT_SECS", "1"),
            ("AUTHD__LIMITS__TOTP_BACKOFF__FREE_FAILURES", "1"),
            ("AUTHD__LIMITS__TOTP_BACKOFF__INITIAL_WAIT_SECS", "1"),
            ("AUTHD__LIMITS__TOTP_BACKOFF__MAX_WAIT_SECS", "1"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let code = reset_code(&app, ANN).await;
    let bad = wrong(&code);
    assert_capped_at_one_second(
        &app,
        || app.reset_validate(ANN, &bad),
        "TOO_MANY_OTP_CHECKS",
    )
    .await;

    let access = app.login_access(ANN, PASSWORD).await;
    let (url, res) = app.turn_on_totp(&access, &access).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let t = app.now_secs();
    let bad = other_code(&totp_codes(
        &url,
        &[
            t - 2 * STEP_SECS,
            t - STEP_SECS,
            t,
            t + STEP_SECS,
            t + 2 * STEP_SECS,
        ],
    ));
    assert_capped_at_one_second(
        &app,
        || app.totp_authenticate(&access, &bad),
        "TOO_MANY_TOTP_CHECKS",
    )
    .await;
    drop(app);

    // limits.account_ceiling.max_wait_secs (the network backoff opened wide).
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__LIMITS__PASSWORD_BACKOFF__FREE_FAILURES", "1000"),
            ("AUTHD__LIMITS__ACCOUNT_CEILING__MAX_FAILURES", "1"),
            ("AUTHD__LIMITS__ACCOUNT_CEILING__INITIAL_WAIT_SECS", "1"),
            ("AUTHD__LIMITS__ACCOUNT_CEILING__MAX_WAIT_SECS", "1"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    assert_capped_at_one_second(
        &app,
        || app.login(ANN, "Wrong1horse"),
        "TOO_MANY_FAILED_PASSWORD_CHECKS",
    )
    .await;
}

async fn a_stranger_guessing_totp_and_recovery_codes_does_not_lock_the_owner_out(db: Db) {
    let app = behind_proxy(
        db,
        &[
            ("AUTHD__LIMITS__TOTP_BACKOFF__INITIAL_WAIT_SECS", "60"),
            (
                "AUTHD__LIMITS__RECOVERY_CODE_BACKOFF__INITIAL_WAIT_SECS",
                "60",
            ),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let (url, res) = app.turn_on_totp(&access, &access).await;
    let recovery = assert_ten_recovery_codes(&res);
    let (stranger, owner) = ("198.51.100.44", "203.0.113.44");
    let post = |ip: &'static str, path: &'static str, body: Value| {
        let (app, access) = (&app, access.clone());
        async move { from(app, ip, Method::POST, path, Some(&access), &body).await }
    };

    // TOTP: the stranger's network waits; the owner, elsewhere, passes with a fresh code.
    let t = app.now_secs();
    let bad = other_code(&totp_codes(
        &url,
        &[
            t - 2 * STEP_SECS,
            t - STEP_SECS,
            t,
            t + STEP_SECS,
            t + 2 * STEP_SECS,
        ],
    ));
    for _ in 0..3 {
        post(
            stranger,
            "/user/2fa/totp/authenticate",
            json!({ "totp": bad }),
        )
        .await
        .assert_error(401, "TOTP_INVALID");
    }
    app.wait_for_room_in_step(3);
    let good = totp_at(&url, app.now_secs());
    let res = post(
        stranger,
        "/user/2fa/totp/authenticate",
        json!({ "totp": good }),
    )
    .await;
    assert_429(&res, "TOO_MANY_TOTP_CHECKS");
    let res = post(
        owner,
        "/user/2fa/totp/authenticate",
        json!({ "totp": good }),
    )
    .await;
    assert_eq!(res.status, 200, "the owner passes: {}", res.text);

    // Recovery codes: the same.
    let path = "/user/2fa/recovery-code/authenticate";
    for _ in 0..3 {
        post(
            stranger,
            path,
            json!({ "recoveryCode": "2222333344445555" }),
        )
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    }
    let res = post(stranger, path, json!({ "recoveryCode": recovery[0] })).await;
    assert_429(&res, "TOO_MANY_RECOVERY_CODE_CHECKS");
    let res = post(owner, path, json!({ "recoveryCode": recovery[0] })).await;
    assert_eq!(res.status, 200, "the owner passes: {}", res.text);
}
