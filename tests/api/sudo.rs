//! Re-authentication (issue 10, finding 6): `POST /auth/sudo` gives an account without a
//! second factor a sudo token for its password, and `security.strict_sudo` makes every call
//! marked "sudo (or access when 2FA is off)" take a sudo token only.

use authd_tests::two_factor::{assert_429, claims_of};
use authd_tests::{both_dbs, Db, Reply, TestApp};
use reqwest::Method;
use serde_json::json;

const PASSWORD: &str = "Correct1horse";
const ANN: &str = "ann@example.org";

both_dbs!(
    post_auth_sudo_trades_the_password_for_a_sudo_token_of_the_same_login,
    post_auth_sudo_is_refused_for_accounts_with_a_second_factor_and_wrong_tokens,
    strict_sudo_makes_every_sudo_or_access_call_take_a_sudo_token,
);

async fn sudo(app: &TestApp, token: &str, password: &str) -> Reply {
    app.post_with("/auth/sudo", token, &json!({ "password": password }))
        .await
}

async fn post_auth_sudo_trades_the_password_for_a_sudo_token_of_the_same_login(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__TOKENS__SUDO_LIFETIME_SECS", "120"),
            ("AUTHD__LIMITS__PASSWORD_BACKOFF__INITIAL_WAIT_SECS", "60"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;

    let res = sudo(&app, &access, PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        res.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = res.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let token = body["sudoToken"].as_str().unwrap();
    let (claims, of_access) = (claims_of(token), claims_of(&access));
    assert_eq!(claims["typ"], "sudo", "{claims}");
    assert_eq!(claims["sub"], of_access["sub"]);
    assert_eq!(claims["sid"], of_access["sid"], "the same login");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120,
        "tokens.sudo_lifetime_secs"
    );
    // The sudo token is accepted where only sudo is: TOTP is off, so 409, not 401.
    app.delete_with("/user/2fa/totp", token)
        .await
        .assert_error(409, "TOTP_ALREADY_INACTIVE");
    // The access token is not.
    app.delete_with("/user/2fa/totp", &access)
        .await
        .assert_error(401, "INVALID_TOKEN");

    // Wrong passwords share the login's backoff.
    for _ in 0..3 {
        sudo(&app, &access, "Wrong1horse")
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    assert_429(
        &sudo(&app, &access, PASSWORD).await,
        "TOO_MANY_FAILED_PASSWORD_CHECKS",
    );
    assert_429(
        &app.login(ANN, PASSWORD).await,
        "TOO_MANY_FAILED_PASSWORD_CHECKS",
    );
}

async fn post_auth_sudo_is_refused_for_accounts_with_a_second_factor_and_wrong_tokens(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user(ANN, PASSWORD).await;
    let refresh = app.login_ok(ANN, PASSWORD).await;
    let access = app.access_token(&refresh).await;
    let res = app
        .call(
            Method::POST,
            "/auth/sudo",
            None,
            Some(&json!({ "password": PASSWORD })),
        )
        .await;
    res.assert_error(401, "NO_TOKEN_PROVIDED");
    sudo(&app, &refresh, PASSWORD)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let res = app
        .post_with("/auth/sudo", &access, &json!({ "pass": PASSWORD }))
        .await;
    assert_eq!(res.status, 400, "{}", res.text);

    // With a second factor on, the step-up is an authenticate call.
    let (_, res) = app.turn_on_totp(&access, &access).await;
    assert_eq!(res.status, 200, "{}", res.text);
    sudo(&app, &access, PASSWORD)
        .await
        .assert_error(409, "2FA_IS_ENABLED");
}

async fn strict_sudo_makes_every_sudo_or_access_call_take_a_sudo_token(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__SECURITY__STRICT_SUDO", "true")]).await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let calls: [(Method, &str, serde_json::Value); 4] = [
        (
            Method::POST,
            "/user/2fa/email-otp/setup",
            json!({ "email": "a2@example.org" }),
        ),
        (Method::POST, "/user/2fa/totp/setup", json!({})),
        (
            Method::POST,
            "/user/email/initiate",
            json!({ "email": "new@example.org" }),
        ),
        (
            Method::PUT,
            "/user/password/old-password",
            json!({ "oldPassword": PASSWORD, "newPassword": "Another2horse" }),
        ),
    ];
    for (method, path, body) in &calls {
        app.call(method.clone(), path, Some(&access), Some(body))
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    let res = sudo(&app, &access, PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let token = res.json()["sudoToken"].as_str().unwrap().to_owned();
    for (method, path, body) in &calls {
        let res = app
            .call(method.clone(), path, Some(&token), Some(body))
            .await;
        assert_eq!(res.status, 200, "{path} with a sudo token: {}", res.text);
    }
    app.login_ok(ANN, "Another2horse").await;
}
