#![doc = include_str!("../README.md")]

use std::sync::OnceLock;

use authd_settings::{LogFormat, LogSettings};
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Metric names. Dashboards and alerts depend on them: rename only with a changelog entry.
pub mod names {
    pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
    pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
    pub const HTTP_PANICS_TOTAL: &str = "http_panics_total";
    pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
    pub const DB_POOL_MAX_CONNECTIONS: &str = "db_pool_max_connections";
    pub const BUILD_INFO: &str = "authd_build_info";
    pub const PASSWORD_HASHING_CONCURRENCY: &str = "password_hashing_concurrency";
    pub const THROTTLE_HITS_TOTAL: &str = "auth_throttle_hits_total";
    pub const MAIL_TEMPLATE_FAILURES_TOTAL: &str = "auth_mail_template_failures_total";
    pub const MAIL_TEMPLATE_RELOADS_TOTAL: &str = "auth_mail_template_reloads_total";
    pub const MAIL_SENT_TOTAL: &str = "auth_mail_sent_total";
    pub const MAIL_FAILURES_TOTAL: &str = "auth_mail_failures_total";
    pub const MAIL_BACKEND_FAILURES_TOTAL: &str = "auth_mail_backend_failures_total";
    pub const MAIL_OUTBOX_PENDING: &str = "auth_mail_outbox_pending";
    pub const MAIL_OUTBOX_DEAD: &str = "auth_mail_outbox_dead";
    pub const MAIL_DELIVERY_SECONDS: &str = "auth_mail_delivery_seconds";
    pub const OTP_ISSUED_TOTAL: &str = "auth_otp_issued_total";
    pub const OTP_CHECKS_TOTAL: &str = "auth_otp_checks_total";
    pub const LOGINS_TOTAL: &str = "auth_logins_total";
    pub const TWO_FACTOR_CHECKS_TOTAL: &str = "auth_two_factor_checks_total";
}

/// Buckets for request latency: fine below 100 ms where the API should live, coarse above
/// where argon2-bound calls land.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets for the time from queueing a mail to its delivery: seconds when all is well,
/// minutes to hours while retries back off.
const DELIVERY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
];

fn describe() {
    use names::*;
    metrics::describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by method, route template and status."
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route template."
    );
    metrics::describe_counter!(HTTP_PANICS_TOTAL, "Handler panics turned into 500 answers.");
    metrics::describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections, by state (idle, in_use)."
    );
    metrics::describe_gauge!(
        DB_POOL_MAX_CONNECTIONS,
        "The most connections the database pool opens (database.pool_max_size)."
    );
    metrics::describe_gauge!(
        PASSWORD_HASHING_CONCURRENCY,
        "Password hashes computed at once at most (password.hashing_concurrency, or the cores seen)."
    );
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which authd build this replica runs."
    );
    metrics::describe_counter!(
        MAIL_BACKEND_FAILURES_TOTAL,
        "Failed mail sends, by origin and reason (auth, connect, timeout, deferred, rejected, local)."
    );
    metrics::describe_counter!(
        LOGINS_TOTAL,
        "Logins, by outcome (success, failure, two_factor_required)."
    );
    metrics::describe_counter!(
        MAIL_TEMPLATE_RELOADS_TOTAL,
        "Mail template reloads in development (dev.reload_templates) that were taken into use."
    );
    metrics::describe_counter!(
        TWO_FACTOR_CHECKS_TOTAL,
        "Second-factor checks, by method (email_otp, totp, recovery_code) and outcome (success, failure)."
    );
}

/// Installs the process-wide Prometheus recorder once and returns its handle. Later calls
/// (tests start many servers in one process) get the same handle.
pub fn prometheus() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(names::HTTP_REQUEST_DURATION_SECONDS.into()),
                    LATENCY_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                .set_buckets_for_metric(
                    Matcher::Full(names::MAIL_DELIVERY_SECONDS.into()),
                    DELIVERY_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            describe();
            // Counters appear in the exposition only once touched; touch the ones alerts
            // are written against so they read 0 rather than "absent".
            metrics::counter!(names::HTTP_PANICS_TOTAL).absolute(0);
            metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            for outcome in ["success", "failure", "two_factor_required"] {
                metrics::counter!(names::LOGINS_TOTAL, "outcome" => outcome).absolute(0);
            }
            process_collector().describe();
            for method in ["email_otp", "totp", "recovery_code"] {
                for outcome in ["success", "failure"] {
                    metrics::counter!(names::TWO_FACTOR_CHECKS_TOTAL, "method" => method, "outcome" => outcome)
                        .absolute(0);
                }
            }
            Ok(handle)
        })
        .clone()
}

/// The process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
/// `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, `process_threads`, …)
/// in the names Prometheus' own clients use.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Reads the process metrics now; call it right before rendering a scrape.
pub fn collect_process_metrics() {
    process_collector().collect();
}

/// Sets up the global tracing subscriber: `RUST_LOG` wins over `log.level`. A second call is a
/// no-op, so tests may call it freely.
pub fn init_tracing(settings: &LogSettings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
