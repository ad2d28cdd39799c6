use authd_tests::{metric_value, Db, TestApp};

#[actix_web::test]
async fn metrics_count_requests_by_route_template_on_their_own_listener() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let before = app.metrics().await;
    let series = r#"http_requests_total{method="GET",route="/healthz",status="200"}"#;
    let start = metric_value(&before, series).unwrap_or(0.0);
    for _ in 0..3 {
        app.healthz().await;
    }
    app.get("/users/secret-looking-path").await;
    let after = app.metrics().await;
    assert_eq!(metric_value(&after, series), Some(start + 3.0), "{after}");
    assert!(
        after.contains("# TYPE http_request_duration_seconds histogram"),
        "{after}"
    );
    assert!(after.contains(r#"route="unmatched""#), "{after}");
    assert!(
        !after.contains("secret-looking-path"),
        "raw paths must not become labels"
    );
    assert!(
        metric_value(&after, "http_panics_total").is_some(),
        "http_panics_total exists from start"
    );
    assert!(
        after.contains(r#"db_pool_connections{state="idle"}"#),
        "{after}"
    );
    for method in ["email_otp", "totp", "recovery_code"] {
        let series =
            format!(r#"auth_two_factor_checks_total{{method="{method}",outcome="failure"}}"#);
        assert!(
            metric_value(&after, &series).is_some(),
            "{series} exists from start"
        );
    }
    // The public listener does not serve metrics.
    app.get("/metrics").await.assert_error(404, "NOT_FOUND");
}
