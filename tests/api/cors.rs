//! CORS for browser apps, over real HTTP: preflights (OPTIONS with `Origin` and
//! `Access-Control-Request-*`) and cross-origin calls, answered as a browser needs them, and
//! refused in the contract's error shape. Also the tests of the `http.cors.*` keys.

use authd_tests::{both_dbs, Db, Reply, TestApp};
use serde_json::json;

const APP: &str = "https://app.example.com";
const LOCAL_APP: &str = "http://localhost:5173";
const ORIGINS: (&str, &str) = (
    "AUTHD__HTTP__CORS__ALLOWED_ORIGINS",
    "https://app.example.com,http://localhost:5173",
);

both_dbs!(
    a_preflight_from_an_allowed_origin_allows_the_methods_and_headers_the_api_uses,
    a_refused_preflight_answers_in_the_contract_shape,
    an_allowed_origin_can_read_answers_errors_and_their_headers,
    a_call_from_another_origin_is_served_without_cors_headers,
    cors_is_off_by_default,
    http_cors_allowed_origins_lists_each_origin_that_may_call,
    http_cors_max_age_secs_is_the_preflight_max_age,
);

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str, headers: &str) -> Reply {
    let mut req = app
        .client
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if !headers.is_empty() {
        req = req.header("access-control-request-headers", headers);
    }
    app.send(req).await
}

fn header_list(reply: &Reply, name: &str) -> Vec<String> {
    reply
        .header(name)
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

fn assert_no_cors_headers(reply: &Reply) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
    ] {
        assert!(
            reply.header(name).is_none(),
            "{name} must not be sent: {:?}",
            reply.headers
        );
    }
}

async fn a_preflight_from_an_allowed_origin_allows_the_methods_and_headers_the_api_uses(db: Db) {
    let app = TestApp::spawn_with(db, &[ORIGINS]).await;
    for (path, method, headers) in [
        ("/auth/login", "POST", "content-type"),
        ("/auth/accesstoken", "GET", "authorization"),
        ("/user/password/otp", "PUT", "content-type,x-request-id"),
        ("/user/2fa/totp", "DELETE", "Authorization, X-Request-Id"),
    ] {
        let res = preflight(&app, path, APP, method, headers).await;
        assert_eq!(res.status, 200, "{path}: {}", res.text);
        assert_eq!(res.header("access-control-allow-origin"), Some(APP));
        assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
        let methods = header_list(&res, "access-control-allow-methods");
        for m in ["get", "post", "put", "delete"] {
            assert!(methods.contains(&m.to_owned()), "{m} in {methods:?}");
        }
        let allowed = header_list(&res, "access-control-allow-headers");
        for h in ["authorization", "content-type", "x-request-id"] {
            assert!(allowed.contains(&h.to_owned()), "{h} in {allowed:?}");
        }
        assert_eq!(res.header("access-control-max-age"), Some("600"));
        assert!(
            header_list(&res, "vary").contains(&"origin".to_owned()),
            "caches must key the answer on Origin: {:?}",
            res.header("vary")
        );
    }
    // The second origin of the list too.
    let res = preflight(&app, "/auth/login", LOCAL_APP, "POST", "content-type").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), Some(LOCAL_APP));
}

async fn a_refused_preflight_answers_in_the_contract_shape(db: Db) {
    let app = TestApp::spawn_with(db, &[ORIGINS]).await;
    for origin in [
        "https://evil.example.net",
        "https://app.example.com.evil.example.net",
        "http://app.example.com",
        "https://APP.example.com",
        "null",
    ] {
        let res = preflight(&app, "/auth/login", origin, "POST", "content-type").await;
        res.assert_error(403, "ORIGIN_NOT_ALLOWED");
        assert_no_cors_headers(&res);
    }
    let res = preflight(&app, "/auth/login", APP, "PATCH", "content-type").await;
    res.assert_error(403, "CORS_METHOD_NOT_ALLOWED");
    assert_no_cors_headers(&res);
    let res = preflight(&app, "/auth/login", APP, "POST", "content-type,x-api-key").await;
    res.assert_error(403, "CORS_HEADERS_NOT_ALLOWED");
    assert_no_cors_headers(&res);
    let res = preflight(&app, "/auth/login", APP, "POST", "content type").await;
    res.assert_error(
        400,
        "Access-Control-Request-Headers must be a comma-separated list of header names",
    );
    assert_no_cors_headers(&res);
    // A refused preflight is counted like any other answer.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"method="OPTIONS",route="/auth/login",status="403""#),
        "{metrics}"
    );
}

async fn an_allowed_origin_can_read_answers_errors_and_their_headers(db: Db) {
    let app = TestApp::spawn_with(db, &[ORIGINS]).await;
    let post = |path: &str, body: serde_json::Value| {
        app.client
            .post(app.url(path))
            .header("origin", APP)
            .json(&body)
    };
    let exposed = |res: &Reply| {
        let list = header_list(res, "access-control-expose-headers");
        assert!(
            list.contains(&"retry-after".to_owned()) && list.contains(&"x-request-id".to_owned()),
            "scripts may read Retry-After and X-Request-Id: {list:?}"
        );
        assert_eq!(res.header("access-control-allow-origin"), Some(APP));
        assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    };
    let ok = app
        .send(post(
            "/user/password/reset/send",
            json!({"email": "x@example.org"}),
        ))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    exposed(&ok);
    let throttled = app
        .send(post(
            "/user/password/reset/send",
            json!({"email": "x@example.org"}),
        ))
        .await;
    throttled.assert_error(429, "TOO_MANY_RESET_MAIL_ATTEMPTS");
    assert!(throttled.header("retry-after").is_some());
    exposed(&throttled);
    let wrong = app
        .send(post(
            "/auth/login",
            json!({"username": "x@example.org", "password": "Wrong1password"}),
        ))
        .await;
    wrong.assert_error(401, "PASSWORD_INCORRECT");
    exposed(&wrong);
    let unknown = app
        .send(app.client.get(app.url("/nope")).header("origin", APP))
        .await;
    unknown.assert_error(404, "NOT_FOUND");
    exposed(&unknown);
}

async fn a_call_from_another_origin_is_served_without_cors_headers(db: Db) {
    let app = TestApp::spawn_with(db, &[ORIGINS]).await;
    // The server answers as before (a browser keeps the answer from the foreign script);
    // what needs a credential is refused by the credential checks, not by CORS.
    let res = app
        .send(
            app.client
                .post(app.url("/user/password/reset/send"))
                .header("origin", "https://evil.example.net")
                .json(&json!({"email": "x@example.org"})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_no_cors_headers(&res);
    assert!(res.header("access-control-expose-headers").is_none());
    let res = app.healthz().await;
    assert_eq!(res.status, 200);
    assert_no_cors_headers(&res);
}

async fn cors_is_off_by_default(db: Db) {
    let app = TestApp::spawn(db).await;
    let res = preflight(&app, "/auth/login", APP, "POST", "content-type").await;
    res.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_no_cors_headers(&res);
    let res = app
        .send(
            app.client
                .post(app.url("/user/password/reset/send"))
                .header("origin", APP)
                .json(&json!({"email": "x@example.org"})),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_no_cors_headers(&res);
}

async fn http_cors_allowed_origins_lists_each_origin_that_may_call(db: Db) {
    let only_local = (
        "AUTHD__HTTP__CORS__ALLOWED_ORIGINS",
        "http://localhost:5173",
    );
    let app = TestApp::spawn_with(db, &[only_local]).await;
    let res = preflight(&app, "/auth/login", LOCAL_APP, "POST", "content-type").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.header("access-control-allow-origin"), Some(LOCAL_APP));
    preflight(&app, "/auth/login", APP, "POST", "content-type")
        .await
        .assert_error(403, "ORIGIN_NOT_ALLOWED");
}

async fn http_cors_max_age_secs_is_the_preflight_max_age(db: Db) {
    let app =
        TestApp::spawn_with(db, &[ORIGINS, ("AUTHD__HTTP__CORS__MAX_AGE_SECS", "1234")]).await;
    let res = preflight(&app, "/auth/login", APP, "POST", "content-type").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.header("access-control-max-age"), Some("1234"));
}

/// The binary refuses to start on a wildcard or anything but a bare origin, naming the key.
#[test]
fn http_cors_allowed_origins_with_a_wildcard_or_a_path_stops_the_start() {
    for bad in ["*", "https://app.example.com/", "app.example.com"] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_authd-under-test"))
            .current_dir(dir.path())
            .env("AUTHD_ENV", "development")
            .env("AUTHD__LOG__LEVEL", "warn")
            .env("AUTHD__HTTP__CORS__ALLOWED_ORIGINS", bad)
            .arg("serve")
            .output()
            .expect("authd runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(
            err.starts_with("error: configuration") && err.contains("http.cors.allowed_origins"),
            "{bad}: {err}"
        );
    }
}
