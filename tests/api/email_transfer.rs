//! Email address transfer (`POST /user/email/initiate`, `PUT /user/email`) and the notices
//! that follow account changes, in the brand and language the user last asked for.

use authd_domain::tokens::TokenKind;
use authd_tests::{both_dbs, Db, Reply, TestApp};
use reqwest::Method;
use serde_json::json;

const PASSWORD: &str = "Correct1horse";

async fn initiate(app: &TestApp, token: &str, email: &str, query: &str) -> Reply {
    app.post_with(
        &format!("/user/email/initiate{query}"),
        token,
        &json!({ "email": email }),
    )
    .await
}

async fn complete(app: &TestApp, token: &str, otp: &str) -> Reply {
    app.call(
        Method::PUT,
        "/user/email",
        Some(token),
        Some(&json!({ "otp": otp })),
    )
    .await
}

both_dbs!(
    a_transfer_moves_the_login_tells_the_old_address_and_ends_other_logins,
    two_accounts_racing_for_one_address_one_wins_the_other_gets_409,
    initiate_is_throttled_validated_and_does_not_reveal_a_taken_address,
    a_wrong_or_expired_code_changes_nothing,
    transfer_token_kinds_follow_the_contract,
    notices_go_out_in_the_brand_and_language_the_user_last_asked_for,
);

async fn a_transfer_moves_the_login_tells_the_old_address_and_ends_other_logins(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("ann@example.org", PASSWORD).await;
    let mine = app.login_ok("ann@example.org", PASSWORD).await;
    let other = app.login_ok("ann@example.org", PASSWORD).await;
    let access = app.access_token(&mine).await;

    let res = initiate(&app, &access, "Ann.New@Example.org", "?language=de").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    let verify = app.wait_for_mail_to("ann.new@example.org", 1).await;
    assert!(
        verify.subject.contains("E-Mail"),
        "German: {}",
        verify.subject
    );
    let code = verify.code();
    assert!(
        app.mails_to("ann@example.org").is_empty(),
        "nothing goes to the old address before the change"
    );

    let res = complete(&app, &access, &code).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");

    // The old address is told, in the language the code was asked in, with the new address
    // masked and no code.
    let notice = app.wait_for_mail_to("ann@example.org", 1).await;
    assert!(notice.subject.contains("geändert"), "{}", notice.subject);
    assert!(notice.text.contains("a***@example.org"), "{}", notice.text);
    assert!(!notice.raw.contains("ann.new@example.org"));
    assert!(!notice.raw.contains(&code));

    // Login works with the new address only.
    app.login("ann@example.org", PASSWORD)
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    app.login_ok("ANN.NEW@example.org", PASSWORD).await;
    // The caller's login stays; every other one ends.
    app.get_with("/auth/accesstoken", &other)
        .await
        .assert_error(401, "INVALID_TOKEN");
    assert_eq!(app.get_with("/auth/accesstoken", &mine).await.status, 200);
    // The code is used up.
    complete(&app, &access, &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
}

async fn two_accounts_racing_for_one_address_one_wins_the_other_gets_409(db: Db) {
    let app = TestApp::spawn(db).await;
    let target = "shared@example.org";
    let mut tokens = Vec::new();
    for (i, who) in ["ann@example.org", "bob@example.org"].iter().enumerate() {
        app.create_user(who, PASSWORD).await;
        let access = app.login_access(who, PASSWORD).await;
        let res = initiate(&app, &access, target, "").await;
        assert_eq!(res.status, 200, "{}", res.text);
        let code = app.wait_for_mail_to(target, i + 1).await.code();
        tokens.push((access, code));
    }
    let (a, b) = futures_util::join!(
        complete(&app, &tokens[0].0, &tokens[0].1),
        complete(&app, &tokens[1].0, &tokens[1].1)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text, b.text);
    let loser = if a.status == 409 { &a } else { &b };
    loser.assert_error(409, "NEW_EMAIL_ALREADY_IN_USE");
    // Exactly one account has the address, and the other kept its own.
    app.login_ok(target, PASSWORD).await;
    let kept = if a.status == 409 {
        "ann@example.org"
    } else {
        "bob@example.org"
    };
    app.login_ok(kept, PASSWORD).await;
}

async fn initiate_is_throttled_validated_and_does_not_reveal_a_taken_address(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("ann@example.org", PASSWORD).await;
    app.create_user("taken@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;

    initiate(&app, &access, "not an address", "")
        .await
        .assert_error(400, "Invalid email address");
    initiate(&app, &access, "x@mailinator.com", "")
        .await
        .assert_error(403, "FORBIDDEN_MAIL_PROVIDER");
    initiate(&app, &access, "x@example.org", "?origin=nowhere")
        .await
        .assert_error(400, "UNKNOWN_ORIGIN");

    // A taken address gets the same answer and a mail like any other.
    let res = initiate(&app, &access, "taken@example.org", "").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    let code = app.wait_for_mail_to("taken@example.org", 1).await.code();

    // One transfer mail per account per minute.
    let res = initiate(&app, &access, "else@example.org", "").await;
    res.assert_error(429, "TOO_MANY_TRANSFER_ATTEMPTS");
    let wait = res.json()["retryAfter"].as_u64().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(res.header("retry-after"), Some(wait.to_string().as_str()));
    assert!(app.mails_to("else@example.org").is_empty());

    // Completing reveals the conflict, and changes nothing.
    complete(&app, &access, &code)
        .await
        .assert_error(409, "NEW_EMAIL_ALREADY_IN_USE");
    app.login_ok("ann@example.org", PASSWORD).await;
}

async fn a_wrong_or_expired_code_changes_nothing(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__OTP__LIFETIME_SECS", "1")]).await;
    app.create_user("ann@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;
    assert_eq!(
        initiate(&app, &access, "new@example.org", "").await.status,
        200
    );
    let code = app.wait_for_mail_to("new@example.org", 1).await.code();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    complete(&app, &access, wrong)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    complete(&app, &access, "12345")
        .await
        .assert_error(400, "otp must be exactly 6 digits");
    app.advance_ms(1500);
    complete(&app, &access, &code)
        .await
        .assert_error(401, "OTP_INVALID_EXPIRED");
    app.login_ok("ann@example.org", PASSWORD).await;
    app.login("new@example.org", PASSWORD)
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
}

async fn transfer_token_kinds_follow_the_contract(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__TRANSFER_MAIL__MAX", "100")]).await;
    let id = app.create_user("ann@example.org", PASSWORD).await;
    let refresh = app.login_ok("ann@example.org", PASSWORD).await;
    let access = app.access_token(&refresh).await;
    let sudo = app.mint(TokenKind::Sudo, id);
    let partial = app.mint(TokenKind::Partial, id);

    // Initiate: sudo, or access while no second factor is on.
    let none = app
        .call(
            Method::POST,
            "/user/email/initiate",
            None,
            Some(&json!({"email": "n@example.org"})),
        )
        .await;
    none.assert_error(401, "NO_TOKEN_PROVIDED");
    for bad in [&refresh, &partial, &"garbage".to_owned()] {
        initiate(&app, bad, "n@example.org", "")
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    assert_eq!(
        initiate(&app, &access, "n@example.org", "").await.status,
        200
    );
    assert_eq!(initiate(&app, &sudo, "n@example.org", "").await.status, 200);

    // With a second factor on, an access token no longer starts a transfer.
    let on = app
        .execute_sql(&format!(
            "INSERT INTO email_otp_methods (user_id, email, setup_pending, enabled_at_ms) \
             VALUES ({id}, 'ann.phone@example.org', FALSE, 1)"
        ))
        .await;
    assert_eq!(on, 1);
    initiate(&app, &access, "n@example.org", "")
        .await
        .assert_error(401, "INVALID_TOKEN");
    assert_eq!(initiate(&app, &sudo, "n@example.org", "").await.status, 200);

    // Complete: access only.
    for bad in [&refresh, &partial, &sudo] {
        complete(&app, bad, "123456")
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    let none = app
        .call(
            Method::PUT,
            "/user/email",
            None,
            Some(&json!({"otp": "123456"})),
        )
        .await;
    none.assert_error(401, "NO_TOKEN_PROVIDED");
}

async fn notices_go_out_in_the_brand_and_language_the_user_last_asked_for(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__RESET_MAIL__MAX", "10")]).await;
    app.create_user("ann@example.org", PASSWORD).await;
    // A code asked for in Dutch...
    let res = app.reset_send("ann@example.org", "?language=nl").await;
    assert_eq!(res.status, 200, "{}", res.text);
    app.wait_for_mail_to("ann@example.org", 1).await;
    // ...so the notice of a later password change, which names no language, is Dutch too.
    let access = app.login_access("ann@example.org", PASSWORD).await;
    let res = app
        .change_password(&access, PASSWORD, "Brand2newpass")
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let notice = app.wait_for_mail_to("ann@example.org", 2).await;
    assert_eq!(
        notice.subject, "Je wachtwoord voor Example is gewijzigd",
        "{}",
        notice.text
    );

    // A request that names its language wins, and is remembered.
    let res = app
        .send(
            app.client
                .put(app.url("/user/password/old-password?language=fr"))
                .bearer_auth(&access)
                .json(&json!({"oldPassword": "Brand2newpass", "newPassword": "Third3pass"})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let notice = app.wait_for_mail_to("ann@example.org", 3).await;
    assert!(
        notice.subject.starts_with("Le mot de passe"),
        "{}",
        notice.subject
    );

    // A code asked for in another brand sends later notices in that brand.
    let res = app.reset_send("ann@example.org", "?origin=acme").await;
    assert_eq!(res.status, 200, "{}", res.text);
    app.wait_for_mails_of("acme", 1).await;
    let res = app
        .change_password(&access, "Third3pass", "Fourth4pass")
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let acme = app.wait_for_mails_of("acme", 2).await;
    assert!(acme[1].subject.contains("Acme Corp"), "{}", acme[1].subject);
    assert!(acme[1].raw.contains("accounts@acme.example"));
}
