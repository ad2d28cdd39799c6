//! Several real `authd` processes on one database, as in production: the reset throttle and
//! the mail outbox hold across replicas, restarts, crashes and an SMTP server that goes away.
//! Every process is the real binary; the SMTP server is a real aiosmtpd.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use authd_tests::smtp::{create_user, AuthdProcess, SmtpServer};
use authd_tests::{both_dbs, Db, Reply, TestDb};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use futures_util::future::join_all;
use serde_json::json;

use crate::mail_backends::{ReceivedMail, AUTHD, PASSWORD};

const SEND: &str = "/user/password/reset/send";
/// How long a queued mail may take to arrive once the SMTP server answers.
const DELIVERY: Duration = Duration::from_secs(20);

/// A replica that sends through the SMTP server on `port` and retries fast: 100 ms polls,
/// backoff from 100 ms up to 1 s, and so many attempts that no mail dies during a test.
pub(crate) fn smtp_replica<'a>(
    port: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut settings = vec![
        ("AUTHD__ORIGINS__DEFAULT__BACKEND", "smtp"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__HOST", "127.0.0.1"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__PORT", port),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__TLS", "none"),
        ("AUTHD__ORIGINS__DEFAULT__SMTP__TIMEOUT_SECS", "5"),
        ("AUTHD__MAIL__POLL_INTERVAL_MS", "100"),
        ("AUTHD__MAIL__BACKOFF_INITIAL_MS", "100"),
        ("AUTHD__MAIL__BACKOFF_MAX_SECS", "1"),
        ("AUTHD__MAIL__MAX_ATTEMPTS", "1000"),
        ("AUTHD__MAIL__SEND_TIMEOUT_SECS", "10"),
    ];
    settings.extend_from_slice(extra);
    settings
}

async fn send(replica: &AuthdProcess, email: &str) -> Reply {
    replica.post_json(SEND, &json!({ "email": email })).await
}

fn assert_accepted(reply: &Reply, email: &str) {
    assert_eq!(reply.status, 200, "send for {email}: {}", reply.text);
    assert_eq!(reply.text, "null", "send for {email}");
}

/// One outbox row, as a test reads it straight from PostgreSQL.
#[derive(Debug, QueryableByName)]
struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    recipient_masked: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<BigInt>)]
    lease_until_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    leased_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
}

fn outbox(db: &TestDb) -> Vec<OutboxRow> {
    let mut conn = PgConnection::establish(&db.url).expect("test connects to its database");
    diesel::sql_query(
        "SELECT id, recipient_masked, status, attempts, lease_until_ms, leased_by, last_error FROM outbox ORDER BY id",
    )
    .load(&mut conn)
    .expect("read the outbox")
}

/// Polls the outbox until `done` holds; fails with the rows after `timeout`.
fn wait_outbox(
    db: &TestDb,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[OutboxRow]) -> bool,
) -> Vec<OutboxRow> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = outbox(db);
        if done(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not reach \"{what}\" within {timeout:?}: {rows:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn all_sent(n: usize) -> impl Fn(&[OutboxRow]) -> bool {
    move |rows| rows.len() == n && rows.iter().all(|r| r.status == "sent")
}

/// Parses every message and counts them per envelope recipient, checking each is a reset mail
/// for its recipient.
fn per_recipient(messages: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for raw in messages {
        let mail = ReceivedMail::parse(raw);
        mail.assert_reset_mail_for(&mail.rcpt_to.clone());
        *counts.entry(mail.rcpt_to).or_insert(0) += 1;
    }
    counts
}

fn once_each(emails: &[String]) -> BTreeMap<String, usize> {
    emails.iter().map(|e| (e.clone(), 1)).collect()
}

fn users(db: &TestDb, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let email = format!("{prefix}{i}@example.org");
            create_user(AUTHD, &db.url, &email, PASSWORD);
            email
        })
        .collect()
}

#[actix_web::test]
async fn two_replicas_on_one_database_let_one_of_twenty_parallel_sends_through_and_mail_once() {
    let db = TestDb::create(Db::Postgres);
    create_user(AUTHD, &db.url, "ann@example.org", PASSWORD);
    let smtp = SmtpServer::start();
    let port = smtp.port().to_string();
    let settings = smtp_replica(&port, &[]);
    let replicas = [
        AuthdProcess::start(AUTHD, &db.url, &settings),
        AuthdProcess::start(AUTHD, &db.url, &settings),
    ];

    let replies = join_all((0..20).map(|i| send(&replicas[i % 2], "ann@example.org"))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "exactly one send is granted: {statuses:?}"
    );
    for reply in replies.iter().filter(|r| r.status != 200) {
        reply.assert_error(429, "TOO_MANY_RESET_MAIL_ATTEMPTS");
    }

    let messages = smtp.wait_for(1, DELIVERY);
    wait_outbox(&db, "one mail, sent", DELIVERY, all_sent(1));
    smtp.assert_count_stays(1, Duration::from_secs(1));
    assert_eq!(
        per_recipient(&messages),
        once_each(&["ann@example.org".into()])
    );
}

#[actix_web::test]
async fn replicas_accept_sends_while_the_smtp_server_is_down_and_deliver_each_mail_once_when_it_is_back(
) {
    let db = TestDb::create(Db::Postgres);
    let early = users(&db, "early", 4);
    let late = users(&db, "late", 4);
    let mut smtp = SmtpServer::start();
    let port = smtp.port().to_string();
    let settings = smtp_replica(&port, &[]);
    let mut replicas = [
        AuthdProcess::start(AUTHD, &db.url, &settings),
        AuthdProcess::start(AUTHD, &db.url, &settings),
    ];
    smtp.stop();

    let replies = join_all(
        early
            .iter()
            .enumerate()
            .map(|(i, e)| send(&replicas[i % 2], e)),
    )
    .await;
    for (reply, email) in replies.iter().zip(&early) {
        assert_accepted(reply, email);
    }
    // The replicas try, fail and keep the mails queued for a retry.
    wait_outbox(&db, "4 mails tried and queued again", DELIVERY, |rows| {
        rows.len() == 4
            && rows
                .iter()
                .all(|r| r.status == "pending" && r.attempts >= 1 && r.last_error.is_some())
    });
    // While their deliveries fail, both replicas still accept sends.
    let replies = join_all(
        late.iter()
            .enumerate()
            .map(|(i, e)| send(&replicas[i % 2], e)),
    )
    .await;
    for (reply, email) in replies.iter().zip(&late) {
        assert_accepted(reply, email);
    }
    wait_outbox(&db, "8 mails tried and queued again", DELIVERY, |rows| {
        rows.len() == 8
            && rows
                .iter()
                .all(|r| r.status == "pending" && r.attempts >= 1 && r.last_error.is_some())
    });
    assert!(smtp.messages().is_empty());

    smtp.restart();
    let back = Instant::now();
    let messages = smtp.wait_for(8, DELIVERY);
    wait_outbox(&db, "8 mails sent", DELIVERY, all_sent(8));
    let took = back.elapsed();
    smtp.assert_count_stays(8, Duration::from_secs(1));
    let everyone: Vec<String> = early.iter().chain(&late).cloned().collect();
    assert_eq!(per_recipient(&smtp.messages()), once_each(&everyone));
    assert_eq!(messages.len(), 8);
    // Backoff is capped at 1 s: the queue drains within a few rounds of the server's return.
    assert!(took < Duration::from_secs(10), "delivery took {took:?}");

    for replica in &mut replicas {
        let status = replica.terminate(Duration::from_secs(10));
        assert!(status.success(), "SIGTERM ends a replica with 0: {status}");
    }
}

both_dbs!(a_restarted_server_still_refuses_a_second_send_inside_the_throttle_window);

async fn a_restarted_server_still_refuses_a_second_send_inside_the_throttle_window(db: Db) {
    let db = TestDb::create(db);
    create_user(AUTHD, &db.url, "ann@example.org", PASSWORD);
    create_user(AUTHD, &db.url, "bob@example.org", PASSWORD);
    let settings = [("AUTHD__LIMITS__RESET_MAIL__WINDOW_SECS", "30")];

    let mut first = AuthdProcess::start(AUTHD, &db.url, &settings);
    assert_accepted(&send(&first, "ann@example.org").await, "ann@example.org");
    send(&first, "ann@example.org")
        .await
        .assert_error(429, "TOO_MANY_RESET_MAIL_ATTEMPTS");
    first.kill();

    let second = AuthdProcess::start(AUTHD, &db.url, &settings);
    let reply = send(&second, "ann@example.org").await;
    reply.assert_error(429, "TOO_MANY_RESET_MAIL_ATTEMPTS");
    let retry_after = reply.json()["retryAfter"].as_u64().unwrap();
    assert!(
        (1..=30).contains(&retry_after),
        "retryAfter counts down the 30 s window begun before the restart: {retry_after}"
    );
    let header: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(header, retry_after);
    // The new process is not refusing everything: another address gets its mail.
    assert_accepted(&send(&second, "bob@example.org").await, "bob@example.org");
}

#[actix_web::test]
async fn mails_claimed_by_a_killed_replica_are_delivered_once_by_the_other_after_the_lease() {
    let db = TestDb::create(Db::Postgres);
    // Distinct first letters: the outbox keeps only a masked recipient (`a***@example.org`).
    let emails: Vec<String> = ["ann", "bob", "cy", "dee"]
        .iter()
        .map(|name| {
            let email = format!("{name}@example.org");
            create_user(AUTHD, &db.url, &email, PASSWORD);
            email
        })
        .collect();
    let email_of = |masked: &str| {
        emails
            .iter()
            .find(|e| e[..1] == masked[..1])
            .cloned()
            .unwrap_or_else(|| panic!("no user for {masked}"))
    };
    let mut smtp = SmtpServer::start();
    let port = smtp.port().to_string();
    // A 6 s lease and a 3 s send timeout (the lease must be at least twice it): the first
    // replica is killed while its sends still hang on the silent server, so what it claimed
    // stays claimed until the lease runs out.
    let settings = smtp_replica(
        &port,
        &[
            ("AUTHD__MAIL__LEASE_SECS", "6"),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__TIMEOUT_SECS", "60"),
            ("AUTHD__MAIL__SEND_TIMEOUT_SECS", "3"),
        ],
    );
    // A server that accepts connections and never answers.
    smtp.pause();
    let mut doomed = AuthdProcess::start(AUTHD, &db.url, &settings);
    for email in &emails {
        assert_accepted(&send(&doomed, email).await, email);
    }
    let rows = wait_outbox(&db, "4 mails, some claimed", DELIVERY, |rows| {
        rows.len() == 4 && rows.iter().any(|r| r.leased_by.is_some())
    });
    let doomed_worker = rows.iter().find_map(|r| r.leased_by.clone()).unwrap();
    // What the first replica holds: its round is stuck on the silent server, so it claims
    // nothing more before it dies.
    let held: Vec<OutboxRow> = rows
        .into_iter()
        .filter(|r| r.leased_by.as_deref() == Some(doomed_worker.as_str()))
        .collect();
    doomed.kill();
    let lease_until_ms = held.iter().filter_map(|r| r.lease_until_ms).min().unwrap();
    let held_emails: Vec<String> = held.iter().map(|r| email_of(&r.recipient_masked)).collect();
    let survivor = AuthdProcess::start(AUTHD, &db.url, &settings);
    smtp.resume();

    // The held mails cannot arrive before the dead replica's lease has run out; the others
    // may.
    while now_ms() < lease_until_ms - 200 {
        let arrived = per_recipient(&smtp.messages());
        for email in &held_emails {
            assert!(
                !arrived.contains_key(email),
                "the mail for {email} arrived while the dead replica's lease still held it"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    smtp.wait_for(4, DELIVERY);
    let rows = wait_outbox(&db, "4 mails sent", DELIVERY, all_sent(4));
    smtp.assert_count_stays(4, Duration::from_secs(1));
    assert_eq!(per_recipient(&smtp.messages()), once_each(&emails));
    for row in &rows {
        assert_ne!(
            row.leased_by.as_deref(),
            Some(doomed_worker.as_str()),
            "mail {} was delivered by the surviving replica",
            row.id
        );
    }
    for row in rows.iter().filter(|r| held.iter().any(|h| h.id == r.id)) {
        assert_eq!(row.attempts, 2, "claimed once by each replica: {row:?}");
    }
    drop(survivor);
}

/// With a relay slow enough that one process needs many leases' worth of time for the whole
/// queue, two replicas still send each mail once: a claim is never older than its lease.
#[actix_web::test]
async fn two_replicas_draining_a_queue_through_a_slow_relay_send_each_mail_once() {
    let db = TestDb::create(Db::Postgres);
    let emails = users(&db, "slow", 6);
    let smtp = SmtpServer::start_slow(1000);
    let port = smtp.port().to_string();
    // Queue the mails while no replica can send (the relay port is wrong), then let two
    // replicas with a 4 s lease drain 6 mails at 1 s each, one at a time.
    let filler_settings = smtp_replica(
        "1",
        &[
            ("AUTHD__MAIL__LEASE_SECS", "4"),
            ("AUTHD__MAIL__SEND_TIMEOUT_SECS", "2"),
        ],
    );
    let filler = AuthdProcess::start(AUTHD, &db.url, &filler_settings);
    for email in &emails {
        assert_accepted(&send(&filler, email).await, email);
    }
    drop(filler);
    let settings = smtp_replica(
        &port,
        &[
            ("AUTHD__MAIL__LEASE_SECS", "4"),
            ("AUTHD__MAIL__SEND_TIMEOUT_SECS", "2"),
            ("AUTHD__ORIGINS__DEFAULT__SMTP__TIMEOUT_SECS", "2"),
            ("AUTHD__MAIL__CONCURRENCY", "1"),
        ],
    );
    let a = AuthdProcess::start(AUTHD, &db.url, &settings);
    let b = AuthdProcess::start(AUTHD, &db.url, &settings);
    smtp.wait_for(6, DELIVERY);
    wait_outbox(&db, "6 mails sent", DELIVERY, all_sent(6));
    smtp.assert_count_stays(6, Duration::from_secs(2));
    assert_eq!(per_recipient(&smtp.messages()), once_each(&emails));
    assert!(!a.log().contains("lease was taken over") && !b.log().contains("lease was taken over"));
}

/// Replicas started together on an empty database take turns migrating it.
#[actix_web::test]
async fn three_replicas_started_at_once_on_a_fresh_database_all_serve() {
    let db = TestDb::create(Db::Postgres);
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || AuthdProcess::start(AUTHD, &url, &[]))
        })
        .collect();
    let replicas: Vec<AuthdProcess> = starts
        .into_iter()
        .map(|h| h.join().expect("replica starts"))
        .collect();
    for r in &replicas {
        let res = r.get("/readyz").await;
        assert_eq!(res.status, 200, "{}", r.log());
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The password backoff lives in the database: failures counted by one replica block the
/// account on the other, and a restart forgets nothing.
#[actix_web::test]
async fn the_password_backoff_holds_across_two_replicas_and_a_restart() {
    let db = TestDb::create(Db::Postgres);
    create_user(AUTHD, &db.url, "ann@example.org", PASSWORD);
    let settings = [("AUTHD__LIMITS__PASSWORD_BACKOFF__INITIAL_WAIT_SECS", "30")];
    let a = AuthdProcess::start(AUTHD, &db.url, &settings);
    let mut b = AuthdProcess::start(AUTHD, &db.url, &settings);
    let login = |password: &str| json!({ "username": "ann@example.org", "password": password });
    for replica in [&a, &b, &a] {
        replica
            .post_json("/auth/login", &login("Wrong1password"))
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    let res = b.post_json("/auth/login", &login(PASSWORD)).await;
    res.assert_error(429, "TOO_MANY_FAILED_PASSWORD_CHECKS");
    assert!(
        (29..=30).contains(&res.json()["retryAfter"].as_u64().unwrap()),
        "{}",
        res.text
    );
    b.kill();
    let c = AuthdProcess::start(AUTHD, &db.url, &settings);
    c.post_json("/auth/login", &login(PASSWORD))
        .await
        .assert_error(429, "TOO_MANY_FAILED_PASSWORD_CHECKS");
    a.post_json("/auth/login", &login(PASSWORD))
        .await
        .assert_error(429, "TOO_MANY_FAILED_PASSWORD_CHECKS");
}
