//! Every setting of `config/default.toml` takes effect through the real part it configures.
//! Each test names its key; each would fail if the key were parsed but ignored (the default
//! value would give a different answer).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authd_domain::tokens::{TokenKind, TokenSigner};
use authd_tests::two_factor::{
    assert_full_tokens, assert_two_factor_required, claims_of, now_secs, totp_at,
};
use authd_tests::{both_dbs, metric_value, templates_dir, Db, TestApp, TestDb};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "Correct1horse";
const SEND: &str = "/user/password/reset/send";

both_dbs!(
    database_url_file_serves_from_the_url_in_the_file,
    database_pool_max_size_caps_the_connections_of_a_server,
    database_connect_timeout_secs_is_how_long_a_request_waits_for_a_connection,
    http_readiness_timeout_ms_is_how_long_readyz_waits_for_the_database,
    database_keep_sent_mail_days_and_housekeeping_interval_secs_remove_old_delivered_mails,
    secrets_otp_key_file_keys_the_codes,
    secrets_totp_key_file_encrypts_the_totp_secrets,
    secrets_signing_key_file_signs_the_tokens,
    tokens_retired_signing_key_files_keep_old_tokens_verifying_and_in_the_jwks,
    tokens_access_sudo_and_partial_lifetime_secs_are_exp_minus_iat,
    tokens_issuer_is_the_iss_claim,
    limits_denied_cache_size_bounds_the_refusals_answered_from_memory,
    limits_replica_heartbeat_secs_is_the_heartbeat_interval,
    limits_transfer_mail_window_secs_is_the_transfer_mail_window,
    limits_ip_reset_refill_per_minute_refills_the_reset_budget,
    password_argon2_memory_kib_iterations_and_parallelism_shape_new_hashes,
    mail_default_origin_is_the_origin_of_requests_that_name_none,
    mail_default_language_ends_the_language_fallback_chain,
    mail_forbidden_domains_are_refused_with_their_subdomains,
    mail_allowed_domains_override_the_disposable_list,
    origins_enabled_false_makes_the_origin_unknown,
    origins_from_is_the_from_header,
    origins_default_language_is_the_language_of_requests_that_name_none,
    origins_reset_url_is_the_link_in_the_reset_mail,
);

// ---------------------------------------------------------------------------------------
// Helpers

fn set(env: &mut HashMap<String, String>, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
}

/// A second server on the database of `first`, with `overrides`.
async fn second_server(db: Db, first: &TestApp, overrides: &[(&str, &str)]) -> TestApp {
    let url = first.db.url.clone();
    // The same clock: a TOTP step the first server accepted is the same step here.
    TestApp::spawn_with_clock(db, first.clock.clone(), |_, env| {
        env.insert("AUTHD__DATABASE__URL".into(), url);
        set(env, overrides);
    })
    .await
}

/// Another process holding the write lock of the database (SQLite: the one writer lock;
/// PostgreSQL: the throttle table), so that the server's next throttle write waits.
enum WriteLock {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl WriteLock {
    fn take(db: &TestDb) -> Self {
        match db.url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut c = SqliteConnection::establish(path).expect("sqlite opens");
                c.batch_execute("PRAGMA busy_timeout = 10000; BEGIN EXCLUSIVE")
                    .expect("the write lock");
                Self::Sqlite(c)
            }
            None => {
                let mut c = PgConnection::establish(&db.url).expect("postgres connects");
                c.batch_execute("BEGIN; LOCK TABLE rate_limits IN ACCESS EXCLUSIVE MODE")
                    .expect("the table lock");
                Self::Postgres(c)
            }
        }
    }

    /// PostgreSQL: the users table, so that a send's user lookup (a read, after its throttle
    /// write went through) waits holding a pooled connection. SQLite readers never wait in
    /// WAL mode: there it is the write lock, so that the send waits in the writer, which
    /// holds no pooled connection.
    fn take_reads(db: &TestDb) -> Self {
        if db.url.starts_with("sqlite://") {
            return Self::take(db);
        }
        let mut c = PgConnection::establish(&db.url).expect("postgres connects");
        c.batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            .expect("the table lock");
        Self::Postgres(c)
    }

    /// Connections of other sessions to this PostgreSQL database (the server's).
    fn other_connections(&mut self) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let Self::Postgres(c) = self else {
            panic!("PostgreSQL only")
        };
        let rows: Vec<Count> = diesel::RunQueryDsl::load(
            diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            ),
            c,
        )
        .expect("pg_stat_activity");
        rows[0].n
    }

    fn release(self) {
        match self {
            Self::Sqlite(mut c) => c.batch_execute("COMMIT"),
            Self::Postgres(mut c) => c.batch_execute("COMMIT"),
        }
        .expect("lock released");
    }
}

/// Sends a reset request for a new address in the background; it takes a throttle window
/// and looks the address up, so it waits while a [`WriteLock`] is held (in the writer, or on
/// PostgreSQL's users table holding a pooled connection).
fn send_in_background(app: &TestApp, email: &str) -> actix_rt::task::JoinHandle<u16> {
    let (client, url) = (app.client.clone(), app.url(SEND));
    let body = json!({ "email": email });
    actix_rt::spawn(async move {
        client
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("reaches the server")
            .status()
            .as_u16()
    })
}

/// Waits until at least `n` pooled connections of `app` are in use and stay so (three looks,
/// 100 ms apart, on its metrics): requests waiting on a [`WriteLock`] hold them.
async fn wait_for_connections_in_use(app: &TestApp, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut steady = 0;
    while steady < 3 {
        let in_use = metric_value(
            &app.metrics().await,
            r#"db_pool_connections{state="in_use"}"#,
        )
        .unwrap_or(0.0);
        steady = if in_use >= f64::from(n) {
            steady + 1
        } else {
            0
        };
        assert!(
            Instant::now() < deadline,
            "{n} connections never in use (last: {in_use})"
        );
        sleep_ms(100).await;
    }
}

/// Waits until /readyz answers 200, failing after `limit`.
async fn ready_within(app: &TestApp, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let status = app.readyz().await.status;
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "still {status} after {limit:?}");
        sleep_ms(50).await;
    }
}

async fn sleep_ms(ms: u64) {
    actix_rt::time::sleep(Duration::from_millis(ms)).await;
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

// ---------------------------------------------------------------------------------------
// [database]

async fn database_url_file_serves_from_the_url_in_the_file(db: Db) {
    let app = TestApp::spawn_adjusted(db, |test_db, env| {
        let file = test_db.dir().join("database-url");
        std::fs::write(&file, format!("{}\n", test_db.url)).expect("url file");
        env.remove("AUTHD__DATABASE__URL");
        env.insert(
            "AUTHD__DATABASE__URL_FILE".into(),
            file.display().to_string(),
        );
    })
    .await;
    // The account is written to the test's database; the server finds it there.
    app.create_user("ann@example.org", PASSWORD).await;
    app.login_ok("ann@example.org", PASSWORD).await;
    assert_eq!(app.readyz().await.status, 200);
}

async fn database_pool_max_size_caps_the_connections_of_a_server(db: Db) {
    // One connection: a read waiting on a lock holds it, and readiness cannot get one.
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__DATABASE__POOL_MAX_SIZE", "1"),
            ("AUTHD__DATABASE__WRITERS", "1"),
            ("AUTHD__DATABASE__SQLITE_BUSY_TIMEOUT_MS", "30000"),
            ("AUTHD__HTTP__READINESS_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    assert_eq!(app.readyz().await.status, 200);
    let lock = WriteLock::take_reads(&app.db);
    let waiting = send_in_background(&app, "ann@example.org");
    match db {
        Db::Postgres => {
            wait_for_connections_in_use(&app, 1).await;
            app.readyz().await.assert_error(503, "DATABASE_UNAVAILABLE");
        }
        // Writes have their own connection: a write waiting for the lock leaves the one
        // pooled connection to readers.
        Db::Sqlite => {
            sleep_ms(300).await;
            assert!(!waiting.is_finished(), "the send waits for the write lock");
            assert_eq!(app.readyz().await.status, 200);
        }
    }
    lock.release();
    assert_eq!(waiting.await.unwrap(), 200);
    // Ready again once the one connection is free (the Mailer may be using it for a moment).
    ready_within(&app, Duration::from_secs(10)).await;

    // Three connections and six requests waiting on a lock.
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__DATABASE__POOL_MAX_SIZE", "3"),
            ("AUTHD__DATABASE__WRITERS", "1"),
            ("AUTHD__DATABASE__SQLITE_BUSY_TIMEOUT_MS", "30000"),
            ("AUTHD__HTTP__READINESS_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    assert_eq!(app.readyz().await.status, 200);
    let mut lock = WriteLock::take_reads(&app.db);
    let waiting: Vec<_> = (0..6)
        .map(|i| send_in_background(&app, &format!("u{i}@example.org")))
        .collect();
    match db {
        // Every connection of the pool waits on the lock, and there are no more: the three
        // and the one writer's.
        Db::Postgres => {
            wait_for_connections_in_use(&app, 3).await;
            assert_eq!(lock.other_connections(), 3 + 1);
            app.readyz().await.assert_error(503, "DATABASE_UNAVAILABLE");
        }
        // The writes queue for the one writer; readers have all three connections.
        Db::Sqlite => {
            sleep_ms(300).await;
            assert!(waiting.iter().all(|w| !w.is_finished()));
            assert_eq!(app.readyz().await.status, 200);
        }
    }
    lock.release();
    for w in waiting {
        assert_eq!(w.await.unwrap(), 200);
    }
}

async fn database_connect_timeout_secs_is_how_long_a_request_waits_for_a_connection(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__DATABASE__POOL_MAX_SIZE", "1"),
            ("AUTHD__DATABASE__CONNECT_TIMEOUT_SECS", "1"),
            ("AUTHD__DATABASE__SQLITE_BUSY_TIMEOUT_MS", "30000"),
        ],
    )
    .await;
    let lock = WriteLock::take_reads(&app.db);
    let waiting = send_in_background(&app, "ann@example.org");
    let started = match db {
        Db::Postgres => {
            wait_for_connections_in_use(&app, 1).await;
            let started = Instant::now();
            // Well-formed, so it is looked up in the database.
            app.get_with("/auth/refreshtoken/validate", &"A".repeat(43))
                .await
                .assert_error(503, "SERVICE_UNAVAILABLE");
            started
        }
        // SQLite readers never wait for a lock, and writes do not take their connections:
        // the lookup is answered at once.
        Db::Sqlite => {
            sleep_ms(300).await;
            let started = Instant::now();
            let res = app
                .get_with("/auth/refreshtoken/validate", &"A".repeat(43))
                .await;
            assert_ne!(res.status, 503, "{}", res.text);
            assert!(started.elapsed() < Duration::from_millis(900));
            lock.release();
            assert_eq!(waiting.await.unwrap(), 200);
            return;
        }
    };
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(3500),
        "waited {waited:?} for a connection (the default is 5 s)"
    );
    lock.release();
    assert_eq!(waiting.await.unwrap(), 200);
}

async fn http_readiness_timeout_ms_is_how_long_readyz_waits_for_the_database(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__DATABASE__POOL_MAX_SIZE", "1"),
            ("AUTHD__DATABASE__CONNECT_TIMEOUT_SECS", "30"),
            ("AUTHD__DATABASE__SQLITE_BUSY_TIMEOUT_MS", "30000"),
            ("AUTHD__HTTP__READINESS_TIMEOUT_MS", "400"),
        ],
    )
    .await;
    let lock = WriteLock::take_reads(&app.db);
    let waiting = send_in_background(&app, "ann@example.org");
    if db == Db::Sqlite {
        // A write waiting for the lock holds no pooled connection: ready at once.
        sleep_ms(300).await;
        assert_eq!(app.readyz().await.status, 200);
        lock.release();
        assert_eq!(waiting.await.unwrap(), 200);
        return;
    }
    wait_for_connections_in_use(&app, 1).await;
    let started = Instant::now();
    app.readyz().await.assert_error(503, "DATABASE_UNAVAILABLE");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_millis(1800),
        "readyz waited {waited:?} (the default is 2 s)"
    );
    lock.release();
    assert_eq!(waiting.await.unwrap(), 200);
}

#[actix_web::test]
async fn database_sqlite_busy_timeout_ms_is_how_long_a_writer_waits_for_the_lock() {
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[("AUTHD__DATABASE__SQLITE_BUSY_TIMEOUT_MS", "300")],
    )
    .await;
    let lock = WriteLock::take(&app.db);
    let started = Instant::now();
    let res = app.reset_send("ann@example.org", "").await;
    let waited = started.elapsed();
    assert!(res.status.is_server_error(), "{}: {}", res.status, res.text);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(3000),
        "the writer gave up after {waited:?} (the default is 5 s)"
    );
    lock.release();
    // A writer that may wait longer than the lock is held gets through.
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[("AUTHD__DATABASE__SQLITE_BUSY_TIMEOUT_MS", "20000")],
    )
    .await;
    let lock = WriteLock::take(&app.db);
    let waiting = send_in_background(&app, "ann@example.org");
    // A real wait: SQLite's busy timeout runs in real time inside the database library.
    sleep_ms(1000).await;
    lock.release();
    assert_eq!(waiting.await.unwrap(), 200);
}

async fn database_keep_sent_mail_days_and_housekeeping_interval_secs_remove_old_delivered_mails(
    db: Db,
) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__DATABASE__KEEP_SENT_MAIL_DAYS", "1"),
            ("AUTHD__DATABASE__HOUSEKEEPING_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    for who in ["ann", "bob"] {
        let email = format!("{who}@example.org");
        app.create_user(&email, PASSWORD).await;
        assert_eq!(app.reset_send(&email, "").await.status, 200);
    }
    app.wait_for_mails(2).await;
    let sent = || async {
        app.query_texts(
            "SELECT CAST(id AS TEXT) AS value FROM outbox WHERE status = 'sent' ORDER BY id",
        )
        .await
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent().await.len() < 2 {
        assert!(Instant::now() < deadline, "both mails are marked sent");
        sleep_ms(50).await;
    }
    let ids = sent().await;
    let (old, recent) = (ids[0].clone().unwrap(), ids[1].clone().unwrap());
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    app.execute_sql(&format!(
        "UPDATE outbox SET sent_at_ms = {} WHERE id = {old}",
        now - 2 * day
    ))
    .await;
    app.execute_sql(&format!(
        "UPDATE outbox SET sent_at_ms = {} WHERE id = {recent}",
        now - day / 2
    ))
    .await;
    // The next sweep (every second) removes the mail delivered two days ago and keeps the
    // one delivered half a day ago.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = app
            .query_texts("SELECT CAST(id AS TEXT) AS value FROM outbox ORDER BY id")
            .await;
        if left.len() == 1 {
            assert_eq!(left[0].as_deref(), Some(recent.as_str()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no sweep removed the old mail: {left:?}"
        );
        sleep_ms(100).await;
    }
}

// ---------------------------------------------------------------------------------------
// [secrets]

const OTHER_OTP_KEY: &str = "another-otp-key-from-a-file-0123456789abcdef";
const OTHER_TOTP_KEY: &str = "another-totp-key-from-a-file-0123456789abcdef";

async fn secrets_otp_key_file_keys_the_codes(db: Db) {
    let app = TestApp::spawn_adjusted(db, |test_db, env| {
        let file = test_db.dir().join("otp-key");
        std::fs::write(&file, format!("{OTHER_OTP_KEY}\n")).unwrap();
        env.remove("AUTHD__SECRETS__OTP_KEY");
        env.insert(
            "AUTHD__SECRETS__OTP_KEY_FILE".into(),
            file.display().to_string(),
        );
    })
    .await;
    app.create_user("ann@example.org", PASSWORD).await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    let code = app.wait_for_mails(1).await.remove(0).code();
    // The stored code is a hash keyed with the file's key: a server given that key inline
    // recognises it.
    let same_key = second_server(db, &app, &[("AUTHD__SECRETS__OTP_KEY", OTHER_OTP_KEY)]).await;
    assert_eq!(
        same_key
            .reset_validate("ann@example.org", &code)
            .await
            .status,
        200
    );
}

async fn secrets_totp_key_file_encrypts_the_totp_secrets(db: Db) {
    let app = TestApp::spawn_adjusted(db, |test_db, env| {
        let file = test_db.dir().join("totp-key");
        std::fs::write(&file, format!("{OTHER_TOTP_KEY}\n")).unwrap();
        env.remove("AUTHD__SECRETS__TOTP_KEY");
        env.insert(
            "AUTHD__SECRETS__TOTP_KEY_FILE".into(),
            file.display().to_string(),
        );
    })
    .await;
    app.create_user("ann@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;
    let (url, enabled) = app.turn_on_totp(&access, &access).await;
    assert_eq!(enabled.status, 200, "{}", enabled.text);

    // A server with another key cannot read the secret; one given the file's key inline can.
    let other_key = second_server(db, &app, &[]).await;
    let partial =
        assert_two_factor_required(&other_key.login("ann@example.org", PASSWORD).await).partial;
    other_key
        .totp_authenticate(&partial, &totp_at(&url, app.now_secs()))
        .await
        .assert_error(500, "TOTP_CORRUPT");
    let same_key = second_server(db, &app, &[("AUTHD__SECRETS__TOTP_KEY", OTHER_TOTP_KEY)]).await;
    let partial =
        assert_two_factor_required(&same_key.login("ann@example.org", PASSWORD).await).partial;
    assert_full_tokens(
        &same_key
            .totp_authenticate(&partial, &totp_at(&url, app.now_secs()))
            .await,
    );
}

async fn secrets_signing_key_file_signs_the_tokens(db: Db) {
    let pem = TokenSigner::generate_pem().unwrap();
    let file_pem = pem.clone();
    let app = TestApp::spawn_adjusted(db, move |test_db, env| {
        let file = test_db.dir().join("signing.pem");
        std::fs::write(&file, file_pem).unwrap();
        env.remove("AUTHD__SECRETS__SIGNING_KEY");
        env.insert(
            "AUTHD__SECRETS__SIGNING_KEY_FILE".into(),
            file.display().to_string(),
        );
    })
    .await;
    let id = app.create_user("ann@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;
    let signer = TokenSigner::new("authd", &pem, &[]).unwrap();
    let claims = signer
        .verify(&access, TokenKind::Access, now_secs())
        .expect("signed with the key from the file");
    assert_eq!(claims.user_id(), Some(id));
    assert_eq!(
        app.get("/.well-known/jwks.json").await.json(),
        signer.jwks()
    );
}

// ---------------------------------------------------------------------------------------
// [tokens]

async fn tokens_retired_signing_key_files_keep_old_tokens_verifying_and_in_the_jwks(db: Db) {
    let old_pem = TokenSigner::generate_pem().unwrap();
    let file_pem = old_pem.clone();
    let app = TestApp::spawn_adjusted(db, move |test_db, env| {
        let file = test_db.dir().join("retired.pem");
        std::fs::write(&file, file_pem).unwrap();
        env.insert(
            "AUTHD__TOKENS__RETIRED_SIGNING_KEY_FILES".into(),
            file.display().to_string(),
        );
    })
    .await;
    let id = app.create_user("ann@example.org", PASSWORD).await;
    let old = TokenSigner::new("authd", &old_pem, &[]).unwrap();
    let token = old
        .sign(
            TokenKind::Access,
            id,
            None,
            Duration::from_secs(300),
            now_secs(),
        )
        .unwrap();
    let res = app.get_with("/auth/accesstoken/validate", &token).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json(), json!({ "userId": id }));
    // A key that was never configured still does not verify.
    let stranger = TokenSigner::new("authd", &TokenSigner::generate_pem().unwrap(), &[]).unwrap();
    let forged = stranger
        .sign(
            TokenKind::Access,
            id,
            None,
            Duration::from_secs(300),
            now_secs(),
        )
        .unwrap();
    app.get_with("/auth/accesstoken/validate", &forged)
        .await
        .assert_error(401, "INVALID_TOKEN");
    // The JWKS publishes both keys; new tokens are signed by the current one.
    let both = TokenSigner::new(
        "authd",
        &app.env["AUTHD__SECRETS__SIGNING_KEY"],
        std::slice::from_ref(&old_pem),
    )
    .unwrap();
    let jwks = app.get("/.well-known/jwks.json").await.json();
    assert_eq!(jwks, both.jwks());
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    let fresh = app.login_access("ann@example.org", PASSWORD).await;
    assert!(old.verify(&fresh, TokenKind::Access, now_secs()).is_err());
    assert!(app
        .signer()
        .verify(&fresh, TokenKind::Access, now_secs())
        .is_ok());
}

async fn tokens_access_sudo_and_partial_lifetime_secs_are_exp_minus_iat(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__TOKENS__ACCESS_LIFETIME_SECS", "120"),
            ("AUTHD__TOKENS__SUDO_LIFETIME_SECS", "180"),
            ("AUTHD__TOKENS__PARTIAL_LIFETIME_SECS", "240"),
            ("AUTHD__LIMITS__OTP_MAIL__MAX", "10"),
        ],
    )
    .await;
    let lifetime = |jwt: &str| {
        let c = claims_of(jwt);
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap()
    };
    app.create_user("ann@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;
    assert_eq!(lifetime(&access), 120, "access");

    let enabled = app.turn_on_email_otp(&access, "ann@example.org", 1).await;
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    let partial = assert_two_factor_required(&app.login("ann@example.org", PASSWORD).await).partial;
    assert_eq!(lifetime(&partial), 240, "partial");
    assert_eq!(app.email_otp_challenge(&partial, "").await.status, 200);
    // The third mail to ann: after the setup code and the "two-step verification on"
    // notice (which may be delivered after this code).
    app.wait_for_mail_to("ann@example.org", 3).await;
    let code = app
        .mails_to("ann@example.org")
        .iter()
        .rfind(|m| !m.text.contains("verification method was turned on"))
        .unwrap()
        .code();
    let tokens = assert_full_tokens(&app.email_otp_authenticate(&partial, &code).await);
    assert_eq!(lifetime(&tokens.sudo), 180, "sudo");
    assert_eq!(lifetime(tokens.access.as_deref().unwrap()), 120, "access");
}

async fn tokens_issuer_is_the_iss_claim(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__TOKENS__ISSUER", "accounts.acme.example")]).await;
    let id = app.create_user("ann@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;
    assert_eq!(claims_of(&access)["iss"], "accounts.acme.example");
    // And only that issuer is accepted.
    let other = app
        .signer()
        .sign(
            TokenKind::Access,
            id,
            None,
            Duration::from_secs(300),
            now_secs(),
        )
        .unwrap();
    assert_eq!(claims_of(&other)["iss"], "authd");
    app.get_with("/auth/accesstoken/validate", &other)
        .await
        .assert_error(401, "INVALID_TOKEN");
}

// ---------------------------------------------------------------------------------------
// [limits]

async fn limits_denied_cache_size_bounds_the_refusals_answered_from_memory(db: Db) {
    // By default a refusal is remembered: once the database forgets the window, the memory
    // still refuses.
    let app = TestApp::spawn(db).await;
    app.create_user("ann@example.org", PASSWORD).await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 429);
    app.execute_sql("DELETE FROM rate_limits").await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 429);

    // With room for no refusal, every request asks the database.
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__DENIED_CACHE_SIZE", "0")]).await;
    app.create_user("ann@example.org", PASSWORD).await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 429);
    app.execute_sql("DELETE FROM rate_limits").await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    app.wait_for_mails(2).await;
}

async fn limits_replica_heartbeat_secs_is_the_heartbeat_interval(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__REPLICA_HEARTBEAT_SECS", "1")]).await;
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        for v in app
            .query_texts("SELECT CAST(last_seen_ms AS TEXT) AS value FROM replicas")
            .await
        {
            seen.insert(v.unwrap());
        }
        sleep_ms(100).await;
    }
    // At start, after 1 s, after 2 s... (the default, 5 s, would give one or two).
    assert!(seen.len() >= 3, "heartbeats seen in 3.5 s: {seen:?}");
}

async fn limits_transfer_mail_window_secs_is_the_transfer_mail_window(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__TRANSFER_MAIL__WINDOW_SECS", "1")]).await;
    app.create_user("ann@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;
    let initiate = |to: &'static str| {
        let access = access.clone();
        let app = &app;
        async move {
            app.post_with("/user/email/initiate", &access, &json!({ "email": to }))
                .await
        }
    };
    assert_eq!(initiate("ann.new@example.org").await.status, 200);
    let refused = initiate("ann.new@example.org").await;
    refused.assert_error(429, "TOO_MANY_TRANSFER_ATTEMPTS");
    assert_eq!(refused.json()["retryAfter"], 1, "{}", refused.text);
    app.advance_ms(1100);
    assert_eq!(initiate("ann.new@example.org").await.status, 200);
}

async fn limits_ip_reset_refill_per_minute_refills_the_reset_budget(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__LIMITS__IP_RESET__CAPACITY", "1"),
            ("AUTHD__LIMITS__IP_RESET__REFILL_PER_MINUTE", "120"),
        ],
    )
    .await;
    assert_eq!(app.reset_send("a@example.org", "").await.status, 200);
    let refused = app.reset_send("b@example.org", "").await;
    refused.assert_error(429, "TOO_MANY_REQUESTS");
    // Two a second: one is back after half a second (the default, 20 a minute, takes 3 s).
    // A real wait: the per-IP buckets refill on the monotonic clock, not the movable one.
    sleep_ms(600).await;
    assert_eq!(app.reset_send("c@example.org", "").await.status, 200);
}

// ---------------------------------------------------------------------------------------
// [password]

async fn password_argon2_memory_kib_iterations_and_parallelism_shape_new_hashes(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__PASSWORD__ARGON2_MEMORY_KIB", "20480"),
            ("AUTHD__PASSWORD__ARGON2_ITERATIONS", "3"),
            ("AUTHD__PASSWORD__ARGON2_PARALLELISM", "2"),
        ],
    )
    .await;
    app.create_user("ann@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;
    let res = app
        .change_password(&access, PASSWORD, "Brand2newpass")
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let hashes = app
        .query_texts("SELECT password_hash AS value FROM users")
        .await;
    let hash = hashes[0].as_deref().unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=20480,t=3,p=2$"),
        "{hash}"
    );
    assert!(
        app.password_verifies("ann@example.org", "Brand2newpass")
            .await
    );
}

// ---------------------------------------------------------------------------------------
// [mail] and [origins.*]

async fn mail_default_origin_is_the_origin_of_requests_that_name_none(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__MAIL__DEFAULT_ORIGIN", "acme")]).await;
    app.create_user("ann@example.org", PASSWORD).await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    let mail = app.wait_for_mails_of("acme", 1).await.remove(0);
    assert!(
        mail.raw
            .contains("From: \"Acme Corp\" <accounts@acme.example>"),
        "{}",
        mail.raw
    );
    assert!(app.mails().is_empty());
}

async fn mail_default_language_ends_the_language_fallback_chain(db: Db) {
    // Acme's default language has no template, so the chain ends at mail.default_language.
    let app = TestApp::spawn_adjusted(db, |test_db, env| {
        std::fs::write(
            test_db.dir().join("development.toml"),
            "[origins.acme]\nlanguages = [\"en\", \"sv\"]\ndefault_language = \"sv\"\n",
        )
        .unwrap();
        env.insert("AUTHD__MAIL__DEFAULT_LANGUAGE".into(), "de".into());
    })
    .await;
    app.create_user("ann@example.org", PASSWORD).await;
    assert_eq!(
        app.reset_send("ann@example.org", "?origin=acme")
            .await
            .status,
        200
    );
    let mail = app.wait_for_mails_of("acme", 1).await.remove(0);
    let german = std::fs::read_to_string(format!(
        "{}/password_reset/de.subject.tera",
        templates_dir()
    ))
    .unwrap();
    let german = german.trim().replace("{{ product_name }}", "Acme Corp");
    assert_eq!(mail.subject, german);
}

async fn mail_forbidden_domains_are_refused_with_their_subdomains(db: Db) {
    let app =
        TestApp::spawn_with(db, &[("AUTHD__MAIL__FORBIDDEN_DOMAINS", "blocked.example")]).await;
    for email in ["ann@blocked.example", "ann@mx.blocked.example"] {
        app.reset_send(email, "")
            .await
            .assert_error(403, "FORBIDDEN_MAIL_PROVIDER");
    }
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
}

async fn mail_allowed_domains_override_the_disposable_list(db: Db) {
    let app = TestApp::spawn(db).await;
    app.reset_send("ann@example.com", "")
        .await
        .assert_error(403, "FORBIDDEN_MAIL_PROVIDER");
    let app = TestApp::spawn_with(db, &[("AUTHD__MAIL__ALLOWED_DOMAINS", "example.com")]).await;
    assert_eq!(app.reset_send("ann@example.com", "").await.status, 200);
}

async fn origins_enabled_false_makes_the_origin_unknown(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__ORIGINS__ACME__ENABLED", "false")]).await;
    app.reset_send("ann@example.org", "?origin=acme")
        .await
        .assert_error(400, "UNKNOWN_ORIGIN");
    assert_eq!(
        app.reset_send("ann@example.org", "?origin=default")
            .await
            .status,
        200
    );
}

async fn origins_from_is_the_from_header(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[(
            "AUTHD__ORIGINS__DEFAULT__FROM",
            "Accounts <accounts@example.net>",
        )],
    )
    .await;
    app.create_user("ann@example.org", PASSWORD).await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    let mail = app.wait_for_mails(1).await.remove(0);
    assert!(
        mail.raw.contains("From: Accounts <accounts@example.net>"),
        "{}",
        mail.raw
    );
}

async fn origins_default_language_is_the_language_of_requests_that_name_none(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__ORIGINS__DEFAULT__DEFAULT_LANGUAGE", "nl")]).await;
    app.create_user("ann@example.org", PASSWORD).await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    let mail = app.wait_for_mails(1).await.remove(0);
    assert_eq!(mail.subject, "Je wachtwoord voor Example opnieuw instellen");
}

async fn origins_reset_url_is_the_link_in_the_reset_mail(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[(
            "AUTHD__ORIGINS__DEFAULT__RESET_URL",
            "https://id.example.net/r/{otp}?who={email}",
        )],
    )
    .await;
    app.create_user("ann@example.org", PASSWORD).await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    let mail = app.wait_for_mails(1).await.remove(0);
    let link = format!(
        "https://id.example.net/r/{}?who=ann%40example%2Eorg",
        mail.code()
    );
    assert!(mail.text.contains(&link), "{link} in {}", mail.text);
}

#[test]
fn origins_languages_are_the_languages_templates_check_demands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("extra.toml"),
        "[origins.acme]\nlanguages = [\"en\", \"sv\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_authd-under-test"))
        .args(["--config", "extra.toml", "templates", "check"])
        .current_dir(dir.path())
        .env("AUTHD_ENV", "development")
        .env("AUTHD__MAIL__TEMPLATES_DIR", templates_dir())
        .output()
        .expect("authd runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("acme password_reset sv: no template"), "{err}");
    assert!(!err.contains(" nl: no template"), "{err}");
}

// ---------------------------------------------------------------------------------------
// [http] and [metrics]

#[actix_web::test]
async fn http_body_limit_bytes_is_the_largest_accepted_body() {
    let app = TestApp::spawn_with(Db::Sqlite, &[("AUTHD__HTTP__BODY_LIMIT_BYTES", "64")]).await;
    let small = r#"{"email":"ann@example.org"}"#;
    let padded = format!(
        r#"{{"email":"ann@example.org","pad":"{}"}}"#,
        "x".repeat(60)
    );
    assert_eq!(
        app.post_raw(SEND, Some("application/json"), small)
            .await
            .status,
        200
    );
    app.post_raw(SEND, Some("application/json"), padded)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
}

fn host_port(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

#[actix_web::test]
async fn http_keep_alive_secs_is_how_long_an_idle_connection_stays_open() {
    let app = TestApp::spawn_with(Db::Sqlite, &[("AUTHD__HTTP__KEEP_ALIVE_SECS", "1")]).await;
    let mut sock = tokio::net::TcpStream::connect(host_port(&app))
        .await
        .unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: authd\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(r#"{"status":"ok"}"#) {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    let idle = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(4), sock.read(&mut buf))
        .await
        .expect("the idle connection is closed (the default keeps it 5 s)");
    assert_eq!(closed.unwrap_or(0), 0, "nothing more is sent");
    let open_for = idle.elapsed();
    assert!(
        open_for >= Duration::from_millis(500),
        "kept open for {open_for:?}"
    );
}

#[actix_web::test]
async fn http_client_request_timeout_ms_is_how_long_a_client_has_to_send_the_head() {
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[("AUTHD__HTTP__CLIENT_REQUEST_TIMEOUT_MS", "300")],
    )
    .await;
    let mut sock = tokio::net::TcpStream::connect(host_port(&app))
        .await
        .unwrap();
    let started = Instant::now();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: authd\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), sock.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "no answer to a half-sent head within 3 s (the default waits 5 s)"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// Threads of this test process whose name marks an actix arbiter, which is what a server
/// worker runs on inside an actix system (the kernel keeps the first 15 bytes of a thread
/// name: "actix-rt|system:1|arbiter:2").
fn actix_worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("actix-rt|system"))
        .count()
}

#[actix_web::test]
async fn http_workers_is_the_number_of_api_worker_threads() {
    // nextest runs each test in a process of its own, so no other server's threads count.
    let before = actix_worker_threads();
    let app = TestApp::spawn_with(Db::Sqlite, &[("AUTHD__HTTP__WORKERS", "3")]).await;
    assert_eq!(app.healthz().await.status, 200);
    // Three for the API and the metrics listener's one (the harness default would give 2 + 1).
    assert_eq!(actix_worker_threads() - before, 3 + 1);
}

#[actix_web::test]
async fn metrics_enabled_false_serves_no_metrics_listener() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[
            ("AUTHD__METRICS__ENABLED", "false"),
            ("AUTHD__METRICS__BIND", bind.as_str()),
        ],
    )
    .await;
    assert_eq!(app.metrics_address, "");
    assert_eq!(app.healthz().await.status, 200);
    assert!(
        std::net::TcpStream::connect(&bind).is_err(),
        "nothing listens on metrics.bind"
    );
    // The same bind with metrics on serves them.
    let app = TestApp::spawn_with(Db::Sqlite, &[("AUTHD__METRICS__BIND", bind.as_str())]).await;
    assert_eq!(app.metrics_address, format!("http://{bind}"));
    assert_eq!(app.healthz().await.status, 200);
    assert!(app.metrics().await.contains("http_requests_total"));
}

// ---------------------------------------------------------------------------------------
// [log]

/// Runs `authd user reset-two-factor`, which logs one warning, with `log` settings; returns
/// its stderr.
fn reset_two_factor_log(log: &[(&str, &str)]) -> String {
    let db = TestDb::create(Db::Sqlite);
    let run = |args: &[&str], stdin: &str, log: &[(&str, &str)]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_authd-under-test"))
            .args(args)
            .current_dir(db.dir())
            .env("AUTHD_ENV", "development")
            .env_remove("RUST_LOG")
            .env("AUTHD__DATABASE__URL", &db.url)
            .env("AUTHD__MAIL__TEMPLATES_DIR", templates_dir())
            .envs(log.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("authd runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    run(
        &["user", "create", "--email", "ann@example.org"],
        "Correct1horse\n",
        &[("AUTHD__LOG__LEVEL", "error")],
    );
    run(
        &["user", "reset-two-factor", "--email", "ann@example.org"],
        "",
        log,
    )
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let text = reset_two_factor_log(&[("AUTHD__LOG__LEVEL", "warn")]);
    assert!(
        text.contains("WARN") && text.contains("two-factor authentication turned off"),
        "{text}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());

    let json = reset_two_factor_log(&[
        ("AUTHD__LOG__LEVEL", "warn"),
        ("AUTHD__LOG__FORMAT", "json"),
    ]);
    let lines: Vec<serde_json::Value> = BufReader::new(json.as_bytes())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{json}");
    assert_eq!(lines[0]["level"], "WARN", "{json}");
    assert_eq!(
        lines[0]["message"], "two-factor authentication turned off by an operator",
        "{json}"
    );
}

#[test]
fn log_level_filters_what_is_logged() {
    assert_eq!(
        reset_two_factor_log(&[("AUTHD__LOG__LEVEL", "error")]),
        "",
        "a warning is below error"
    );
    assert!(reset_two_factor_log(&[("AUTHD__LOG__LEVEL", "warn")])
        .contains("two-factor authentication turned off"));
    // EnvFilter directives: per-target levels.
    assert_eq!(
        reset_two_factor_log(&[("AUTHD__LOG__LEVEL", "warn,authd=error")]),
        ""
    );
}
