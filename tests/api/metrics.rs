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

#[actix_web::test]
async fn metrics_carry_the_build_the_pool_size_and_the_process() {
    let app = TestApp::spawn_with(Db::Sqlite, &[("AUTHD__DATABASE__POOL_MAX_SIZE", "7")]).await;
    let text = app.metrics().await;
    // The workspace shares one version, so the test crate's is the server's.
    let build = format!(
        r#"authd_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric_value(&text, &build), Some(1.0), "{text}");
    assert_eq!(
        metric_value(&text, "db_pool_max_connections"),
        Some(7.0),
        "{text}"
    );
    let rss = metric_value(&text, "process_resident_memory_bytes").expect("resident memory");
    assert!(
        rss > 1_000_000.0,
        "a live process holds more than 1 MB: {rss}"
    );
    let fds = metric_value(&text, "process_open_fds").expect("open fds");
    let max_fds = metric_value(&text, "process_max_fds").expect("max fds");
    assert!(fds >= 3.0 && fds < max_fds, "{fds} of {max_fds}");
    // A counter of whole seconds (the metrics crate's counters are integers): 0 this early.
    assert!(metric_value(&text, "process_cpu_seconds_total").is_some_and(|s| s >= 0.0));
    assert!(metric_value(&text, "process_threads").is_some_and(|t| t >= 1.0));
    let started = metric_value(&text, "process_start_time_seconds").expect("start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    assert!(
        started <= now && now - started < 3600.0,
        "the test process started within the hour: {started} vs {now}"
    );
    for outcome in ["success", "failure", "two_factor_required"] {
        let series = format!(r#"auth_logins_total{{outcome="{outcome}"}}"#);
        assert!(
            metric_value(&text, &series).is_some(),
            "{series} exists from start"
        );
    }
}

/// `password.hashing_concurrency` sizes the semaphore in front of argon2; the size in effect is
/// exported, and 0 (the default) means one per core the process sees.
#[actix_web::test]
async fn hashing_concurrency_sets_how_many_hashes_run_at_once() {
    let app =
        TestApp::spawn_with(Db::Sqlite, &[("AUTHD__PASSWORD__HASHING_CONCURRENCY", "3")]).await;
    let text = app.metrics().await;
    assert_eq!(
        metric_value(&text, "password_hashing_concurrency"),
        Some(3.0),
        "{text}"
    );
}

#[actix_web::test]
async fn hashing_concurrency_zero_means_one_per_core() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let text = app.metrics().await;
    assert_eq!(
        metric_value(&text, "password_hashing_concurrency"),
        Some(cores as f64),
        "{text}"
    );
}
