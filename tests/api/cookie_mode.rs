//! Cookie mode over real HTTP: `cookie=true` puts the refresh token in the `authd_refresh`
//! cookie instead of the body; the four refresh-token calls take that cookie when no
//! `Authorization` header is given, only from an allowed `Origin`; rotation and reuse
//! detection work as with bearer tokens.

use authd_domain::tokens::TokenKind;
use authd_tests::two_factor::{
    assert_sudo_only, assert_ten_recovery_codes, assert_two_factor_required, totp_at,
};
use authd_tests::{both_dbs, Db, Reply, TestApp};
use serde_json::json;

const PASSWORD: &str = "Correct1horse";
const ANN: &str = "ann@example.org";
const APP: &str = "https://app.example.com";
const ORIGINS: (&str, &str) = (
    "AUTHD__HTTP__CORS__ALLOWED_ORIGINS",
    "https://app.example.com,http://localhost:5173",
);
const LIFETIME: (&str, &str) = ("AUTHD__TOKENS__REFRESH_LIFETIME_SECS", "3600");

both_dbs!(
    login_with_cookie_true_sets_the_refresh_cookie_and_answers_null,
    the_cookie_is_secure_unless_a_development_server_is_reached_as_localhost,
    the_cookie_is_accepted_by_each_refresh_token_call_from_an_allowed_origin,
    a_bearer_token_wins_over_the_cookie,
    logout_by_cookie_revokes_the_token_and_clears_the_cookie,
    presenting_a_rotated_cookie_token_revokes_the_whole_login,
    a_cookie_call_from_a_foreign_or_missing_origin_is_refused_with_403,
    the_cookie_parameter_must_be_true_or_false,
    each_authenticate_call_puts_the_refresh_token_in_the_cookie_with_cookie_true,
);

/// One `Set-Cookie` of an answer, split into its value and attributes.
#[derive(Debug)]
struct SetCookie {
    value: String,
    attributes: Vec<String>,
}

fn set_cookie(reply: &Reply) -> SetCookie {
    let all: Vec<&str> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(all.len(), 1, "one Set-Cookie: {all:?}");
    let mut parts = all[0].split(';').map(str::trim);
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    assert_eq!(name, "authd_refresh", "{}", all[0]);
    let mut attributes: Vec<String> = parts.map(str::to_owned).collect();
    attributes.sort();
    SetCookie {
        value: value.to_owned(),
        attributes,
    }
}

fn assert_no_set_cookie(reply: &Reply) {
    assert!(
        reply.headers.get("set-cookie").is_none(),
        "no Set-Cookie: {:?}",
        reply.headers
    );
}

/// The attributes of the contract, with this Max-Age; `Secure` as asked.
fn assert_attributes(c: &SetCookie, max_age: u64, secure: bool) {
    let mut want = vec![
        "HttpOnly".to_owned(),
        format!("Max-Age={max_age}"),
        "Path=/auth".to_owned(),
        "SameSite=Strict".to_owned(),
    ];
    if secure {
        want.push("Secure".to_owned());
    }
    want.sort();
    assert_eq!(c.attributes, want);
}

async fn app_with_user(db: Db, overrides: &[(&str, &str)]) -> (TestApp, i64) {
    let mut settings = vec![ORIGINS, LIFETIME];
    settings.extend_from_slice(overrides);
    let app = TestApp::spawn_with(db, &settings).await;
    let id = app.create_user(ANN, PASSWORD).await;
    (app, id)
}

async fn login_with(app: &TestApp, query: &str, host: Option<&str>) -> Reply {
    let mut req = app
        .client
        .post(app.url(&format!("/auth/login{query}")))
        .json(&json!({"username": ANN, "password": PASSWORD}));
    if let Some(host) = host {
        req = req.header("host", host);
    }
    app.send(req).await
}

/// Logs in with `cookie=true` and returns the cookie's token.
async fn cookie_login(app: &TestApp) -> String {
    let res = login_with(app, "?cookie=true", None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    set_cookie(&res).value
}

/// A call carrying the refresh cookie (and no Authorization header) from `origin`.
async fn with_cookie(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    origin: Option<&str>,
) -> Reply {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("cookie", format!("theme=dark; authd_refresh={token}"));
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    app.send(req).await
}

async fn get_cookie(app: &TestApp, path: &str, token: &str) -> Reply {
    with_cookie(app, reqwest::Method::GET, path, token, Some(APP)).await
}

async fn login_with_cookie_true_sets_the_refresh_cookie_and_answers_null(db: Db) {
    let (app, id) = app_with_user(db, &[]).await;
    let res = login_with(&app, "?cookie=true", None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    assert_eq!(
        res.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let cookie = set_cookie(&res);
    assert_eq!(cookie.value.len(), 43, "a 256-bit token: {}", cookie.value);
    // Max-Age is the token's lifetime (tokens.refresh_lifetime_secs).
    assert_attributes(&cookie, 3600, false);
    let res = get_cookie(&app, "/auth/refreshtoken/validate", &cookie.value).await;
    assert_eq!(res.json(), json!({ "userId": id }));
    // cookie=false, and no parameter, answer as before: the token in the body, no cookie.
    for query in ["?cookie=false", ""] {
        let res = login_with(&app, query, None).await;
        assert_eq!(res.status, 200);
        assert_eq!(
            res.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(res.text.len(), 43);
        assert_no_set_cookie(&res);
    }
    // A wrong password sets nothing.
    let res = app
        .send(
            app.client
                .post(app.url("/auth/login?cookie=true"))
                .json(&json!({"username": ANN, "password": "Wrong1password"})),
        )
        .await;
    res.assert_error(401, "PASSWORD_INCORRECT");
    assert_no_set_cookie(&res);
}

async fn the_cookie_is_secure_unless_a_development_server_is_reached_as_localhost(db: Db) {
    let (app, _) = app_with_user(db, &[]).await;
    for (host, secure) in [
        (None, false),
        (Some("localhost:8080"), false),
        (Some("localhost"), false),
        (Some("authd.example.org"), true),
        (Some("localhost.example.org"), true),
        (Some("127.0.0.2:8080"), true),
    ] {
        let res = login_with(&app, "?cookie=true", host).await;
        assert_eq!(res.status, 200, "{host:?}: {}", res.text);
        assert_attributes(&set_cookie(&res), 3600, secure);
    }
    // In production the cookie is Secure on localhost too.
    let app = TestApp::spawn_adjusted(db, |_, env| {
        env.insert("AUTHD_ENV".into(), "production".into());
        for origin in ["DEFAULT", "ACME"] {
            env.insert(
                format!("AUTHD__ORIGINS__{origin}__BACKEND"),
                "sendmail".into(),
            );
            env.insert(
                format!("AUTHD__ORIGINS__{origin}__SENDMAIL__PROGRAM"),
                "/bin/true".into(),
            );
        }
        env.insert(ORIGINS.0.into(), ORIGINS.1.into());
    })
    .await;
    app.create_user(ANN, PASSWORD).await;
    for host in [None, Some("localhost:8080")] {
        let res = login_with(&app, "?cookie=true", host).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_attributes(&set_cookie(&res), 14 * 24 * 3600, true);
    }
}

async fn the_cookie_is_accepted_by_each_refresh_token_call_from_an_allowed_origin(db: Db) {
    let (app, id) = app_with_user(db, &[]).await;
    let first = cookie_login(&app).await;

    let res = get_cookie(&app, "/auth/accesstoken", &first).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_no_set_cookie(&res);
    let access = res.text;
    let res = app.get_with("/auth/accesstoken/validate", &access).await;
    assert_eq!(res.json(), json!({ "userId": id }));

    let res = get_cookie(&app, "/auth/refreshtoken/validate", &first).await;
    assert_eq!(res.json(), json!({ "userId": id }));
    assert_no_set_cookie(&res);

    // A refresh by cookie is answered in cookie mode, with or without cookie=true, and even
    // with cookie=false: the token a script could not read stays out of its reach.
    let mut current = first.clone();
    for query in ["", "?cookie=true", "?cookie=false"] {
        let res = get_cookie(&app, &format!("/auth/refreshtoken{query}"), &current).await;
        assert_eq!(res.status, 200, "{query}: {}", res.text);
        assert_eq!(res.text, "null", "{query}");
        let rotated = set_cookie(&res);
        assert_attributes(&rotated, 3600, false);
        assert_ne!(rotated.value, current);
        get_cookie(&app, "/auth/accesstoken", &current)
            .await
            .assert_error(401, "INVALID_TOKEN");
        current = rotated.value;
    }
    // The second allowed origin works the same way.
    let res = with_cookie(
        &app,
        reqwest::Method::GET,
        "/auth/accesstoken",
        &current,
        Some("http://localhost:5173"),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);

    let res = with_cookie(
        &app,
        reqwest::Method::POST,
        "/auth/logout",
        &current,
        Some(APP),
    )
    .await;
    assert_eq!(res.status, 204, "{}", res.text);
    get_cookie(&app, "/auth/refreshtoken/validate", &current)
        .await
        .assert_error(401, "INVALID_TOKEN");

    // A bearer token can move into the cookie with cookie=true.
    let bearer = app.login_ok(ANN, PASSWORD).await;
    let res = app
        .get_with("/auth/refreshtoken?cookie=true", &bearer)
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    let moved = set_cookie(&res).value;
    assert_eq!(
        get_cookie(&app, "/auth/accesstoken", &moved).await.status,
        200
    );
    // Without a cookie or a header: as before.
    app.get("/auth/accesstoken")
        .await
        .assert_error(401, "NO_TOKEN_PROVIDED");
    get_cookie(&app, "/auth/accesstoken", "not-a-token")
        .await
        .assert_error(401, "INVALID_TOKEN");
}

async fn a_bearer_token_wins_over_the_cookie(db: Db) {
    let (app, ann) = app_with_user(db, &[]).await;
    let bob = app.create_user("bob@example.org", PASSWORD).await;
    let ann_bearer = app.login_ok(ANN, PASSWORD).await;
    let res = app
        .send(
            app.client
                .post(app.url("/auth/login?cookie=true"))
                .json(&json!({"username": "bob@example.org", "password": PASSWORD})),
        )
        .await;
    let bob_cookie = set_cookie(&res).value;
    let both = |path: &str, bearer: &str| {
        app.client
            .get(app.url(path))
            .bearer_auth(bearer)
            .header("cookie", format!("authd_refresh={bob_cookie}"))
    };
    // The header is used, whatever the origin (it is not a cookie call).
    let res = app
        .send(both("/auth/refreshtoken/validate", &ann_bearer).header("origin", APP))
        .await;
    assert_eq!(res.json(), json!({ "userId": ann }));
    let res = app
        .send(
            both("/auth/refreshtoken/validate", &ann_bearer)
                .header("origin", "https://evil.example.net"),
        )
        .await;
    assert_eq!(res.json(), json!({ "userId": ann }));
    // A refresh by the header answers in the body and leaves the cookie alone.
    let res = app.send(both("/auth/refreshtoken", &ann_bearer)).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text.len(), 43);
    assert_no_set_cookie(&res);
    // A bad header is not rescued by a good cookie.
    app.send(both("/auth/accesstoken", "not-a-token").header("origin", APP))
        .await
        .assert_error(401, "INVALID_TOKEN");
    let res = app
        .send(
            app.client
                .get(app.url("/auth/accesstoken"))
                .header("authorization", "Basic abc")
                .header("cookie", format!("authd_refresh={bob_cookie}"))
                .header("origin", APP),
        )
        .await;
    res.assert_error(401, "NO_TOKEN_PROVIDED");
    // Bob's login was not touched by any of it.
    let res = get_cookie(&app, "/auth/refreshtoken/validate", &bob_cookie).await;
    assert_eq!(res.json(), json!({ "userId": bob }));
}

async fn logout_by_cookie_revokes_the_token_and_clears_the_cookie(db: Db) {
    let (app, _) = app_with_user(db, &[]).await;
    let token = cookie_login(&app).await;
    let res = with_cookie(
        &app,
        reqwest::Method::POST,
        "/auth/logout",
        &token,
        Some(APP),
    )
    .await;
    assert_eq!(res.status, 204, "{}", res.text);
    assert!(res.text.is_empty());
    let cleared = set_cookie(&res);
    assert_eq!(cleared.value, "");
    assert_attributes(&cleared, 0, false);
    get_cookie(&app, "/auth/accesstoken", &token)
        .await
        .assert_error(401, "INVALID_TOKEN");
    // On a public host the clearing cookie carries Secure, as the cookie did.
    let token = cookie_login(&app).await;
    let res = app
        .send(
            app.client
                .post(app.url("/auth/logout"))
                .header("host", "authd.example.org")
                .header("origin", APP)
                .header("cookie", format!("authd_refresh={token}")),
        )
        .await;
    assert_eq!(res.status, 204);
    assert_attributes(&set_cookie(&res), 0, true);
    // A logout by bearer token does not touch the cookie.
    let bearer = app.login_ok(ANN, PASSWORD).await;
    let res = app
        .send(
            app.client
                .post(app.url("/auth/logout"))
                .bearer_auth(&bearer),
        )
        .await;
    assert_eq!(res.status, 204);
    assert_no_set_cookie(&res);
}

async fn presenting_a_rotated_cookie_token_revokes_the_whole_login(db: Db) {
    let (app, _) = app_with_user(db, &[]).await;
    let first = cookie_login(&app).await;
    let other_login = cookie_login(&app).await;
    let res = get_cookie(&app, "/auth/refreshtoken", &first).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let second = set_cookie(&res).value;
    // A thief replays the old cookie: the login it belongs to ends, the thief gets nothing.
    let res = get_cookie(&app, "/auth/refreshtoken", &first).await;
    res.assert_error(401, "INVALID_TOKEN");
    assert_no_set_cookie(&res);
    get_cookie(&app, "/auth/accesstoken", &second)
        .await
        .assert_error(401, "INVALID_TOKEN");
    get_cookie(&app, "/auth/refreshtoken", &second)
        .await
        .assert_error(401, "INVALID_TOKEN");
    // Another login of the same user is not touched.
    assert_eq!(
        get_cookie(&app, "/auth/accesstoken", &other_login)
            .await
            .status,
        200
    );
    // The same family holds across the two ways of presenting: rotated by cookie, replayed
    // as a bearer token.
    let third = cookie_login(&app).await;
    let res = get_cookie(&app, "/auth/refreshtoken", &third).await;
    let fourth = set_cookie(&res).value;
    app.get_with("/auth/refreshtoken", &third)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.get_with("/auth/accesstoken", &fourth)
        .await
        .assert_error(401, "INVALID_TOKEN");
}

async fn a_cookie_call_from_a_foreign_or_missing_origin_is_refused_with_403(db: Db) {
    let (app, id) = app_with_user(db, &[]).await;
    let token = cookie_login(&app).await;
    for origin in [
        None,
        Some("https://evil.example.net"),
        Some("http://app.example.com"),
        Some("https://app.example.com/"),
        Some("null"),
    ] {
        for (method, path) in [
            (reqwest::Method::GET, "/auth/accesstoken"),
            (reqwest::Method::GET, "/auth/refreshtoken"),
            (reqwest::Method::GET, "/auth/refreshtoken?cookie=true"),
            (reqwest::Method::GET, "/auth/refreshtoken/validate"),
            (reqwest::Method::POST, "/auth/logout"),
        ] {
            let res = with_cookie(&app, method.clone(), path, &token, origin).await;
            res.assert_error(403, "ORIGIN_NOT_ALLOWED");
            assert_no_set_cookie(&res);
        }
    }
    // Nothing was rotated, revoked or used: the token still works from the app.
    let res = get_cookie(&app, "/auth/refreshtoken/validate", &token).await;
    assert_eq!(res.json(), json!({ "userId": id }));
    assert_eq!(
        get_cookie(&app, "/auth/refreshtoken", &token).await.status,
        200
    );
    // Without configured origins no cookie call passes.
    let app = TestApp::spawn_with(db, &[]).await;
    app.create_user(ANN, PASSWORD).await;
    let token = cookie_login(&app).await;
    get_cookie(&app, "/auth/accesstoken", &token)
        .await
        .assert_error(403, "ORIGIN_NOT_ALLOWED");
}

async fn the_cookie_parameter_must_be_true_or_false(db: Db) {
    let (app, id) = app_with_user(db, &[]).await;
    let partial = app.mint(TokenKind::Partial, id);
    for value in ["maybe", "1", "TRUE", "", "true&cookie=false"] {
        let q = format!("?cookie={value}");
        login_with(&app, &q, None)
            .await
            .assert_error(400, "cookie must be true or false");
        let bearer = app.login_ok(ANN, PASSWORD).await;
        app.get_with(&format!("/auth/refreshtoken{q}"), &bearer)
            .await
            .assert_error(400, "cookie must be true or false");
        // The token was not rotated by the refused call.
        assert_eq!(app.get_with("/auth/accesstoken", &bearer).await.status, 200);
        for (path, body) in [
            ("/user/2fa/email-otp/authenticate", json!({"otp": "123456"})),
            ("/user/2fa/totp/authenticate", json!({"totp": "123456"})),
            (
                "/user/2fa/recovery-code/authenticate",
                json!({"recoveryCode": "ABCD-EFGH-JKMN-PQRS"}),
            ),
        ] {
            app.post_with(&format!("{path}{q}"), &partial, &body)
                .await
                .assert_error(400, "cookie must be true or false");
        }
    }
}

async fn each_authenticate_call_puts_the_refresh_token_in_the_cookie_with_cookie_true(db: Db) {
    let (app, id) = app_with_user(db, &[("AUTHD__LIMITS__OTP_MAIL__MAX", "100")]).await;
    // Email OTP on (with recovery codes), then TOTP too, for one account.
    const OTP_TO: &str = "ann.otp@example.org";
    let access = app.login_access(ANN, PASSWORD).await;
    let codes = assert_ten_recovery_codes(&app.turn_on_email_otp(&access, OTP_TO, 1).await);
    assert_eq!(app.email_otp_challenge(&access, "").await.status, 200);
    let code = app.wait_for_mail_to(OTP_TO, 2).await.code();
    let sudo = assert_sudo_only(&app.email_otp_authenticate(&access, &code).await);
    let (url, res) = app.turn_on_totp(&sudo, &access).await;
    assert_eq!(res.status, 200, "{}", res.text);

    let check = |res: &Reply| {
        assert_eq!(res.status, 200, "{}", res.text);
        let body = res.json();
        assert_eq!(body["refreshToken"], serde_json::Value::Null, "{body}");
        assert!(body["accessToken"].is_string() && body["sudoToken"].is_string());
        let cookie = set_cookie(res);
        assert_attributes(&cookie, 3600, false);
        cookie.value
    };
    let mut tokens = Vec::new();
    let partial = assert_two_factor_required(&app.login(ANN, PASSWORD).await).partial;

    // TOTP: the current step is still free (turn_on_totp used the previous one).
    let res = app
        .post_with(
            "/user/2fa/totp/authenticate?cookie=true",
            &partial,
            &json!({ "totp": totp_at(&url, app.now_secs()) }),
        )
        .await;
    tokens.push(check(&res));

    // Email OTP.
    assert_eq!(app.email_otp_challenge(&partial, "").await.status, 200);
    let code = app.wait_for_mail_to(OTP_TO, 3).await.code();
    let res = app
        .post_with(
            "/user/2fa/email-otp/authenticate?cookie=true",
            &partial,
            &json!({ "otp": code }),
        )
        .await;
    tokens.push(check(&res));

    // A recovery code.
    let res = app
        .post_with(
            "/user/2fa/recovery-code/authenticate?cookie=true",
            &partial,
            &json!({ "recoveryCode": codes[0] }),
        )
        .await;
    tokens.push(check(&res));

    for token in &tokens {
        let res = get_cookie(&app, "/auth/refreshtoken/validate", token).await;
        assert_eq!(res.json(), json!({ "userId": id }));
    }
    // With an access token there is no new login: no refresh token, no cookie.
    let res = app
        .post_with(
            "/user/2fa/recovery-code/authenticate?cookie=true",
            &access,
            &json!({ "recoveryCode": codes[1] }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["refreshToken"], serde_json::Value::Null);
    assert_no_set_cookie(&res);
    // cookie=false answers as before.
    let res = app
        .post_with(
            "/user/2fa/recovery-code/authenticate?cookie=false",
            &partial,
            &json!({ "recoveryCode": codes[2] }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(res.json()["refreshToken"].is_string());
    assert_no_set_cookie(&res);
}
