//! Per-client-IP budgets on the unauthenticated routes, and who may say what the client IP is.

use authd_tests::{Db, TestApp};

async fn login_from(app: &TestApp, forwarded_for: Option<&str>) -> authd_tests::Reply {
    let mut req = app.client.post(app.url("/auth/login")).json(
        &serde_json::json!({ "username": "nobody@example.org", "password": "Wrong1password" }),
    );
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    app.send(req).await
}

const BUDGET: &[(&str, &str)] = &[
    ("AUTHD__LIMITS__IP_LOGIN__CAPACITY", "3"),
    ("AUTHD__LIMITS__IP_LOGIN__REFILL_PER_MINUTE", "1"),
    // Keep the per-account backoff out of the way.
    ("AUTHD__LIMITS__PASSWORD_BACKOFF__FREE_FAILURES", "1000"),
];

#[actix_web::test]
async fn a_client_ip_that_spends_its_budget_gets_429_and_a_spoofed_forwarded_for_does_not_help() {
    let app = TestApp::spawn_with(Db::Sqlite, BUDGET).await;
    for i in 0..3 {
        // Without a trusted proxy, X-Forwarded-For is ignored: all three come from 127.0.0.1.
        let res = login_from(&app, Some(&format!("198.51.100.{i}"))).await;
        res.assert_error(401, "PASSWORD_INCORRECT");
    }
    let res = login_from(&app, Some("198.51.100.99")).await;
    res.assert_error(429, "TOO_MANY_REQUESTS");
    let wait = res.json()["retryAfter"].as_u64().unwrap();
    assert!((55..=60).contains(&wait), "one token per minute: {wait}");
    // The reset routes have their own budget.
    assert_eq!(app.reset_send("x@example.org", "").await.status, 200);
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let mut settings = BUDGET.to_vec();
    settings.push(("AUTHD__HTTP__TRUSTED_PROXIES", "127.0.0.0/8,10.0.0.1"));
    let app = TestApp::spawn_with(Db::Sqlite, &settings).await;
    for _ in 0..3 {
        login_from(&app, Some("203.0.113.5"))
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    login_from(&app, Some("203.0.113.5"))
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
    // Another client behind the same proxy, and one behind a chain of trusted proxies.
    login_from(&app, Some("203.0.113.6"))
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    login_from(&app, Some("203.0.113.5, 10.0.0.1"))
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
    // A client cannot escape by prepending addresses: the right-most untrusted one counts.
    login_from(&app, Some("1.1.1.1, 203.0.113.5"))
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
}

/// One subscriber usually holds a whole IPv6 /64: rotating addresses inside it must not buy
/// fresh budgets (issue 10, finding 7).
#[actix_web::test]
async fn ipv6_clients_of_one_slash_64_share_a_budget() {
    let mut settings = BUDGET.to_vec();
    settings.push(("AUTHD__HTTP__TRUSTED_PROXIES", "127.0.0.1"));
    let app = TestApp::spawn_with(Db::Sqlite, &settings).await;
    for ip in ["2001:db8:7:8::1", "2001:db8:7:8::2", "2001:db8:7:8:abcd::3"] {
        login_from(&app, Some(ip))
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    login_from(&app, Some("2001:db8:7:8:ffff:ffff:ffff:ffff"))
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
    // The next /64 is another client.
    login_from(&app, Some("2001:db8:7:9::1"))
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
}

async fn login_with(app: &TestApp, header: &str, value: &str) -> authd_tests::Reply {
    let req = app
        .client
        .post(app.url("/auth/login"))
        .header(header, value)
        .json(
            &serde_json::json!({ "username": "nobody@example.org", "password": "Wrong1password" }),
        );
    app.send(req).await
}

/// `http.client_ip_header = "forwarded"`: the RFC 7239 header is read, and neither a
/// client-sent X-Forwarded-For nor elements prepended to Forwarded move the client.
#[actix_web::test]
async fn with_client_ip_header_forwarded_only_the_rfc_7239_header_is_believed() {
    let mut settings = BUDGET.to_vec();
    settings.push(("AUTHD__HTTP__TRUSTED_PROXIES", "127.0.0.1"));
    settings.push(("AUTHD__HTTP__CLIENT_IP_HEADER", "forwarded"));
    let app = TestApp::spawn_with(Db::Sqlite, &settings).await;
    for _ in 0..3 {
        login_with(&app, "forwarded", "for=203.0.113.5;proto=https")
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    login_with(&app, "forwarded", "for=203.0.113.5")
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
    // Prepending hops does not help: the right-most untrusted one counts.
    login_with(&app, "forwarded", "for=1.1.1.1, for=203.0.113.5")
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
    // Another client, in IPv6 notation with a port.
    login_with(&app, "forwarded", r#"for="[2001:db8::5]:4711""#)
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    // X-Forwarded-For is not read: four requests claiming four addresses all count against
    // the proxy's own address.
    for i in 0..3 {
        login_with(&app, "x-forwarded-for", &format!("198.51.100.{i}"))
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    login_with(&app, "x-forwarded-for", "198.51.100.9")
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
}

/// With the default `x-forwarded-for`, a client-sent `Forwarded` header is ignored.
#[actix_web::test]
async fn with_client_ip_header_x_forwarded_for_a_forwarded_header_is_ignored() {
    let mut settings = BUDGET.to_vec();
    settings.push(("AUTHD__HTTP__TRUSTED_PROXIES", "127.0.0.1"));
    let app = TestApp::spawn_with(Db::Sqlite, &settings).await;
    for i in 0..3 {
        login_with(&app, "forwarded", &format!("for=198.51.100.{i}"))
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    login_with(&app, "forwarded", "for=198.51.100.9")
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
    login_with(&app, "x-forwarded-for", "203.0.113.8")
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
}
