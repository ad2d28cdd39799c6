//! The group-committed write path under SIGKILL: a flood of accepted resets, the real binary
//! killed in the middle of it (several times, at different moments), restarted. Every code
//! answered 200 must have its mail in the outbox (an answer comes only after its batch's
//! commit), and once the last process drains the outbox, every mail reaches the SMTP server
//! exactly once, including the mails of requests whose answers the kill swallowed.
//!
//! The SMTP server is down while processes are killed, so no kill can fall between a
//! delivery and its "sent" mark: a duplicate at the end can only come from the write path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authd_tests::smtp::{AuthdProcess, SmtpServer};
use authd_tests::{both_dbs, Db, TestDb};
use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use serde_json::json;

use crate::mail_backends::{ReceivedMail, AUTHD};
use crate::replicas::smtp_replica;

both_dbs!(a_server_killed_during_a_flood_of_resets_loses_no_answered_code_and_mails_each_once);

/// Requests in flight at once during a flood.
const CLIENTS: usize = 32;
/// A round ends with SIGKILL once this many sends were answered 200: different moments of
/// the flood, from its first batches on.
const KILL_AFTER: [usize; 4] = [5, 60, 200, 25];
const USERS: usize = 4000;

fn email(i: usize) -> String {
    format!("crash{i}@example.org")
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs `sql` on the test's database, and the count query `count` after it.
fn sql(db: &TestDb, statements: &str, count: &str) -> i64 {
    let rows: Vec<Count> = match db.url.strip_prefix("sqlite://") {
        Some(path) => {
            let mut c = SqliteConnection::establish(path).expect("sqlite opens");
            c.batch_execute("PRAGMA busy_timeout = 10000").unwrap();
            c.batch_execute(statements).unwrap();
            diesel::sql_query(count).load(&mut c).unwrap()
        }
        None => {
            let mut c = PgConnection::establish(&db.url).expect("postgres connects");
            c.batch_execute(statements).unwrap();
            diesel::sql_query(count).load(&mut c).unwrap()
        }
    };
    rows[0].n
}

fn seed_users(db: &TestDb) {
    // The reset path never checks the hash.
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2c4D6pJ0hL2v1rP9C6sY0mIuM3QdX9Xl5m3b5A9dQ3Q";
    let values: Vec<String> = (0..USERS)
        .map(|i| {
            format!(
                "('{}', '{hash}', false, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                email(i)
            )
        })
        .collect();
    let n = sql(
        db,
        &format!(
            "INSERT INTO users (email, password_hash, disabled, created_at, updated_at) VALUES {}",
            values.join(", ")
        ),
        "SELECT count(*) AS n FROM users",
    );
    assert_eq!(n, USERS as i64);
}

/// Floods `server` with sends to fresh addresses from `next` on, and kills it once
/// `kill_after` of them were answered 200. Returns the addresses answered 200.
async fn flood_then_kill(
    server: &mut AuthdProcess,
    next: &Arc<AtomicUsize>,
    kill_after: usize,
) -> Vec<String> {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let dead = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let url = server.url("/user/password/reset/send");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            let (accepted, dead) = (accepted.clone(), dead.clone());
            actix_rt::spawn(async move {
                while !dead.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    assert!(i < USERS, "the flood used up the seeded users");
                    let to = email(i);
                    let sent = client.post(&url).json(&json!({ "email": to })).send().await;
                    match sent {
                        Ok(res) if res.status() == 200 => accepted.lock().unwrap().push(to),
                        Ok(res) => {
                            let status = res.status();
                            let body = res.text().await.unwrap_or_default();
                            panic!("send for {to} answered {status} before the kill: {body}");
                        }
                        // The connection died with the server: the answer is lost, and the
                        // mail may or may not be stored.
                        Err(_) => assert!(dead.load(Ordering::SeqCst), "an error before the kill"),
                    }
                }
            })
        })
        .collect();
    while accepted.lock().unwrap().len() < kill_after {
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
    dead.store(true, Ordering::SeqCst);
    server.kill();
    for c in clients {
        c.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    accepted
}

async fn a_server_killed_during_a_flood_of_resets_loses_no_answered_code_and_mails_each_once(
    db: Db,
) {
    let db = TestDb::create(db);
    let mut smtp = SmtpServer::start();
    let port = smtp.port().to_string();
    let settings = smtp_replica(
        &port,
        &[
            ("AUTHD__MAIL__LEASE_SECS", "4"),
            ("AUTHD__MAIL__SEND_TIMEOUT_SECS", "2"),
        ],
    );
    smtp.stop();

    let next = Arc::new(AtomicUsize::new(0));
    let mut answered: Vec<String> = Vec::new();
    for (round, kill_after) in KILL_AFTER.into_iter().enumerate() {
        let mut server = AuthdProcess::start(AUTHD, &db.url, &settings);
        if round == 0 {
            seed_users(&db);
        }
        let accepted = flood_then_kill(&mut server, &next, kill_after).await;
        // Nothing answered is lost: each 200 is in the outbox the moment it is answered, so
        // it is there after the kill.
        let rows = sql(&db, "SELECT 1", "SELECT count(*) AS n FROM outbox");
        answered.extend(accepted);
        assert!(
            rows >= answered.len() as i64,
            "round {round}: {rows} outbox rows for {} sends answered 200",
            answered.len()
        );
    }
    let tried = next.load(Ordering::SeqCst);
    let rows = sql(&db, "SELECT 1", "SELECT count(*) AS n FROM outbox");

    // The SMTP server returns, and one last process drains the outbox (the killed ones'
    // leases run out first).
    smtp.restart();
    let server = AuthdProcess::start(AUTHD, &db.url, &settings);
    let messages = smtp.wait_for(rows as usize, Duration::from_secs(60));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sql(
        &db,
        "SELECT 1",
        "SELECT count(*) AS n FROM outbox WHERE status <> 'sent'",
    ) > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox did not drain: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    smtp.assert_count_stays(rows as usize, Duration::from_secs(1));

    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    for raw in &messages {
        let mail = ReceivedMail::parse(raw);
        mail.assert_reset_mail_for(&mail.rcpt_to.clone());
        *per_recipient.entry(mail.rcpt_to).or_insert(0) += 1;
    }
    let twice: Vec<_> = per_recipient.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "mailed more than once: {twice:?}");
    let mailed: BTreeSet<&String> = per_recipient.keys().collect();
    let lost: Vec<_> = answered.iter().filter(|e| !mailed.contains(e)).collect();
    assert!(lost.is_empty(), "answered 200 but never mailed: {lost:?}");
    // Every stored mail went out once; the requests cut off by a kill make up the rest.
    assert_eq!(messages.len() as i64, rows);
    assert!(messages.len() <= tried);
}
