//! Email OTP as a second factor, end to end with the file mail backend: setup, enable,
//! login with a partial token, challenge, authenticate, deactivation, and the mail throttle.

use authd_tests::two_factor::{
    assert_429, assert_full_tokens, assert_notice_without_codes, assert_sudo_only,
    assert_ten_recovery_codes, assert_two_factor_required, duration_of,
};
use authd_tests::{both_dbs, Db, TestApp};
use futures_util::future::join_all;
use serde_json::json;

const PASSWORD: &str = "Correct1horse";
const ANN: &str = "ann@example.org";
/// The address Ann receives her codes at: not her login address.
const ANN_OTP: &str = "ann.codes@example.net";
/// Tests that send several code mails quickly lift the one-mail-per-minute limit.
const MANY_MAILS: (&str, &str) = ("AUTHD__LIMITS__OTP_MAIL__MAX", "100");

both_dbs!(
    two_factor_email_otp_full_cycle_with_a_partial_token_at_login,
    two_factor_email_otp_one_mail_per_user_per_window_across_setup_and_challenge,
    two_factor_email_otp_a_passed_window_lets_the_next_mail_through,
    two_factor_email_otp_setup_checks_the_address_origin_and_language,
    two_factor_email_otp_codes_are_bound_to_their_purpose_and_a_new_setup_moves_the_address,
    two_factor_email_otp_ten_parallel_uses_of_one_code_succeed_exactly_once,
    two_factor_email_otp_parallel_enables_with_one_code_make_one_recovery_set,
    two_factor_email_otp_an_expired_code_is_refused,
);

fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn two_factor_email_otp_full_cycle_with_a_partial_token_at_login(db: Db) {
    let app = TestApp::spawn_with(db, &[MANY_MAILS]).await;
    let id = app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;

    // Nothing set up: every call says so.
    app.email_otp_next_email(&access)
        .await
        .assert_error(409, "EMAIL_OTP_UNINITIALIZED");
    app.email_otp_enable(&access, "123456")
        .await
        .assert_error(409, "EMAIL_OTP_UNINITIALIZED");
    app.email_otp_challenge(&access, "")
        .await
        .assert_error(409, "EMAIL_OTP_UNINITIALIZED");
    app.email_otp_authenticate(&access, "123456")
        .await
        .assert_error(409, "EMAIL_OTP_INACTIVE");

    // Setup mails a code to the address given, which is not the login address.
    let res = app.email_otp_setup(&access, ANN_OTP, "").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    assert_eq!(
        res.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let setup_mail = app.wait_for_mail_to(ANN_OTP, 1).await;
    let setup_code = setup_mail.code();
    assert!(setup_mail.html.contains(&setup_code), "the HTML part too");
    assert!(app.mails_to(ANN).is_empty(), "nothing to the login address");
    assert_eq!(duration_of(&app.email_otp_next_email(&access).await), 0);

    // Set up is not on yet.
    app.email_otp_challenge(&access, "")
        .await
        .assert_error(409, "EMAIL_OTP_UNINITIALIZED");
    app.email_otp_authenticate(&access, &setup_code)
        .await
        .assert_error(409, "EMAIL_OTP_INACTIVE");
    assert_eq!(
        app.two_factor_overview(&access).await.json()["enabled"],
        false
    );

    app.email_otp_enable(&access, &wrong(&setup_code))
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let codes = assert_ten_recovery_codes(&app.email_otp_enable(&access, &setup_code).await);
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    app.email_otp_enable(&access, &setup_code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");

    // The notice goes to the login address and carries no code.
    let notice = app.wait_for_mail_to(ANN, 1).await;
    assert_notice_without_codes(&notice, &codes);
    assert!(!notice.raw.contains(&setup_code));

    let overview = app.two_factor_overview(&access).await;
    assert_eq!(overview.status, 200, "{}", overview.text);
    let overview = overview.json();
    assert_eq!(overview["enabled"], true, "{overview}");
    assert_eq!(overview["emailOtp"]["email"], ANN_OTP, "{overview}");
    let completed =
        chrono::DateTime::parse_from_rfc3339(overview["emailOtp"]["completedAt"].as_str().unwrap())
            .expect("RFC 3339");
    assert!(
        before <= completed && completed <= after,
        "completedAt {completed} within the enable call"
    );
    assert!(overview["totp"].is_null(), "{overview}");
    assert!(overview["recoveryCodes"]["completedAt"].is_string());

    // A wrong password is still just that: no partial token, no hint of 2FA.
    app.login(ANN, "Wrong1password")
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    // Login now needs the second factor.
    let login = app.login(ANN, PASSWORD).await;
    assert!(login.header("x-request-id").is_some());
    let login = assert_two_factor_required(&login);
    assert_eq!(login.methods, ["emailOtp", "recoveryCode"]);
    let claims = authd_tests::two_factor::claims_of(&login.partial);
    assert_eq!(claims["sub"], id.to_string());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300,
        "partial tokens live 5 minutes"
    );
    // A partial token is no access token.
    app.two_factor_overview(&login.partial)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.get_with("/auth/accesstoken/validate", &login.partial)
        .await
        .assert_error(401, "INVALID_TOKEN");

    // The challenge mails a new code to the 2FA address.
    let res = app.email_otp_challenge(&login.partial, "").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    let code = app.wait_for_mail_to(ANN_OTP, 2).await.code();
    app.email_otp_authenticate(&login.partial, &wrong(&code))
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    let tokens = assert_full_tokens(&app.email_otp_authenticate(&login.partial, &code).await);
    // A code works once.
    app.email_otp_authenticate(&login.partial, &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    let refresh = tokens.refresh.unwrap();
    let res = app.get_with("/auth/refreshtoken/validate", &refresh).await;
    assert_eq!(res.json(), json!({ "userId": id }));
    let new_access = app.access_token(&refresh).await;
    assert_eq!(
        app.get_with("/auth/accesstoken/validate", &new_access)
            .await
            .json(),
        json!({ "userId": id })
    );
    assert_eq!(
        app.get_with("/auth/accesstoken/validate", &tokens.access.unwrap())
            .await
            .json(),
        json!({ "userId": id })
    );
    let sudo_claims = authd_tests::two_factor::claims_of(&tokens.sudo);
    assert_eq!(sudo_claims["sub"], id.to_string());
    assert_eq!(
        sudo_claims["exp"].as_i64().unwrap() - sudo_claims["iat"].as_i64().unwrap(),
        300
    );

    // With an access token the same calls step up to sudo only.
    assert_eq!(app.email_otp_challenge(&new_access, "").await.status, 200);
    let code = app.wait_for_mail_to(ANN_OTP, 3).await.code();
    let sudo = assert_sudo_only(&app.email_otp_authenticate(&new_access, &code).await);

    // Deactivating takes sudo; it was the only method, so 2FA is off afterwards.
    app.email_otp_disable(&new_access)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let res = app.email_otp_disable(&sudo).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    app.email_otp_disable(&sudo)
        .await
        .assert_error(409, "EMAIL_OTP_ALREADY_INACTIVE");
    app.email_otp_authenticate(&new_access, "123456")
        .await
        .assert_error(409, "EMAIL_OTP_INACTIVE");
    app.email_otp_challenge(&new_access, "")
        .await
        .assert_error(409, "EMAIL_OTP_UNINITIALIZED");
    assert_eq!(
        app.two_factor_overview(&new_access).await.json(),
        json!({ "enabled": false, "emailOtp": null, "totp": null, "recoveryCodes": null })
    );
    app.recovery_authenticate(&new_access, &codes[0])
        .await
        .assert_error(409, "RECOVERY_CODES_UNINITIALIZED");
    app.login_ok(ANN, PASSWORD).await;
    let off = app.wait_for_mail_to(ANN, 2).await;
    assert_notice_without_codes(&off, &codes);
    // Three codes to the 2FA address, two notices to the login address, nothing else.
    app.wait_for_outbox_drained().await;
    assert_eq!(app.mails().len(), 5, "no other mail");
}

async fn two_factor_email_otp_one_mail_per_user_per_window_across_setup_and_challenge(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user(ANN, PASSWORD).await;
    app.create_user("bob@example.org", PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let bob = app.login_access("bob@example.org", PASSWORD).await;

    // A refused address does not use the window up.
    app.email_otp_setup(&access, "x@mailinator.com", "")
        .await
        .assert_error(403, "FORBIDDEN_MAIL_PROVIDER");
    assert_eq!(app.email_otp_setup(&access, ANN_OTP, "").await.status, 200);
    // The limit is per user, whatever the address.
    let res = app
        .email_otp_setup(&access, "ann.other@example.net", "")
        .await;
    let wait = assert_429(&res, "TOO_MANY_OTP_EMAILS");
    assert!(wait <= 60, "retryAfter {wait}");
    let next = duration_of(&app.email_otp_next_email(&access).await);
    assert!(
        (wait - next).abs() <= 1 && next >= 55,
        "next-email {next} vs retryAfter {wait}"
    );
    // Another user is not affected.
    assert_eq!(
        app.email_otp_setup(&bob, "bob.codes@example.net", "")
            .await
            .status,
        200
    );

    // Setup and challenge share the window.
    let code = app.wait_for_mail_to(ANN_OTP, 1).await.code();
    assert_ten_recovery_codes(&app.email_otp_enable(&access, &code).await);
    let res = app.email_otp_challenge(&access, "").await;
    let wait2 = assert_429(&res, "TOO_MANY_OTP_EMAILS");
    assert!(wait2 <= wait, "the same window: {wait2} <= {wait}");
    let partial = assert_two_factor_required(&app.login(ANN, PASSWORD).await).partial;
    assert_429(
        &app.email_otp_challenge(&partial, "").await,
        "TOO_MANY_OTP_EMAILS",
    );

    app.wait_for_mail_to("bob.codes@example.net", 1).await;
    app.wait_for_mail_to(ANN, 1).await; // the notice is no code mail and is not throttled
    app.wait_for_outbox_drained().await;
    assert_eq!(app.mails_to(ANN_OTP).len(), 1, "one code mail for Ann");
    assert!(app.mails_to("ann.other@example.net").is_empty());
}

async fn two_factor_email_otp_a_passed_window_lets_the_next_mail_through(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__OTP_MAIL__WINDOW_SECS", "1")]).await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    assert_eq!(app.email_otp_setup(&access, ANN_OTP, "").await.status, 200);
    let wait = assert_429(
        &app.email_otp_setup(&access, ANN_OTP, "").await,
        "TOO_MANY_OTP_EMAILS",
    );
    assert_eq!(wait, 1);
    assert!(duration_of(&app.email_otp_next_email(&access).await) <= 1);
    app.advance_ms(1050);
    assert_eq!(duration_of(&app.email_otp_next_email(&access).await), 0);
    assert_eq!(app.email_otp_setup(&access, ANN_OTP, "").await.status, 200);
    // The latest code enables.
    let code = app.wait_for_mail_to(ANN_OTP, 2).await.code();
    assert_ten_recovery_codes(&app.email_otp_enable(&access, &code).await);
    app.advance_ms(1050);
    assert_eq!(app.email_otp_challenge(&access, "").await.status, 200);
    let code = app.wait_for_mail_to(ANN_OTP, 3).await.code();
    assert_sudo_only(&app.email_otp_authenticate(&access, &code).await);
}

async fn two_factor_email_otp_setup_checks_the_address_origin_and_language(db: Db) {
    let app = TestApp::spawn_with(db, &[MANY_MAILS]).await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;

    app.email_otp_setup(&access, "not-an-address", "")
        .await
        .assert_error(400, "Invalid email address");
    app.email_otp_setup(&access, ANN_OTP, "?origin=nope")
        .await
        .assert_error(400, "UNKNOWN_ORIGIN");
    app.email_otp_setup(&access, ANN_OTP, "?language=nld")
        .await
        .assert_error(400, "language must be exactly 2 letters");
    app.post_with("/user/2fa/email-otp/setup", &access, &json!({}))
        .await
        .assert_error(400, "body must have required property 'email'");
    app.email_otp_setup(&access, "x@eu.mailinator.com", "")
        .await
        .assert_error(403, "FORBIDDEN_MAIL_PROVIDER");
    app.wait_for_outbox_drained().await;
    assert!(app.mails().is_empty(), "no mail for refused calls");

    // Language and origin pick the template and the sending configuration.
    assert_eq!(app.email_otp_setup(&access, ANN_OTP, "").await.status, 200);
    let en = app.wait_for_mail_to(ANN_OTP, 1).await;
    assert_eq!(
        app.email_otp_setup(&access, ANN_OTP, "?language=nl")
            .await
            .status,
        200
    );
    let nl = app.wait_for_mail_to(ANN_OTP, 2).await;
    assert_ne!(en.subject, nl.subject, "a Dutch subject");
    assert_ne!(en.code(), "", "codes in both");
    assert_eq!(
        app.email_otp_setup(&access, ANN_OTP, "?origin=acme")
            .await
            .status,
        200
    );
    let acme = app.wait_for_mails_of("acme", 1).await.remove(0);
    assert_eq!(acme.to, ANN_OTP);
    // The code of the latest setup enables.
    assert_ten_recovery_codes(&app.email_otp_enable(&access, &acme.code()).await);
    assert_eq!(
        app.two_factor_overview(&access).await.json()["emailOtp"]["email"],
        ANN_OTP
    );
}

async fn two_factor_email_otp_codes_are_bound_to_their_purpose_and_a_new_setup_moves_the_address(
    db: Db,
) {
    let app = TestApp::spawn_with(db, &[MANY_MAILS]).await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    assert_ten_recovery_codes(&app.turn_on_email_otp(&access, ANN_OTP, 1).await);

    // A challenge code does not enable a setup...
    let sudo = {
        assert_eq!(app.email_otp_challenge(&access, "").await.status, 200);
        let code = app.wait_for_mail_to(ANN_OTP, 2).await.code();
        assert_sudo_only(&app.email_otp_authenticate(&access, &code).await)
    };
    // With 2FA on, setup takes sudo only.
    app.email_otp_setup(&access, "ann.new@example.net", "")
        .await
        .assert_error(401, "INVALID_TOKEN");
    assert_eq!(
        app.email_otp_setup(&sudo, "ann.new@example.net", "")
            .await
            .status,
        200
    );
    let setup_code = app.wait_for_mail_to("ann.new@example.net", 1).await.code();
    assert_eq!(app.email_otp_challenge(&access, "").await.status, 200);
    let challenge = app.wait_for_mail_to(ANN_OTP, 3).await.code();
    if challenge != setup_code {
        app.email_otp_enable(&access, &challenge)
            .await
            .assert_error(401, "OTP_INVALID_EXPIRED");
    }
    // ...and a setup code does not authenticate.
    app.email_otp_authenticate(&access, &setup_code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    // Until the new address is confirmed, the old one stays the 2FA address.
    assert_eq!(
        app.two_factor_overview(&access).await.json()["emailOtp"]["email"],
        ANN_OTP
    );
    // Enabling again (2FA already on) moves the address and makes no new recovery codes.
    let res = app.email_otp_enable(&access, &setup_code).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json(), json!({ "recoveryCodes": [] }));
    assert_eq!(
        app.two_factor_overview(&access).await.json()["emailOtp"]["email"],
        "ann.new@example.net"
    );
    let partial = assert_two_factor_required(&app.login(ANN, PASSWORD).await).partial;
    assert_eq!(app.email_otp_challenge(&partial, "").await.status, 200);
    let code = app.wait_for_mail_to("ann.new@example.net", 2).await.code();
    assert_full_tokens(&app.email_otp_authenticate(&partial, &code).await);
    app.wait_for_outbox_drained().await;
    assert_eq!(
        app.mails_to(ANN_OTP).len(),
        3,
        "the old address gets no more codes"
    );
}

async fn two_factor_email_otp_ten_parallel_uses_of_one_code_succeed_exactly_once(db: Db) {
    // The emailed-code backoff would let only 3 guesses of one account and network be in
    // flight at once (tests/api/guessing.rs); opened wide, all ten race for the one code.
    let app = TestApp::spawn_with(
        db,
        &[
            MANY_MAILS,
            ("AUTHD__LIMITS__EMAILED_CODE_BACKOFF__FREE_FAILURES", "1000"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    assert_ten_recovery_codes(&app.turn_on_email_otp(&access, ANN_OTP, 1).await);
    let partial = assert_two_factor_required(&app.login(ANN, PASSWORD).await).partial;
    assert_eq!(app.email_otp_challenge(&partial, "").await.status, 200);
    let code = app.wait_for_mail_to(ANN_OTP, 2).await.code();
    let replies = join_all((0..10).map(|i| {
        let token = if i % 2 == 0 { &access } else { &partial };
        app.email_otp_authenticate(token, &code)
    }))
    .await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok,
        1,
        "exactly one use succeeds: {:?}",
        replies
            .iter()
            .map(|r| (r.status.as_u16(), r.text.as_str()))
            .collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(401, "OTP_INVALID_EXPIRED");
    }
}

async fn two_factor_email_otp_an_expired_code_is_refused(db: Db) {
    let app = TestApp::spawn_with(db, &[MANY_MAILS, ("AUTHD__OTP__LIFETIME_SECS", "3")]).await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;

    // A setup code, too late; then one in time.
    assert_eq!(app.email_otp_setup(&access, ANN_OTP, "").await.status, 200);
    let code = app.wait_for_mail_to(ANN_OTP, 1).await.code();
    app.advance_ms(3100);
    app.email_otp_enable(&access, &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    assert_eq!(app.email_otp_setup(&access, ANN_OTP, "").await.status, 200);
    let code = app.wait_for_mail_to(ANN_OTP, 2).await.code();
    assert_ten_recovery_codes(&app.email_otp_enable(&access, &code).await);

    // A challenge code, too late; then one in time.
    assert_eq!(app.email_otp_challenge(&access, "").await.status, 200);
    let code = app.wait_for_mail_to(ANN_OTP, 3).await.code();
    app.advance_ms(3100);
    app.email_otp_authenticate(&access, &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    assert_eq!(app.email_otp_challenge(&access, "").await.status, 200);
    let code = app.wait_for_mail_to(ANN_OTP, 4).await.code();
    assert_sudo_only(&app.email_otp_authenticate(&access, &code).await);
}

async fn two_factor_email_otp_parallel_enables_with_one_code_make_one_recovery_set(db: Db) {
    // Opened wide, the emailed-code backoff lets all six race for the one code (at its
    // default a 4th simultaneous guess of one account and network gets 429).
    let app = TestApp::spawn_with(
        db,
        &[
            MANY_MAILS,
            ("AUTHD__LIMITS__EMAILED_CODE_BACKOFF__FREE_FAILURES", "1000"),
        ],
    )
    .await;
    let id = app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    assert_eq!(app.email_otp_setup(&access, ANN_OTP, "").await.status, 200);
    let code = app.wait_for_mail_to(ANN_OTP, 1).await.code();
    let replies = join_all((0..6).map(|_| app.email_otp_enable(&access, &code))).await;
    let winners: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one enable succeeds: {:?}",
        replies
            .iter()
            .map(|r| (r.status.as_u16(), r.text.as_str()))
            .collect::<Vec<_>>()
    );
    let codes = assert_ten_recovery_codes(winners[0]);
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(401, "OTP_INVALID_EXPIRED");
    }
    let stored = app
        .query_texts(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) AS value FROM recovery_codes WHERE user_id = {id}"
        ))
        .await;
    assert_eq!(stored, vec![Some("10".to_owned())], "one set of ten codes");
    // One notice for one change.
    app.wait_for_mail_to(ANN, 1).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(app.mails_to(ANN).len(), 1, "one notice");
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[0]).await);
}
