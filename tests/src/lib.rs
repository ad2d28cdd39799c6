//! The test harness: a fresh database per test (a SQLite file or a PostgreSQL database created
//! and dropped here), the real server started on port 0, and one helper per endpoint.
//!
//! PostgreSQL is required: when it cannot be reached the tests fail, they are never skipped.
//! Its server URL comes from `AUTHD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`).

pub mod smtp;
pub mod two_factor;

use std::collections::HashMap;
use std::path::PathBuf;

use authd::Application;
use authd_settings::Sources;
use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Generates, for each named `async fn name(db: Db)`, a module with a `sqlite` and a
/// `postgres` test that run it.
#[macro_export]
macro_rules! both_dbs {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::Db::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name($crate::Db::Postgres).await
            }
        }
    )*};
}

/// The repository's mail templates.
pub fn templates_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/mail").to_owned()
}

/// A copy of the shipped templates in `<dir>/templates`, for tests that change or break them.
pub fn templates_copy(dir: &std::path::Path) -> std::path::PathBuf {
    fn copy_dir(src: &std::path::Path, dst: &std::path::Path) {
        std::fs::create_dir_all(dst).expect("templates copy folder");
        for entry in std::fs::read_dir(src).expect("shipped templates") {
            let entry = entry.expect("templates folder entry");
            let to = dst.join(entry.file_name());
            if entry.file_type().expect("entry type").is_dir() {
                copy_dir(&entry.path(), &to);
            } else {
                std::fs::copy(entry.path(), to).expect("template copied");
            }
        }
    }
    let dst = dir.join("templates");
    copy_dir(std::path::Path::new(&templates_dir()), &dst);
    dst
}

pub fn postgres_server_url() -> String {
    std::env::var("AUTHD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// A database that exists for one test and is removed afterwards.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub fn create(db: Db) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match db {
            Db::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("authd.db").display());
                Self {
                    url,
                    pg_name: None,
                    _dir: dir,
                }
            }
            Db::Postgres => {
                let name = format!("authd_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin = admin_connection();
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .expect("CREATE DATABASE");
                Self {
                    url: format!("{}/{name}", postgres_server_url()),
                    pg_name: Some(name),
                    _dir: dir,
                }
            }
        }
    }

    /// A scratch folder that lives as long as the database (mail dumps, key files).
    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }

    /// Drops a PostgreSQL database while servers may still be connected to it.
    pub fn drop_now(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let mut admin = admin_connection();
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.drop_now();
    }
}

fn admin_connection() -> PgConnection {
    let url = format!("{}/postgres", postgres_server_url());
    authd_store::prepare_postgres_client();
    PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!("PostgreSQL is required for the test suite and is not reachable at {url}: {e}")
    })
}

/// A running authd on its own database, reached over real HTTP.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    /// Empty when the metrics listener is off.
    pub metrics_address: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub env: HashMap<String, String>,
    /// The server's clock: system time plus what the test moved it by ([`TestApp::advance`]).
    pub clock: authd::Clock,
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// Reads a whole answer.
    pub async fn read(res: reqwest::Response) -> Self {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        Self {
            status,
            headers,
            text,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the contract's error shape: exactly these keys, the status repeated, the
    /// reason phrase, the message, and `X-Request-Id`.
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {:?}", self.text);
        let body = self.json();
        let obj = body
            .as_object()
            .unwrap_or_else(|| panic!("error body is not an object: {body}"));
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let want: &[&str] = if status == 429 {
            &["error", "message", "retryAfter", "statusCode"]
        } else {
            &["error", "message", "statusCode"]
        };
        assert_eq!(keys, want, "keys of {body}");
        assert_eq!(body["statusCode"], status, "{body}");
        assert_eq!(body["error"], reason_phrase(status), "{body}");
        assert_eq!(body["message"], message, "{body}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8"),
            "content type of an error"
        );
        assert!(
            self.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "X-Request-Id missing"
        );
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too many requests",
        500 => "Internal server error",
        503 => "Service Unavailable",
        other => panic!("no reason phrase in the contract for {other}"),
    }
}

impl TestApp {
    pub async fn spawn(db: Db) -> Self {
        Self::spawn_with(db, &[]).await
    }

    /// Starts a server with extra settings given as `AUTHD__...` variables.
    pub async fn spawn_with(db: Db, overrides: &[(&str, &str)]) -> Self {
        Self::spawn_adjusted(db, |_, env| {
            for (k, v) in overrides {
                env.insert((*k).to_owned(), (*v).to_owned());
            }
        })
        .await
    }

    /// Starts a server after `adjust` has changed its `AUTHD__...` variables, given the fresh
    /// database (whose scratch folder can hold files the settings name). Variables can be
    /// removed, too.
    pub async fn spawn_adjusted(
        db: Db,
        adjust: impl FnOnce(&TestDb, &mut HashMap<String, String>),
    ) -> Self {
        Self::spawn_with_clock(db, authd::Clock::adjustable(), adjust).await
    }

    /// [`TestApp::spawn_adjusted`] on a given clock: a second server of a test shares the
    /// first one's, so both read the same (moved) time.
    pub async fn spawn_with_clock(
        db: Db,
        clock: authd::Clock,
        adjust: impl FnOnce(&TestDb, &mut HashMap<String, String>),
    ) -> Self {
        let db = TestDb::create(db);
        let mut env: HashMap<String, String> = HashMap::from([
            ("AUTHD_ENV".into(), "development".into()),
            ("AUTHD__HTTP__BIND".into(), "127.0.0.1:0".into()),
            ("AUTHD__HTTP__WORKERS".into(), "2".into()),
            ("AUTHD__HTTP__SHUTDOWN_TIMEOUT_SECS".into(), "1".into()),
            ("AUTHD__METRICS__BIND".into(), "127.0.0.1:0".into()),
            ("AUTHD__DATABASE__URL".into(), db.url.clone()),
            ("AUTHD__LOG__LEVEL".into(), "warn".into()),
            ("AUTHD__MAIL__TEMPLATES_DIR".into(), templates_dir()),
            ("AUTHD__MAIL__POLL_INTERVAL_MS".into(), "100".into()),
            (
                "AUTHD__ORIGINS__DEFAULT__FILE__DIR".into(),
                db.dir().join("mail").display().to_string(),
            ),
            (
                "AUTHD__ORIGINS__ACME__FILE__DIR".into(),
                db.dir().join("mail-acme").display().to_string(),
            ),
            (
                "AUTHD__SECRETS__OTP_KEY".into(),
                "test-otp-key-0123456789abcdef0123456789".into(),
            ),
            (
                "AUTHD__SECRETS__TOTP_KEY".into(),
                "test-totp-key-0123456789abcdef012345678".into(),
            ),
            // Tests send many requests from one address; the per-IP budgets have tests of
            // their own.
            ("AUTHD__LIMITS__IP_LOGIN__CAPACITY".into(), "100000".into()),
            ("AUTHD__LIMITS__IP_RESET__CAPACITY".into(), "100000".into()),
            (
                "AUTHD__SECRETS__SIGNING_KEY".into(),
                authd_domain::tokens::TokenSigner::generate_pem().expect("a signing key"),
            ),
        ]);
        adjust(&db, &mut env);
        let sources = Sources {
            config_dir: Some(db.dir()),
            file: None,
            env: Some(env.clone()),
        };
        let loaded = sources.load().expect("test settings load");
        let app = Application::build_with_clock(loaded, clock.clone())
            .await
            .expect("server builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        // Empty when `metrics.enabled = false`.
        let metrics_address = app
            .metrics_port()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .unwrap_or_default();
        actix_rt::spawn(app.run_until_stopped());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            address,
            metrics_address,
            client,
            db,
            env,
            clock,
        }
    }

    /// Moves the server's clock forward: windows, backoffs, expiries and TOTP steps are
    /// crossed at once instead of slept through. Only the server in this process sees it;
    /// what other processes and the database server read is real time.
    pub fn advance(&self, by: std::time::Duration) {
        self.clock.advance(by);
    }

    /// [`TestApp::advance`] in milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.advance(std::time::Duration::from_millis(ms));
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        Reply::read(req.send().await.expect("request reaches the server")).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut req = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req).await
    }

    /// Mails the file backend wrote for an origin so far, oldest first.
    pub fn mails_of(&self, origin: &str) -> Vec<Mail> {
        let dir = if origin == "default" {
            self.db.dir().join("mail")
        } else {
            self.db.dir().join(format!("mail-{origin}"))
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let raw = std::fs::read_to_string(&f).expect("mail file");
                Mail::parse(f, raw)
            })
            .collect()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails_of("default")
    }

    /// Waits (polling, up to 10 s) until the default origin has `n` mails, and returns them.
    pub async fn wait_for_mails(&self, n: usize) -> Vec<Mail> {
        self.wait_for_mails_of("default", n).await
    }

    pub async fn wait_for_mails_of(&self, origin: &str, n: usize) -> Vec<Mail> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mails = self.mails_of(origin);
            if mails.len() >= n || std::time::Instant::now() > deadline {
                assert_eq!(mails.len(), n, "mails delivered for {origin}");
                return mails;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Creates an account directly in the database (with the production hashing code).
    pub async fn create_user(&self, email: &str, password: &str) -> i64 {
        let store = self.store();
        let email = authd_domain::Email::parse(email).expect("valid email");
        let password = authd_domain::Password::parse(password).expect("valid password");
        let hash =
            authd_domain::PasswordHash::create(&password, &authd_domain::Argon2Params::default())
                .expect("hash");
        store
            .run(move |c| authd_store::users::create(c, &email, Some(&hash)))
            .await
            .expect("user created")
            .id
    }

    /// True when the stored password of `email` verifies against `password`.
    pub async fn password_verifies(&self, email: &str, password: &str) -> bool {
        let email = authd_domain::Email::parse(email).expect("valid email");
        let user = self
            .store()
            .run(move |c| authd_store::users::find_by_email(c, &email))
            .await
            .expect("query")
            .expect("user exists");
        user.password_hash()
            .expect("hash parses")
            .expect("has a password")
            .verify(password)
            .expect("verify")
    }

    /// A second connection pool on the test's database, for checks behind the API's back.
    pub fn store(&self) -> authd_store::Store {
        self.store_with(|_| {})
    }

    /// [`TestApp::store`] with options changed by `adjust` (e.g. one writer).
    pub fn store_with(
        &self,
        adjust: impl FnOnce(&mut authd_store::StoreOptions),
    ) -> authd_store::Store {
        let settings = Sources {
            config_dir: Some(self.db.dir()),
            file: None,
            env: Some(self.env.clone()),
        }
        .load()
        .expect("settings")
        .settings;
        let mut options = authd_store::StoreOptions::from_settings(&settings);
        adjust(&mut options);
        authd_store::Store::open(&options)
    }

    pub async fn reset_send(&self, email: &str, query: &str) -> Reply {
        self.post_json(
            &format!("/user/password/reset/send{query}"),
            &serde_json::json!({ "email": email }),
        )
        .await
    }

    pub async fn reset_validate(&self, email: &str, otp: &str) -> Reply {
        self.post_json(
            "/user/password/reset/validate",
            &serde_json::json!({ "email": email, "otp": otp }),
        )
        .await
    }

    pub async fn reset_password(&self, email: &str, otp: &str, new_password: &str) -> Reply {
        let body =
            serde_json::json!({ "userEmail": email, "otp": otp, "newPassword": new_password });
        self.send(self.client.put(self.url("/user/password/otp")).json(&body))
            .await
    }

    /// A signer holding this server's signing key, to mint tokens of any kind in tests.
    pub fn signer(&self) -> authd_domain::tokens::TokenSigner {
        authd_domain::tokens::TokenSigner::new(
            "authd",
            &self.env["AUTHD__SECRETS__SIGNING_KEY"],
            &[],
        )
        .expect("signer")
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.post_json(
            "/auth/login",
            &serde_json::json!({ "username": username, "password": password }),
        )
        .await
    }

    /// Logs in and returns the refresh token.
    pub async fn login_ok(&self, username: &str, password: &str) -> String {
        let res = self.login(username, password).await;
        assert_eq!(res.status, 200, "login: {}", res.text);
        assert_eq!(
            res.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        res.text
    }

    pub async fn get_with(&self, path: &str, token: &str) -> Reply {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn access_token(&self, refresh: &str) -> String {
        let res = self.get_with("/auth/accesstoken", refresh).await;
        assert_eq!(res.status, 200, "accesstoken: {}", res.text);
        res.text
    }

    pub async fn change_password(&self, token: &str, old: &str, new: &str) -> Reply {
        let body = serde_json::json!({ "oldPassword": old, "newPassword": new });
        self.send(
            self.client
                .put(self.url("/user/password/old-password"))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    pub async fn healthz(&self) -> Reply {
        self.get("/healthz").await
    }

    pub async fn readyz(&self) -> Reply {
        self.get("/readyz").await
    }

    pub async fn openapi(&self) -> Value {
        self.get("/openapi.json").await.json()
    }

    pub async fn metrics(&self) -> String {
        let res = self
            .client
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("metrics");
        assert_eq!(res.status(), 200);
        res.text().await.expect("metrics body")
    }
}

/// A delivered mail, parsed by a standard mail parser.
#[derive(Debug, Clone)]
pub struct Mail {
    pub file: PathBuf,
    pub raw: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    pub fn parse(file: PathBuf, raw: String) -> Self {
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("an RFC 5322 message");
        let to = msg
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned();
        let subject = msg.subject().unwrap_or_default().to_owned();
        let text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
        let html = msg.body_html(0).map(|t| t.into_owned()).unwrap_or_default();
        Self {
            file,
            raw,
            to,
            subject,
            text,
            html,
        }
    }

    /// The 6-digit code: the text part shows it alone on its line.
    pub fn code(&self) -> String {
        self.text
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| panic!("no code line in {}", self.text))
            .to_owned()
    }
}

/// The value of one sample in a Prometheus text exposition, by its full series text
/// (`name{label="v"}`); `None` when the series is absent.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// Seals `plain` the way the first releases did, written out here rather than taken from the
/// server's code: key = HMAC-SHA256(master key, label), then
/// `base64(nonce || XChaCha20-Poly1305(plain, aad = context))`, with no version marker. For
/// tests that put rows of an older release in the database.
pub fn seal_like_the_first_releases(
    master_key: &[u8],
    label: &[u8],
    context: &[u8],
    plain: &[u8],
) -> String {
    use base64::Engine;
    use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(master_key).expect("any key");
    mac.update(label);
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(&mac.finalize().into_bytes());
    let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: context,
            },
        )
        .expect("encryption with a fresh nonce");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    base64::engine::general_purpose::STANDARD.encode(out)
}
