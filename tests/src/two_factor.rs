//! Two-factor helpers: one method per 2FA call, TOTP codes computed by an implementation that
//! shares no code with the server's (PyPI `pyotp`, run from `./.venv`), waiting for a safe
//! point inside a TOTP step, and a few checks that several test files share.

use std::path::PathBuf;
use std::time::Duration;

use authd_domain::tokens::TokenKind;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{Mail, Reply, TestApp};

/// The alphabet of recovery codes.
pub const RECOVERY_ALPHABET: &str = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// The TOTP step, in seconds.
pub const STEP_SECS: i64 = 30;

/// The Python of the suite's virtualenv (`AUTHD_VENV`, else `./.venv`), which has pyotp.
pub fn python() -> PathBuf {
    let venv = std::env::var("AUTHD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv")));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-services (it installs pyotp into the venv)",
        python.display()
    );
    python
}

fn run_python(script: &str, args: &[String]) -> String {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "pyotp failed on {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 from python")
}

/// The codes pyotp computes from an `otpauth://` URL for each of the given Unix times.
pub fn totp_codes(url: &str, times: &[i64]) -> Vec<String> {
    let script = "import pyotp, sys\n\
                  t = pyotp.parse_uri(sys.argv[1])\n\
                  for a in sys.argv[2:]:\n    print(t.at(int(a)))\n";
    let mut args = vec![url.to_owned()];
    args.extend(times.iter().map(i64::to_string));
    let codes: Vec<String> = run_python(script, &args)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(codes.len(), times.len(), "one code per time");
    for c in &codes {
        assert!(
            c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()),
            "a 6-digit code: {c}"
        );
    }
    codes
}

/// The code pyotp computes from an `otpauth://` URL for one Unix time.
pub fn totp_at(url: &str, unix: i64) -> String {
    totp_codes(url, &[unix]).remove(0)
}

/// What pyotp reads from an `otpauth://` URL: name (account), issuer, digits, interval,
/// digest name and secret.
pub fn pyotp_parse(url: &str) -> Value {
    let script = "import json, pyotp, sys\n\
                  t = pyotp.parse_uri(sys.argv[1])\n\
                  print(json.dumps({'type': type(t).__name__, 'name': t.name, \
                  'issuer': t.issuer, 'digits': t.digits, 'interval': t.interval, \
                  'digest': t.digest().name, 'secret': t.secret}))\n";
    serde_json::from_str(&run_python(script, &[url.to_owned()])).expect("JSON from python")
}

/// A 6-digit code that none of `codes` is.
pub fn other_code(codes: &[String]) -> String {
    (0u32..)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !codes.contains(c))
        .expect("a free code")
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The TOTP step of a Unix time.
pub fn step_of(unix: i64) -> i64 {
    unix.div_euclid(STEP_SECS)
}

/// Sleeps, when needed, until at least `room_secs` remain in the current TOTP step of real
/// time: for servers in other processes, whose clock a test cannot move. Returns the step.
pub async fn sleep_until_room_in_step(room_secs: i64) -> i64 {
    let step_ms = STEP_SECS * 1000;
    let left = step_ms - now_ms().rem_euclid(step_ms);
    if left < room_secs * 1000 {
        sleep_ms(left + 50).await;
    }
    step_of(now_secs())
}

pub async fn sleep_ms(ms: i64) {
    actix_rt::time::sleep(Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0))).await;
}

/// The claims of a JWT, decoded without checking the signature.
pub fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url claims"))
        .expect("JSON claims")
}

/// Asserts a `{"recoveryCodes": [...]}` answer with 10 distinct, well-formed codes and returns
/// them.
pub fn assert_ten_recovery_codes(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only recoveryCodes: {body}"
    );
    let codes: Vec<String> = body["recoveryCodes"]
        .as_array()
        .unwrap_or_else(|| panic!("recoveryCodes is an array: {body}"))
        .iter()
        .map(|c| c.as_str().expect("a code is a string").to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "ten codes: {codes:?}");
    for c in &codes {
        assert_eq!(c.chars().count(), 16, "16 characters: {c}");
        assert!(
            c.chars().all(|ch| RECOVERY_ALPHABET.contains(ch)),
            "only {RECOVERY_ALPHABET}: {c}"
        );
    }
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "distinct codes: {codes:?}");
    codes
}

/// Asserts `{"recoveryCodes": []}`.
pub fn assert_no_recovery_codes(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), json!({ "recoveryCodes": [] }));
}

/// The tokens a successful `authenticate` call returns.
#[derive(Debug, Clone)]
pub struct AuthTokens {
    pub access: Option<String>,
    pub refresh: Option<String>,
    pub sudo: String,
}

/// Asserts a successful `authenticate` answer made with a partial token: three fresh tokens.
pub fn assert_full_tokens(reply: &Reply) -> AuthTokens {
    let t = tokens_of(reply);
    assert!(
        t.access.is_some() && t.refresh.is_some(),
        "a partial token gets access and refresh tokens: {}",
        reply.text
    );
    t
}

/// Asserts a successful `authenticate` answer made with an access token: only a sudo token.
pub fn assert_sudo_only(reply: &Reply) -> String {
    let t = tokens_of(reply);
    assert!(
        t.access.is_none() && t.refresh.is_none(),
        "an access token gets only a sudo token: {}",
        reply.text
    );
    t.sudo
}

fn tokens_of(reply: &Reply) -> AuthTokens {
    assert_eq!(reply.status, 200, "authenticate: {}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = reply.json();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["accessToken", "refreshToken", "sudoToken"], "{body}");
    let opt = |k: &str| match &body[k] {
        Value::Null => None,
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        other => panic!("{k} is a string or null: {other}"),
    };
    let sudo = opt("sudoToken").unwrap_or_else(|| panic!("a sudo token: {body}"));
    assert_eq!(claims_of(&sudo)["typ"], "sudo", "sudoToken is a sudo token");
    let access = opt("accessToken");
    if let Some(a) = &access {
        assert_eq!(
            claims_of(a)["typ"],
            "access",
            "accessToken is an access token"
        );
    }
    AuthTokens {
        access,
        refresh: opt("refreshToken"),
        sudo,
    }
}

/// The `TWO_FACTOR_REQUIRED` answer of a login.
#[derive(Debug, Clone)]
pub struct SecondFactorRequired {
    pub partial: String,
    pub methods: Vec<String>,
}

/// Asserts the login answer for a user with 2FA on: 401 with exactly the error fields plus
/// `partialToken` and `methods`.
pub fn assert_two_factor_required(reply: &Reply) -> SecondFactorRequired {
    assert_eq!(reply.status, 401, "login of a 2FA user: {}", reply.text);
    let body = reply.json();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["error", "message", "methods", "partialToken", "statusCode"],
        "{body}"
    );
    assert_eq!(body["statusCode"], 401, "{body}");
    assert_eq!(body["error"], "Unauthorized", "{body}");
    assert_eq!(body["message"], "TWO_FACTOR_REQUIRED", "{body}");
    let partial = body["partialToken"]
        .as_str()
        .unwrap_or_else(|| panic!("partialToken is a string: {body}"))
        .to_owned();
    assert_eq!(claims_of(&partial)["typ"], "partial", "{body}");
    let methods: Vec<String> = body["methods"]
        .as_array()
        .unwrap_or_else(|| panic!("methods is an array: {body}"))
        .iter()
        .map(|m| m.as_str().expect("a method is a string").to_owned())
        .collect();
    SecondFactorRequired { partial, methods }
}

/// Asserts a `{"duration": n}` answer and returns n.
pub fn duration_of(reply: &Reply) -> i64 {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only duration: {body}"
    );
    let d = body["duration"]
        .as_i64()
        .unwrap_or_else(|| panic!("duration is a whole number: {body}"));
    assert!(d >= 0, "{body}");
    d
}

/// Asserts a 429 with `message` and returns its `retryAfter`, checked against the header.
pub fn assert_429(reply: &Reply, message: &str) -> i64 {
    reply.assert_error(429, message);
    let wait = reply.json()["retryAfter"]
        .as_i64()
        .unwrap_or_else(|| panic!("retryAfter is a whole number: {}", reply.text));
    assert!(wait >= 1, "retryAfter {wait}");
    assert_eq!(
        reply.header("retry-after"),
        Some(wait.to_string().as_str()),
        "Retry-After header"
    );
    wait
}

/// Asserts a 400 in the contract's shape (its message is a sentence, not checked here).
pub fn assert_bad_request(reply: &Reply) {
    assert_eq!(reply.status, 400, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["error"], "Bad Request", "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// Asserts that a mail carries no 6-digit code line and none of `secrets`.
pub fn assert_notice_without_codes(mail: &Mail, secrets: &[String]) {
    assert!(
        !mail
            .text
            .lines()
            .map(str::trim)
            .any(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit())),
        "a notice carries no code: {}",
        mail.text
    );
    for s in secrets {
        assert!(
            !mail.raw.contains(s.as_str()),
            "a notice does not carry {s}"
        );
    }
}

/// A request with an optional bearer token and an optional JSON body.
pub async fn call(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    Reply::read(req.send().await.expect("request reaches the server")).await
}

/// TOTP time on the server's clock: the tests compute codes for the instant the server reads,
/// and move the clock across step boundaries instead of waiting for them.
impl TestApp {
    /// The server's Unix time (its clock may have been moved forward).
    pub fn now_secs(&self) -> i64 {
        self.clock.now_secs()
    }

    /// Moves the server's clock to just after the start of the next TOTP step, so that a
    /// sequence of calls taking less than `room_secs` runs inside one step. Always, not only
    /// when little room is left: every run then takes the same path, and a test that mixes
    /// the server's time with real time fails every time instead of once in a while.
    /// Returns the step.
    pub fn wait_for_room_in_step(&self, room_secs: i64) -> i64 {
        let step_ms = STEP_SECS * 1000;
        assert!(room_secs * 1000 < step_ms - 50, "a step has {STEP_SECS} s");
        let left = step_ms - self.clock.now_ms().rem_euclid(step_ms);
        self.advance_ms(u64::try_from(left + 50).unwrap_or(0));
        step_of(self.now_secs())
    }

    /// Moves the server's clock to just after the start of the step after `step`, and returns
    /// the new step.
    pub fn wait_for_step_after(&self, step: i64) -> i64 {
        let begin_ms = (step + 1) * STEP_SECS * 1000;
        let wait = begin_ms - self.clock.now_ms();
        if wait > -50 {
            self.advance_ms(u64::try_from(wait + 50).unwrap_or(0));
        }
        let now = step_of(self.now_secs());
        assert!(now > step, "the step moved on");
        now
    }
}

impl TestApp {
    /// A token of any signed kind for `user_id`, minted with the server's key (5 minutes).
    pub fn mint(&self, kind: TokenKind, user_id: i64) -> String {
        self.signer()
            .sign(kind, user_id, None, Duration::from_secs(300), now_secs())
            .expect("token signed")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        call(&self.client, method, &self.url(path), token, body).await
    }

    pub async fn post_with(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn delete_with(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// `GET /user/2fa`.
    pub async fn two_factor_overview(&self, access: &str) -> Reply {
        self.get_with("/user/2fa", access).await
    }

    pub async fn email_otp_setup(&self, token: &str, email: &str, query: &str) -> Reply {
        self.post_with(
            &format!("/user/2fa/email-otp/setup{query}"),
            token,
            &json!({ "email": email }),
        )
        .await
    }

    pub async fn email_otp_enable(&self, access: &str, otp: &str) -> Reply {
        self.post_with("/user/2fa/email-otp/enable", access, &json!({ "otp": otp }))
            .await
    }

    pub async fn email_otp_challenge(&self, token: &str, query: &str) -> Reply {
        self.post_with(
            &format!("/user/2fa/email-otp/challenge{query}"),
            token,
            &json!({}),
        )
        .await
    }

    pub async fn email_otp_authenticate(&self, token: &str, otp: &str) -> Reply {
        self.post_with(
            "/user/2fa/email-otp/authenticate",
            token,
            &json!({ "otp": otp }),
        )
        .await
    }

    pub async fn email_otp_next_email(&self, access: &str) -> Reply {
        self.get_with("/user/2fa/email-otp/next-email", access)
            .await
    }

    pub async fn email_otp_disable(&self, sudo: &str) -> Reply {
        self.delete_with("/user/2fa/email-otp", sudo).await
    }

    pub async fn totp_setup(&self, token: &str, query: &str) -> Reply {
        self.post_with(&format!("/user/2fa/totp/setup{query}"), token, &json!({}))
            .await
    }

    /// `POST /user/2fa/totp/setup`, asserted successful; returns the `otpauth://` URL.
    pub async fn totp_setup_url(&self, token: &str) -> String {
        let res = self.totp_setup(token, "").await;
        assert_eq!(res.status, 200, "TOTP setup: {}", res.text);
        res.json()["url"]
            .as_str()
            .unwrap_or_else(|| panic!("url is a string: {}", res.text))
            .to_owned()
    }

    pub async fn totp_enable(&self, access: &str, code: &str) -> Reply {
        self.post_with("/user/2fa/totp/enable", access, &json!({ "totp": code }))
            .await
    }

    pub async fn totp_authenticate(&self, token: &str, code: &str) -> Reply {
        self.post_with(
            "/user/2fa/totp/authenticate",
            token,
            &json!({ "totp": code }),
        )
        .await
    }

    pub async fn totp_next_guess(&self, access: &str) -> Reply {
        self.get_with("/user/2fa/totp/next-guess", access).await
    }

    pub async fn totp_disable(&self, sudo: &str) -> Reply {
        self.delete_with("/user/2fa/totp", sudo).await
    }

    pub async fn recovery_authenticate(&self, token: &str, code: &str) -> Reply {
        self.post_with(
            "/user/2fa/recovery-code/authenticate",
            token,
            &json!({ "recoveryCode": code }),
        )
        .await
    }

    pub async fn recovery_reset(&self, sudo: &str) -> Reply {
        self.post_with("/user/2fa/recovery-code/reset", sudo, &json!({}))
            .await
    }

    pub async fn recovery_next_guess(&self, access: &str) -> Reply {
        self.get_with("/user/2fa/recovery-code/next-guess", access)
            .await
    }

    /// Logs in and returns an access token (for users without 2FA).
    pub async fn login_access(&self, email: &str, password: &str) -> String {
        let refresh = self.login_ok(email, password).await;
        self.access_token(&refresh).await
    }

    /// Waits (polling, up to 10 s) until `to` has received `nth` mails (1-based) on the
    /// default origin, and returns that one.
    pub async fn wait_for_mail_to(&self, to: &str, nth: usize) -> Mail {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut mine: Vec<Mail> = self
                .mails()
                .into_iter()
                .filter(|m| m.to.eq_ignore_ascii_case(to))
                .collect();
            if mine.len() >= nth {
                return mine.swap_remove(nth - 1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{to} did not receive mail #{nth} (has {})",
                mine.len()
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Mails to `to` on the default origin so far.
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.eq_ignore_ascii_case(to))
            .collect()
    }

    /// Sets email OTP up for `address` and enables it with the mailed code (the mail is the
    /// `nth` to that address). Returns the answer of `enable`.
    pub async fn turn_on_email_otp(&self, token: &str, address: &str, nth: usize) -> Reply {
        let res = self.email_otp_setup(token, address, "").await;
        assert_eq!(res.status, 200, "email OTP setup: {}", res.text);
        assert_eq!(res.text, "null");
        let code = self.wait_for_mail_to(address, nth).await.code();
        self.email_otp_enable(token, &code).await
    }

    /// Sets TOTP up with `setup_token` and enables it with `access` and the code pyotp
    /// computes for the previous step (so the current step is still free afterwards).
    /// Returns the URL and the answer of `enable`.
    pub async fn turn_on_totp(&self, setup_token: &str, access: &str) -> (String, Reply) {
        self.wait_for_room_in_step(3);
        let url = self.totp_setup_url(setup_token).await;
        let code = totp_at(&url, self.now_secs() - STEP_SECS);
        let res = self.totp_enable(access, &code).await;
        (url, res)
    }

    /// Runs one SQL statement behind the server's back (both databases) and returns the rows
    /// it changed.
    pub async fn execute_sql(&self, statement: &str) -> usize {
        let statement = statement.to_owned();
        self.store()
            .run(move |c| {
                Ok(diesel::RunQueryDsl::execute(
                    diesel::sql_query(statement.as_str()),
                    c,
                )?)
            })
            .await
            .expect("SQL runs")
    }

    /// Waits (polling, up to 10 s) until the outbox holds no pending mail: every mail queued
    /// so far has been delivered (or given up), so a count of delivered mails is final.
    pub async fn wait_for_outbox_drained(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let pending = self
                .query_texts(
                    "SELECT CAST(COUNT(*) AS TEXT) AS value FROM outbox WHERE status = 'pending'",
                )
                .await;
            if pending == vec![Some("0".to_owned())] {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the outbox still holds pending mail: {pending:?}"
            );
            sleep_ms(20).await;
        }
    }

    /// The text values of the first column of a query, read behind the server's back.
    pub async fn query_texts(&self, query: &str) -> Vec<Option<String>> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            value: Option<String>,
        }
        let query = query.to_owned();
        let rows: Vec<Row> = self
            .store()
            .run(move |c| {
                Ok(diesel::RunQueryDsl::load(
                    diesel::sql_query(query.as_str()),
                    c,
                )?)
            })
            .await
            .expect("SQL query runs");
        rows.into_iter().map(|r| r.value).collect()
    }
}
