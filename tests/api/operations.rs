//! The operations test: a real Prometheus server (Debian's `prometheus` package) scrapes two
//! real authd replicas on one PostgreSQL database every second, with the project's own alert
//! rules loaded, while the replicas send mail through a real SMTP server (aiosmtpd). Every
//! assertion goes through Prometheus' HTTP API, as an operator's tooling would see it:
//!
//! - every expression of the Grafana dashboard returns data (no typo in a metric name survives);
//! - a burst of throttled calls fires `AuthdThrottleSurge`;
//! - stopping the SMTP server fires `AuthdMailDeliveryFailing`, `AuthdMailOutboxGrowing` and
//!   `AuthdMailOutboxBacklog`; starting it again resolves them, and every mail queued during
//!   the outage arrives exactly once;
//! - killing one replica fires `AuthdReplicaDown` for it, not `AuthdAllReplicasDown`, while the
//!   other keeps answering.
//!
//! The rules are `deploy/prometheus/alerts.yml` with every duration divided by [`SCALE`]
//! (`for: 15m` becomes `for: 7500ms`, `[10m]` becomes `[5s]`) and nothing else changed: the
//! expressions, thresholds and labels are the shipped ones, and the test is about how they
//! react to real metrics, not about waiting a quarter of an hour. This test is about real
//! time passing across processes (scrapes, rule evaluations, retries), so it waits for real.
//! PostgreSQL only: several replicas on one database is the production shape; SQLite is one
//! process's embedded default.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authd_tests::smtp::{create_user, AuthdProcess, SmtpServer};
use authd_tests::{Db, TestDb};
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{json, Value};

use crate::mail_backends::{ReceivedMail, AUTHD, PASSWORD};
use crate::replicas::smtp_replica;

/// Durations in the shipped rules are divided by this much.
const SCALE: u64 = 120;
/// How long an alert may take to reach the state a step waits for. Generous: the suite runs
/// many processes at once on two cores.
const ALERT_WAIT: Duration = Duration::from_secs(90);
const SEND: &str = "/user/password/reset/send";
/// Mails queued while the SMTP server is away: more than AuthdMailOutboxBacklog's 100.
const OUTAGE_MAILS: usize = 110;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_path_buf()
}

/// A duration of the rules (`90s`, `15m`, `1h`) in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(n * per)
}

/// The rules with every `for:` and every range selector divided by `scale`; panics when a
/// duration is in a form it does not know, so nothing is silently left at full length.
fn time_scaled(rules: &str, scale: u64) -> String {
    let scaled = |d: &str| -> String {
        let ms = duration_ms(d).unwrap_or_else(|| panic!("unknown duration {d:?} in alerts.yml"));
        format!("{}ms", (ms / scale).max(1))
    };
    let mut out = String::with_capacity(rules.len());
    let mut changed = 0;
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if let Some(value) = trimmed.strip_prefix("for: ") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: {}\n", scaled(value.trim())));
            changed += 1;
            continue;
        }
        // Range selectors: `[10m]`. The rules hold no other square brackets outside strings
        // that end in a duration unit.
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            let Some(close) = rest[open..].find(']') else {
                break;
            };
            let inner = &rest[open + 1..open + close];
            out.push_str(&rest[..=open]);
            match duration_ms(inner) {
                Some(_) => {
                    out.push_str(&scaled(inner));
                    changed += 1;
                }
                None => out.push_str(inner),
            }
            out.push(']');
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    assert!(
        changed > 20,
        "only {changed} durations scaled in alerts.yml"
    );
    out
}

#[test]
fn time_scaling_divides_every_for_and_range_and_nothing_else() {
    let rules = "      - alert: X\n        expr: rate(a{b=\"c\"}[10m]) > 0 and delta(d[30m]) > 0\n        for: 15m\n        annotations:\n          summary: \"{{ $labels.x }} [not a range]\"\n";
    let rules = rules.repeat(11);
    let scaled = time_scaled(&rules, 120);
    assert!(scaled.contains("rate(a{b=\"c\"}[5000ms]) > 0 and delta(d[15000ms]) > 0"));
    assert!(scaled.contains("        for: 7500ms\n"));
    assert!(scaled.contains("[not a range]"));
    assert_eq!(duration_ms("2m"), Some(120_000));
    assert_eq!(duration_ms("5x"), None);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The real Prometheus server, scraping the given metrics ports every second as job "authd".
struct Prometheus {
    child: Child,
    port: u16,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(metrics_ports: &[u16], rules: &str) -> Self {
        let program = which("prometheus").unwrap_or_else(|| {
            panic!("the prometheus server is missing: apt-get install prometheus (scripts/ensure-services does)")
        });
        let dir = tempfile::tempdir().expect("folder of prometheus");
        std::fs::write(dir.path().join("alerts.yml"), rules).expect("write the rules");
        let targets: Vec<String> = metrics_ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: authd\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write the config");
        // The port is picked free and handed over; a clash with another test shows as a
        // start-up failure below, not as a wrong answer.
        let port = free_port();
        let mut child = Command::new(program)
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prometheus");
        let stderr = child.stderr.take().expect("stderr of prometheus");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = String::new();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.push_str(&line);
                log.push('\n');
                if line.contains("Server is ready to receive web requests") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                if line.contains("level=error") || line.contains("level=ERROR") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Err(log.clone()));
                    }
                }
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(Err(log));
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => {
                let _ = child.kill();
                panic!("prometheus did not start:\n{log}");
            }
            Err(_) => {
                let _ = child.kill();
                panic!("prometheus was not ready within 60 s");
            }
        }
        Self {
            child,
            port,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let res = self
            .client
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} reaches prometheus: {e}"));
        let body: Value = res.json().await.expect("prometheus answers JSON");
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        match data["resultType"].as_str() {
            Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
            Some("scalar") => vec![data["result"].clone()],
            other => panic!("{expr}: unexpected result type {other:?}: {data}"),
        }
    }

    /// Active alerts (pending or firing) as (name, state, labels).
    async fn alerts(&self) -> Vec<(String, String, Value)> {
        let data = self.api("/api/v1/alerts", &[]).await;
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    a["state"].as_str().unwrap_or_default().to_owned(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }

    async fn firing(&self, name: &str) -> Vec<Value> {
        self.alerts()
            .await
            .into_iter()
            .filter(|(n, state, _)| n == name && state == "firing")
            .map(|(_, _, labels)| labels)
            .collect()
    }

    /// Waits until `name` fires (and `also` holds of its labels); returns how long it took.
    async fn wait_firing(&self, name: &str, also: impl Fn(&Value) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if self.firing(name).await.iter().any(&also) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < ALERT_WAIT,
                "{name} did not fire within {ALERT_WAIT:?}; active alerts: {:?}",
                self.alerts().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until `name` is neither pending nor firing; returns how long it took.
    async fn wait_resolved(&self, name: &str) -> Duration {
        let start = Instant::now();
        loop {
            if !self.alerts().await.iter().any(|(n, _, _)| n == name) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < ALERT_WAIT,
                "{name} did not resolve within {ALERT_WAIT:?}; active alerts: {:?}",
                self.alerts().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Every `expr` of the Grafana dashboard, panels nested in rows included, with its variables
/// set as an operator's default view sets them.
fn dashboard_exprs() -> Vec<(String, String)> {
    let path = repo_root().join("deploy/grafana/authd.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a target of panel {title:?} has no expr"));
                let expr = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$instance", ".*")
                    .replace("$job", "authd");
                assert!(
                    !expr.contains('$'),
                    "panel {title:?} uses a variable the test does not know: {expr}"
                );
                out.push((title.clone(), expr));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Users `prefix0@example.org`… with the test password: one made through the CLI, the rest
/// copied from it in SQL (the CLI hashes each password, which takes a while for a hundred).
fn users(db: &TestDb, prefix: &str, n: usize) -> Vec<String> {
    let seed = format!("{prefix}0@example.org");
    create_user(AUTHD, &db.url, &seed, PASSWORD);
    let mut conn = PgConnection::establish(&db.url).expect("test connects to its database");
    diesel::sql_query(format!(
        "INSERT INTO users (email, password_hash, disabled, created_at, updated_at) \
         SELECT '{prefix}' || g || '@example.org', password_hash, false, now(), now() \
         FROM users, generate_series(1, {}) AS g WHERE email = '{seed}'",
        n - 1
    ))
    .execute(&mut conn)
    .expect("copy the seed user");
    (0..n).map(|i| format!("{prefix}{i}@example.org")).collect()
}

fn per_recipient(messages: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for raw in messages {
        let mail = ReceivedMail::parse(raw);
        *counts.entry(mail.rcpt_to).or_insert(0) += 1;
    }
    counts
}

/// What the test saw, for the log: step, seconds since the start.
struct Timeline {
    start: Instant,
    events: Vec<(String, f64)>,
}

impl Timeline {
    fn mark(&mut self, what: impl Into<String>) {
        let what = what.into();
        let at = self.start.elapsed().as_secs_f64();
        eprintln!("operations: {at:7.1} s  {what}");
        self.events.push((what, at));
    }
}

#[actix_web::test]
async fn prometheus_sees_the_dashboard_and_the_alerts_fire_and_resolve_on_real_failures() {
    let db = TestDb::create(Db::Postgres);
    let mut timeline = Timeline {
        start: Instant::now(),
        events: Vec::new(),
    };
    let outage_users = users(&db, "queued", OUTAGE_MAILS);
    create_user(AUTHD, &db.url, "ann@example.org", PASSWORD);
    let mut smtp = SmtpServer::start();
    let port = smtp.port().to_string();
    let settings = smtp_replica(&port, &[]);
    let a = AuthdProcess::start(AUTHD, &db.url, &settings);
    let mut b = AuthdProcess::start(AUTHD, &db.url, &settings);
    let replicas = [&a, &b];
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml"))
        .expect("read alerts.yml");
    let prometheus = Prometheus::start(
        &[a.metrics_port(), b.metrics_port()],
        &time_scaled(&rules, SCALE),
    );
    timeline.mark("two replicas, SMTP server and Prometheus started");

    // Both targets scraped.
    let start = Instant::now();
    while prometheus.query("up{job=\"authd\"} == 1").await.len() < 2 {
        assert!(
            start.elapsed() < ALERT_WAIT,
            "Prometheus never scraped both replicas"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    timeline.mark("both replicas scraped (up == 1)");

    // Ordinary traffic on both replicas: logins that work and fail, a reset with its mail, a
    // wrong code, and then a burst of sends for one address, which the reset throttle refuses.
    for (i, replica) in replicas.iter().cycle().take(6).enumerate() {
        let password = if i % 2 == 0 { PASSWORD } else { "Wrong1horse" };
        let reply = replica
            .post_json(
                "/auth/login",
                &json!({ "username": "ann@example.org", "password": password }),
            )
            .await;
        assert_eq!(
            reply.status,
            if i % 2 == 0 { 200 } else { 401 },
            "{}",
            reply.text
        );
    }
    let reply = a
        .post_json(SEND, &json!({ "email": "ann@example.org" }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = b
        .post_json(
            "/user/password/reset/validate",
            &json!({ "email": "ann@example.org", "otp": "000000" }),
        )
        .await;
    assert!(reply.status.as_u16() >= 400, "a wrong code: {}", reply.text);
    smtp.wait_for_async(1, Duration::from_secs(20)).await;
    let burst = Instant::now();
    let mut throttled = 0;
    while burst.elapsed() < Duration::from_secs(12) {
        for replica in replicas {
            let reply = replica
                .post_json(SEND, &json!({ "email": "ann@example.org" }))
                .await;
            if reply.status == 429 {
                throttled += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(throttled > 40, "only {throttled} sends were throttled");
    timeline.mark(format!("traffic sent; {throttled} throttled sends in 12 s"));
    let took = prometheus
        .wait_firing("AuthdThrottleSurge", |l| l["limit"].is_string())
        .await;
    timeline.mark(format!(
        "AuthdThrottleSurge firing ({:.1} s after the burst ended)",
        took.as_secs_f64()
    ));

    // Every dashboard expression has data now.
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() > 20,
        "only {} dashboard expressions",
        exprs.len()
    );
    let mut empty = Vec::new();
    for (panel, expr) in &exprs {
        if prometheus.query(expr).await.is_empty() {
            empty.push(format!("{panel}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard expressions without data:\n{}",
        empty.join("\n")
    );
    timeline.mark(format!(
        "all {} dashboard expressions return data",
        exprs.len()
    ));

    // Normal traffic so far, the replicas up: none of the alerts this test drives is active.
    let quiet = [
        "AuthdMailDeliveryFailing",
        "AuthdMailOutboxGrowing",
        "AuthdMailOutboxBacklog",
        "AuthdMailDead",
        "AuthdReplicaDown",
        "AuthdAllReplicasDown",
        "AuthdHighErrorRate",
        "AuthdPanics",
    ];
    let active = prometheus.alerts().await;
    for name in quiet {
        assert!(
            !active.iter().any(|(n, _, _)| n == name),
            "{name} is active on normal traffic: {active:?}"
        );
    }

    // The SMTP server goes away while resets keep coming in.
    let mail_alerts = [
        "AuthdMailDeliveryFailing",
        "AuthdMailOutboxGrowing",
        "AuthdMailOutboxBacklog",
    ];
    let mut fired: Vec<&str> = Vec::new();
    smtp.stop();
    timeline.mark("SMTP server stopped");
    for (i, email) in outage_users.iter().enumerate() {
        let reply = replicas[i % 2]
            .post_json(SEND, &json!({ "email": email }))
            .await;
        assert_eq!(
            reply.status, 200,
            "send for {email} during the outage: {}",
            reply.text
        );
        // About 30 s of sends: the backlog keeps growing scrape after scrape.
        tokio::time::sleep(Duration::from_millis(270)).await;
        for name in mail_alerts {
            if !fired.contains(&name) && !prometheus.firing(name).await.is_empty() {
                fired.push(name);
                timeline.mark(format!("{name} firing ({} mails queued so far)", i + 1));
            }
        }
    }
    timeline.mark(format!("{OUTAGE_MAILS} resets accepted during the outage"));
    for name in mail_alerts {
        if !fired.contains(&name) {
            prometheus.wait_firing(name, |_| true).await;
            timeline.mark(format!("{name} firing"));
        }
    }
    assert!(
        smtp.messages().len() == 1,
        "nothing is delivered during the outage"
    );

    smtp.restart();
    timeline.mark("SMTP server back");
    let messages = smtp
        .wait_for_async(1 + OUTAGE_MAILS, Duration::from_secs(60))
        .await;
    timeline.mark(format!("{} mails received", messages.len()));
    for name in [
        "AuthdMailOutboxBacklog",
        "AuthdMailOutboxGrowing",
        "AuthdMailDeliveryFailing",
    ] {
        prometheus.wait_resolved(name).await;
        timeline.mark(format!("{name} resolved"));
    }
    smtp.assert_count_stays(1 + OUTAGE_MAILS, Duration::from_secs(2));
    let mut expected: BTreeMap<String, usize> =
        outage_users.iter().map(|e| (e.clone(), 1)).collect();
    expected.insert("ann@example.org".to_owned(), 1);
    assert_eq!(
        per_recipient(&smtp.messages()),
        expected,
        "every mail exactly once"
    );
    let dead = prometheus
        .query("max(auth_mail_outbox_dead{job=\"authd\"})")
        .await;
    assert_eq!(dead[0]["value"][1], "0", "no mail died: {dead:?}");

    // One replica dies; the other goes on.
    let victim = format!("127.0.0.1:{}", b.metrics_port());
    b.kill();
    timeline.mark("replica b killed");
    prometheus
        .wait_firing("AuthdReplicaDown", |l| l["instance"] == victim.as_str())
        .await;
    timeline.mark("AuthdReplicaDown firing for replica b");
    let survivor = format!("127.0.0.1:{}", a.metrics_port());
    assert!(
        !prometheus
            .firing("AuthdReplicaDown")
            .await
            .iter()
            .any(|l| l["instance"] == survivor.as_str()),
        "the live replica is not reported down"
    );
    assert!(
        !prometheus
            .alerts()
            .await
            .iter()
            .any(|(n, _, _)| n == "AuthdAllReplicasDown"),
        "one replica is still up"
    );
    assert_eq!(a.get("/readyz").await.status, 200);
    let reply = a
        .post_json(SEND, &json!({ "email": "nobody@example.org" }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    timeline.mark("replica a still answers");
    eprintln!(
        "operations: timeline {:?}",
        timeline
            .events
            .iter()
            .map(|(w, t)| format!("{t:.1}s {w}"))
            .collect::<Vec<_>>()
    );
}
