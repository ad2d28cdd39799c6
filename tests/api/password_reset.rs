//! Password reset by an emailed code, end to end with the file backend.

use authd_tests::{both_dbs, metric_value, Db, TestApp};
use futures_util::future::join_all;
use serde_json::json;

const PASSWORD: &str = "Correct1horse";

both_dbs!(
    a_reset_mail_arrives_in_the_requested_language_and_its_code_resets_the_password,
    fifty_parallel_sends_for_one_address_give_one_mail_and_forty_nine_429s,
    an_unknown_address_is_answered_and_throttled_like_a_known_one_and_gets_no_mail,
    five_wrong_codes_burn_the_code,
    an_expired_code_is_refused,
    twenty_parallel_resets_with_the_right_code_succeed_exactly_once,
    a_second_code_replaces_the_first,
    a_missing_template_answers_500_counts_it_and_gives_the_window_back,
    a_broken_template_answers_500_with_the_render_reason,
    forbidden_providers_unknown_origins_and_bad_languages_are_refused,
    the_older_clients_alias_sends_the_same_mail,
    the_older_clients_alias_answers_every_400_with_its_own_text,
    the_older_clients_alias_answers_a_forbidden_provider_with_its_own_text,
    the_older_clients_alias_answers_429_with_its_own_text_and_the_wait,
    the_older_clients_alias_answers_500_as_reset_send,
    an_origin_override_brands_the_mail,
    the_reset_metrics_exist_and_count,
);

async fn a_reset_mail_arrives_in_the_requested_language_and_its_code_resets_the_password(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("ann@example.org", PASSWORD).await;

    let res = app.reset_send("Ann@Example.org", "?language=nl").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    assert_eq!(
        res.header("content-type"),
        Some("application/json; charset=utf-8")
    );

    let mail = app.wait_for_mails(1).await.remove(0);
    assert_eq!(mail.to, "ann@example.org");
    assert_eq!(mail.subject, "Je wachtwoord voor Example opnieuw instellen");
    assert!(
        !mail.text.is_empty() && !mail.html.is_empty(),
        "text and HTML parts"
    );
    let code = mail.code();
    assert!(mail.html.contains(&code), "the HTML part shows the code");
    let link = format!("http://localhost:3000/reset-password?email=ann%40example%2Eorg&otp={code}");
    assert!(
        mail.text.contains(&link),
        "the text part carries the link: {}",
        mail.text
    );
    // Tera escapes '/' in HTML as &#x2F;, which every HTML reader decodes.
    let html = mail.html.replace("&#x2F;", "/").replace("&amp;", "&");
    assert!(html.contains(&link), "the HTML part carries the link");

    assert_eq!(
        app.reset_validate("ann@example.org", &code).await.status,
        200
    );
    // Validating does not use the code up.
    assert_eq!(
        app.reset_validate("ann@example.org", &code).await.status,
        200
    );
    let res = app
        .reset_password("ann@example.org", &code, "Brand2newpass")
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    assert!(
        app.password_verifies("ann@example.org", "Brand2newpass")
            .await
    );
    assert!(!app.password_verifies("ann@example.org", PASSWORD).await);

    // The code is used up, and a "password changed" notice follows in the same language.
    app.reset_password("ann@example.org", &code, "Other3pass")
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    app.reset_validate("ann@example.org", &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    let notice = app.wait_for_mails(2).await.remove(1);
    assert_eq!(notice.to, "ann@example.org");
    assert!(notice.subject.contains("gewijzigd"), "{}", notice.subject);
    assert!(!notice.text.contains(&code));
}

async fn fifty_parallel_sends_for_one_address_give_one_mail_and_forty_nine_429s(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("bo@example.org", PASSWORD).await;
    let replies = join_all((0..50).map(|_| app.reset_send("bo@example.org", ""))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "exactly one send is accepted");
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(429, "TOO_MANY_RESET_MAIL_ATTEMPTS");
        let wait = r.json()["retryAfter"].as_u64().unwrap();
        assert!((1..=60).contains(&wait), "retryAfter {wait}");
        assert_eq!(r.header("retry-after"), Some(wait.to_string().as_str()));
    }
    app.wait_for_mails(1).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(app.mails().len(), 1, "no second mail shows up later");
}

async fn an_unknown_address_is_answered_and_throttled_like_a_known_one_and_gets_no_mail(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("known@example.org", PASSWORD).await;
    let known = app.reset_send("known@example.org", "").await;
    let unknown = app.reset_send("nobody@example.org", "").await;
    assert_eq!(
        (known.status, known.text.as_str()),
        (unknown.status, unknown.text.as_str())
    );
    let known2 = app.reset_send("known@example.org", "").await;
    let unknown2 = app.reset_send("nobody@example.org", "").await;
    known2.assert_error(429, "TOO_MANY_RESET_MAIL_ATTEMPTS");
    unknown2.assert_error(429, "TOO_MANY_RESET_MAIL_ATTEMPTS");
    assert_eq!(known2.json(), unknown2.json());
    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails[0].to, "known@example.org");
    app.reset_validate("nobody@example.org", "123456")
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
}

async fn send_and_get_code(app: &TestApp, email: &str, nth_mail: usize) -> String {
    assert_eq!(app.reset_send(email, "").await.status, 200);
    app.wait_for_mails(nth_mail).await[nth_mail - 1].code()
}

fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn five_wrong_codes_burn_the_code(db: Db) {
    // The account's emailed-code backoff (tests/api/guessing.rs) would make the 4th guess
    // wait; opened wide here, the per-code limit alone is at work.
    let app = TestApp::spawn_with(
        db,
        &[("AUTHD__LIMITS__EMAILED_CODE_BACKOFF__FREE_FAILURES", "1000")],
    )
    .await;
    app.create_user("cy@example.org", PASSWORD).await;
    let code = send_and_get_code(&app, "cy@example.org", 1).await;
    for _ in 0..4 {
        app.reset_validate("cy@example.org", &wrong(&code))
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    // Four wrong guesses leave the code usable...
    assert_eq!(
        app.reset_validate("cy@example.org", &code).await.status,
        200
    );
    // ...the fifth burns it.
    app.reset_password("cy@example.org", &wrong(&code), "Brand2newpass")
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    app.reset_validate("cy@example.org", &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    app.reset_password("cy@example.org", &code, "Brand2newpass")
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    assert!(app.password_verifies("cy@example.org", PASSWORD).await);
}

async fn an_expired_code_is_refused(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__OTP__LIFETIME_SECS", "1")]).await;
    app.create_user("di@example.org", PASSWORD).await;
    let code = send_and_get_code(&app, "di@example.org", 1).await;
    app.advance_ms(1100);
    app.reset_validate("di@example.org", &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    app.reset_password("di@example.org", &code, "Brand2newpass")
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
}

async fn twenty_parallel_resets_with_the_right_code_succeed_exactly_once(db: Db) {
    // With the emailed-code backoff at its default, at most 3 guesses of one account and
    // network are in flight at once and the rest get 429; opened wide here, all 20 race for
    // the one code.
    let app = TestApp::spawn_with(
        db,
        &[("AUTHD__LIMITS__EMAILED_CODE_BACKOFF__FREE_FAILURES", "1000")],
    )
    .await;
    app.create_user("ed@example.org", PASSWORD).await;
    let code = send_and_get_code(&app, "ed@example.org", 1).await;
    let replies = join_all((0..20).map(|i| {
        app.reset_password(
            "ed@example.org",
            &code,
            if i % 2 == 0 { "Even2pass" } else { "Odd3passw" },
        )
    }))
    .await;
    let ok: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(401, "OTP_INVALID_EXPIRED");
    }
    let even = app.password_verifies("ed@example.org", "Even2pass").await;
    let odd = app.password_verifies("ed@example.org", "Odd3passw").await;
    assert!(even ^ odd, "exactly one new password was stored");
    // One notice, not twenty.
    app.wait_for_mails(2).await;
}

async fn a_second_code_replaces_the_first(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__RESET_MAIL__WINDOW_SECS", "1")]).await;
    app.create_user("fay@example.org", PASSWORD).await;
    let first = send_and_get_code(&app, "fay@example.org", 1).await;
    app.advance_ms(1050);
    let second = send_and_get_code(&app, "fay@example.org", 2).await;
    if first != second {
        app.reset_validate("fay@example.org", &first)
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    assert_eq!(
        app.reset_password("fay@example.org", &second, "Brand2newpass")
            .await
            .status,
        200
    );
}

/// A copy of the repository's templates that a test may break.
/// A server whose templates have no `password_reset` folder (shared or per origin); the
/// scratch folder must outlive it.
async fn app_without_reset_templates(db: Db, scratch: &std::path::Path) -> TestApp {
    let templates = authd_tests::templates_copy(scratch);
    std::fs::remove_dir_all(templates.join("password_reset")).unwrap();
    std::fs::remove_dir_all(templates.join("origins")).unwrap();
    TestApp::spawn_with(
        db,
        &[("AUTHD__MAIL__TEMPLATES_DIR", templates.to_str().unwrap())],
    )
    .await
}

async fn a_missing_template_answers_500_counts_it_and_gives_the_window_back(db: Db) {
    let scratch = tempfile::tempdir().unwrap();
    let app = app_without_reset_templates(db, scratch.path()).await;
    app.create_user("gus@example.org", PASSWORD).await;
    let series = r#"auth_mail_template_failures_total{origin="default",kind="password_reset",reason="missing"}"#;
    assert_eq!(
        metric_value(&app.metrics().await, series),
        Some(0.0),
        "exists at zero from start"
    );

    for who in ["gus@example.org", "nobody@example.org"] {
        app.reset_send(who, "?language=de")
            .await
            .assert_error(500, "UNABLE_TO_FIND_MAIL_TEMPLATE");
        // The window was given back: the next try is not throttled, it fails the same way.
        app.reset_send(who, "?language=de")
            .await
            .assert_error(500, "UNABLE_TO_FIND_MAIL_TEMPLATE");
    }
    assert_eq!(metric_value(&app.metrics().await, series), Some(4.0));
    // Nothing was stored: no code, no mail.
    app.reset_validate("gus@example.org", "000000")
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    app.wait_for_outbox_drained().await;
    assert!(app.mails().is_empty());
}

async fn a_broken_template_answers_500_with_the_render_reason(db: Db) {
    let scratch = tempfile::tempdir().unwrap();
    let templates = authd_tests::templates_copy(scratch.path());
    std::fs::write(
        templates.join("password_reset/fr.txt.tera"),
        "{{ no_such_variable }}",
    )
    .unwrap();
    let app = TestApp::spawn_with(
        db,
        &[("AUTHD__MAIL__TEMPLATES_DIR", templates.to_str().unwrap())],
    )
    .await;
    app.create_user("hal@example.org", PASSWORD).await;
    let res = app.reset_send("hal@example.org", "?language=fr").await;
    res.assert_error(500, "UNABLE_TO_FIND_MAIL_TEMPLATE");
    assert!(
        !res.text.contains("no_such_variable"),
        "no internal detail in the answer"
    );
    let series = r#"auth_mail_template_failures_total{origin="default",kind="password_reset",reason="render"}"#;
    assert_eq!(metric_value(&app.metrics().await, series), Some(1.0));
    // Other languages still work.
    assert_eq!(
        app.reset_send("hal@example.org", "?language=en")
            .await
            .status,
        200
    );
}

async fn forbidden_providers_unknown_origins_and_bad_languages_are_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    app.reset_send("x@mailinator.com", "")
        .await
        .assert_error(403, "FORBIDDEN_MAIL_PROVIDER");
    app.reset_send("x@eu.mailinator.com", "")
        .await
        .assert_error(403, "FORBIDDEN_MAIL_PROVIDER");
    app.reset_send("x@example.org", "?origin=nope")
        .await
        .assert_error(400, "UNKNOWN_ORIGIN");
    app.reset_send("x@example.org", &format!("?origin={}", "o".repeat(257)))
        .await
        .assert_error(400, "origin must be 1 to 256 characters long");
    app.reset_send("x@example.org", "?language=nld")
        .await
        .assert_error(400, "language must be exactly 2 letters");
    app.reset_send("x@example.org", "?language=n1")
        .await
        .assert_error(400, "language must be exactly 2 letters");
    app.reset_send("not-an-address", "")
        .await
        .assert_error(400, "Invalid email address");
    app.reset_send(&format!("{}@example.org", "a".repeat(250)), "")
        .await
        .assert_error(400, "Invalid email address");
    // The body rules of the contract, on a real route.
    app.post_json("/user/password/reset/send", &json!({}))
        .await
        .assert_error(400, "body must have required property 'email'");
    app.post_json("/user/password/reset/send", &json!({"email": 42}))
        .await
        .assert_error(
            400,
            "body/email has the wrong type: integer `42`, expected a string",
        );
    app.post_raw(
        "/user/password/reset/send",
        Some("application/json"),
        "{\"email\": ",
    )
    .await
    .assert_error(400, "body is not valid JSON: EOF while parsing a value");
    app.post_raw(
        "/user/password/reset/send",
        None,
        "{\"email\":\"x@example.org\"}",
    )
    .await
    .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    app.post_raw(
        "/user/password/reset/send",
        Some("text/plain"),
        "{\"email\":\"x@example.org\"}",
    )
    .await
    .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let big = format!(
        "{{\"email\":\"x@example.org\",\"pad\":\"{}\"}}",
        "x".repeat(17 * 1024)
    );
    app.post_raw("/user/password/reset/send", Some("application/json"), big)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    app.reset_validate("x@example.org", "12345")
        .await
        .assert_error(400, "otp must be exactly 6 digits");
    app.reset_validate("x@example.org", "12345a")
        .await
        .assert_error(400, "otp must be exactly 6 digits");
    app.reset_password("x@example.org", "123456", "weakpass1")
        .await
        .assert_error(
            400,
            "Password must contain at least one uppercase character",
        );
    let res = app
        .send(app.client.get(app.url("/user/password/reset/send")))
        .await;
    res.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(res.header("allow"), Some("POST"));
}

async fn the_older_clients_alias_sends_the_same_mail(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("ivy@example.org", PASSWORD).await;
    let res = app
        .post_json(
            "/v1/auth/forgot-password?language=fr",
            &json!({"email": "ivy@example.org"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let mail = app.wait_for_mails(1).await.remove(0);
    assert!(mail.subject.contains("mot de passe"), "{}", mail.subject);
    // It shares the throttle of the new route.
    app.reset_send("ivy@example.org", "")
        .await
        .assert_error(429, "TOO_MANY_RESET_MAIL_ATTEMPTS");
    // And the new route's window holds on the alias, in the alias's words.
    app.post_json(FORGOT, &json!({"email": "ivy@example.org"}))
        .await
        .assert_error(429, "Last password forgot call was too recent");
}

const FORGOT: &str = "/v1/auth/forgot-password";
const LEGACY_400: &str = "Missing or misformatted query parameter or body";

async fn the_older_clients_alias_answers_every_400_with_its_own_text(db: Db) {
    let app = TestApp::spawn(db).await;
    let long = format!("{}@example.org", "a".repeat(90));
    for (query, body) in [
        ("", json!({"email": "a@b"})),
        ("", json!({"email": long})),
        ("", json!({"email": "not-an-address"})),
        ("", json!({})),
        ("", json!({"email": 42})),
        ("?origin=nope", json!({"email": "x@example.org"})),
        ("?language=nld", json!({"email": "x@example.org"})),
        (
            &format!("?origin={}", "o".repeat(257)),
            json!({"email": "x@example.org"}),
        ),
    ] {
        let res = app.post_json(&format!("{FORGOT}{query}"), &body).await;
        assert_eq!(res.status, 400, "{query} {body}: {}", res.text);
        res.assert_error(400, LEGACY_400);
    }
    app.post_raw(FORGOT, Some("application/json"), "{\"email\": ")
        .await
        .assert_error(400, LEGACY_400);
    // What is not a 400 keeps the codes of reset/send.
    app.post_raw(FORGOT, Some("text/plain"), r#"{"email":"x@example.org"}"#)
        .await
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    // Nothing was sent or throttled: the address can still ask.
    assert_eq!(
        app.post_json(FORGOT, &json!({"email": "x@example.org"}))
            .await
            .status,
        200
    );
}

async fn the_older_clients_alias_answers_a_forbidden_provider_with_its_own_text(db: Db) {
    let app = TestApp::spawn(db).await;
    for email in ["x@mailinator.com", "x@eu.mailinator.com"] {
        app.post_json(FORGOT, &json!({ "email": email }))
            .await
            .assert_error(403, "Forbidden email provider");
    }
}

async fn the_older_clients_alias_answers_429_with_its_own_text_and_the_wait(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("kim@example.org", PASSWORD).await;
    for email in ["kim@example.org", "nobody@example.org"] {
        let first = app.post_json(FORGOT, &json!({ "email": email })).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let res = app.post_json(FORGOT, &json!({ "email": email })).await;
        res.assert_error(429, "Last password forgot call was too recent");
        let wait = res.json()["retryAfter"].as_u64().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(res.header("retry-after"), Some(wait.to_string().as_str()));
    }
    // The per-IP budget speaks the alias's words too.
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__LIMITS__IP_RESET__CAPACITY", "1"),
            ("AUTHD__LIMITS__IP_RESET__REFILL_PER_MINUTE", "1"),
        ],
    )
    .await;
    assert_eq!(
        app.post_json(FORGOT, &json!({"email": "a1@example.org"}))
            .await
            .status,
        200
    );
    let res = app
        .post_json(FORGOT, &json!({"email": "a2@example.org"}))
        .await;
    res.assert_error(429, "Last password forgot call was too recent");
    assert!(res.header("retry-after").is_some());
}

async fn the_older_clients_alias_answers_500_as_reset_send(db: Db) {
    let scratch = tempfile::tempdir().unwrap();
    let app = app_without_reset_templates(db, scratch.path()).await;
    app.post_json(FORGOT, &json!({"email": "gus@example.org"}))
        .await
        .assert_error(500, "UNABLE_TO_FIND_MAIL_TEMPLATE");
}

async fn an_origin_override_brands_the_mail(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("jo@example.org", PASSWORD).await;
    assert_eq!(
        app.reset_send("jo@example.org", "?origin=acme")
            .await
            .status,
        200
    );
    let mail = app.wait_for_mails_of("acme", 1).await.remove(0);
    assert!(
        mail.raw
            .contains("From: \"Acme Corp\" <accounts@acme.example>"),
        "{}",
        mail.raw
    );
    assert!(
        mail.raw.contains("Reply-To: support@acme.example"),
        "{}",
        mail.raw
    );
    assert!(
        mail.text
            .contains("https://accounts.acme.example/reset?email=jo%40example%2Eorg&otp="),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("Acme"), "{}", mail.text);
    assert!(
        app.mails().is_empty(),
        "nothing went through the default origin"
    );
}

async fn the_reset_metrics_exist_and_count(db: Db) {
    let app = TestApp::spawn(db).await;
    let before = app.metrics().await;
    for name in [
        r#"auth_throttle_hits_total{limit="reset_mail"}"#,
        r#"auth_mail_sent_total{origin="default",backend="file",kind="password_reset"}"#,
        r#"auth_mail_failures_total{origin="default",backend="file",kind="password_reset",permanent="true"}"#,
        r#"auth_mail_template_failures_total{origin="acme",kind="password_changed",reason="render"}"#,
        "auth_mail_outbox_pending",
        "auth_mail_outbox_dead",
    ] {
        assert_eq!(
            metric_value(&before, name),
            Some(0.0),
            "{name} missing or not zero at start:\n{before}"
        );
    }
    app.create_user("kim@example.org", PASSWORD).await;
    app.reset_send("kim@example.org", "").await;
    app.reset_send("kim@example.org", "").await;
    app.wait_for_mails(1).await;
    // The counter is bumped right after the file is written; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let sent = r#"auth_mail_sent_total{origin="default",backend="file",kind="password_reset"}"#;
    let after = loop {
        let m = app.metrics().await;
        if metric_value(&m, sent) == Some(1.0) || std::time::Instant::now() > deadline {
            break m;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(metric_value(&after, sent), Some(1.0), "{after}");
    assert_eq!(
        metric_value(&after, r#"auth_throttle_hits_total{limit="reset_mail"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&after, r#"auth_otp_issued_total{purpose="password_reset"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&after, "auth_mail_delivery_seconds_count"),
        Some(1.0),
        "{after}"
    );
    assert!(!after.contains("kim@"), "no address in metrics");
}
