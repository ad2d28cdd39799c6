//! Guessing backoffs for TOTP codes and recovery codes: the wait after three failures, its
//! doubling and cap, the reset by a success, `next-guess` reporting exactly the wait a 429
//! reports, and the state surviving a restart (a killed process and a fresh one on the same
//! database).

use authd_tests::smtp::{create_user, AuthdProcess};
use authd_tests::two_factor::{
    assert_429, assert_sudo_only, assert_ten_recovery_codes, call, duration_of, now_secs,
    other_code, sleep_until_room_in_step, totp_at, totp_codes, STEP_SECS,
};
use authd_tests::{both_dbs, Db, Reply, TestApp, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::mail_backends::AUTHD;

const PASSWORD: &str = "Correct1horse";
const ANN: &str = "ann@example.org";

both_dbs!(
    two_factor_backoff_totp_waits_after_three_failures_doubles_resets_and_next_guess_agrees,
    two_factor_backoff_recovery_codes_wait_double_to_the_cap_and_next_guess_agrees,
    two_factor_backoff_state_survives_a_restart,
    two_factor_backoff_parallel_wrong_guesses_all_count_and_never_fail,
);

/// A code that is not valid for the TOTP at `url` around the Unix time `t`.
fn wrong_totp(url: &str, t: i64) -> String {
    other_code(&totp_codes(
        url,
        &[
            t - 2 * STEP_SECS,
            t - STEP_SECS,
            t,
            t + STEP_SECS,
            t + 2 * STEP_SECS,
        ],
    ))
}

const WRONG_RECOVERY: &str = "2222333344445555";

/// Asserts that a `next-guess` duration agrees with a 429's `retryAfter`, read just after it
/// (it may have ticked down by one second).
fn assert_agrees(next: i64, retry_after: i64) {
    assert!(
        next <= retry_after && retry_after - next <= 1,
        "next-guess {next} vs retryAfter {retry_after}"
    );
}

async fn two_factor_backoff_totp_waits_after_three_failures_doubles_resets_and_next_guess_agrees(
    db: Db,
) {
    let app = TestApp::spawn(db).await;
    app.create_user(ANN, PASSWORD).await;
    app.create_user("bob@example.org", PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let (url, res) = app.turn_on_totp(&access, &access).await;
    assert_ten_recovery_codes(&res);
    assert_eq!(duration_of(&app.totp_next_guess(&access).await), 0);

    let wrong = wrong_totp(&url, app.now_secs());
    for _ in 0..3 {
        app.totp_authenticate(&access, &wrong)
            .await
            .assert_error(401, "TOTP_INVALID");
    }
    // Even the right code waits now, with a partial token too.
    let res = app
        .totp_authenticate(&access, &totp_at(&url, app.now_secs()))
        .await;
    let wait = assert_429(&res, "TOO_MANY_TOTP_CHECKS");
    assert_eq!(wait, 2);
    assert_agrees(duration_of(&app.totp_next_guess(&access).await), wait);
    let partial =
        authd_tests::two_factor::assert_two_factor_required(&app.login(ANN, PASSWORD).await)
            .partial;
    assert_429(
        &app.totp_authenticate(&partial, &totp_at(&url, app.now_secs()))
            .await,
        "TOO_MANY_TOTP_CHECKS",
    );
    // Another user is not held up by Ann's failures.
    let bob = app.login_access("bob@example.org", PASSWORD).await;
    app.totp_next_guess(&bob)
        .await
        .assert_error(409, "TOTP_UNINITIALIZED");

    // Once the wait is over, one more failure doubles it.
    app.advance_ms(u64::try_from(wait * 1000 + 50).unwrap());
    assert_eq!(duration_of(&app.totp_next_guess(&access).await), 0);
    app.totp_authenticate(&access, &wrong)
        .await
        .assert_error(401, "TOTP_INVALID");
    let res = app.totp_authenticate(&access, &wrong).await;
    let wait = assert_429(&res, "TOO_MANY_TOTP_CHECKS");
    assert_eq!(wait, 4, "doubled");
    assert_agrees(duration_of(&app.totp_next_guess(&access).await), wait);

    // A success ends the streak: three failures are free again, and the wait starts over.
    app.advance_ms(u64::try_from(wait * 1000 + 50).unwrap());
    assert_sudo_only(
        &app.totp_authenticate(&access, &totp_at(&url, app.now_secs()))
            .await,
    );
    assert_eq!(duration_of(&app.totp_next_guess(&access).await), 0);
    let wrong = wrong_totp(&url, app.now_secs());
    for _ in 0..3 {
        app.totp_authenticate(&access, &wrong)
            .await
            .assert_error(401, "TOTP_INVALID");
    }
    let wait = assert_429(
        &app.totp_authenticate(&access, &wrong).await,
        "TOO_MANY_TOTP_CHECKS",
    );
    assert_eq!(wait, 2, "back to the first wait");
    assert_agrees(duration_of(&app.totp_next_guess(&access).await), wait);
}

async fn two_factor_backoff_recovery_codes_wait_double_to_the_cap_and_next_guess_agrees(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            (
                "AUTHD__LIMITS__RECOVERY_CODE_BACKOFF__INITIAL_WAIT_SECS",
                "1",
            ),
            ("AUTHD__LIMITS__RECOVERY_CODE_BACKOFF__MAX_WAIT_SECS", "2"),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let (_, res) = app.turn_on_totp(&access, &access).await;
    let codes = assert_ten_recovery_codes(&res);
    assert_eq!(duration_of(&app.recovery_next_guess(&access).await), 0);

    // Failures with the access and with a partial token count together, per user.
    let partial =
        authd_tests::two_factor::assert_two_factor_required(&app.login(ANN, PASSWORD).await)
            .partial;
    for token in [&access, &partial, &access] {
        app.recovery_authenticate(token, WRONG_RECOVERY)
            .await
            .assert_error(401, "RECOVERY_CODE_INVALID");
    }
    let wait = assert_429(
        &app.recovery_authenticate(&access, &codes[0]).await,
        "TOO_MANY_RECOVERY_CODE_CHECKS",
    );
    assert_eq!(wait, 1);
    assert_agrees(duration_of(&app.recovery_next_guess(&access).await), wait);

    app.advance_ms(1050);
    app.recovery_authenticate(&access, WRONG_RECOVERY)
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    let wait = assert_429(
        &app.recovery_authenticate(&partial, &codes[0]).await,
        "TOO_MANY_RECOVERY_CODE_CHECKS",
    );
    assert_eq!(wait, 2, "doubled");
    assert_agrees(duration_of(&app.recovery_next_guess(&access).await), wait);

    app.advance_ms(2050);
    app.recovery_authenticate(&access, WRONG_RECOVERY)
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    let wait = assert_429(
        &app.recovery_authenticate(&access, &codes[0]).await,
        "TOO_MANY_RECOVERY_CODE_CHECKS",
    );
    assert_eq!(wait, 2, "capped");
    assert_agrees(duration_of(&app.recovery_next_guess(&access).await), wait);

    // The code refused while waiting was not used up: it works now, and resets the streak.
    app.advance_ms(2050);
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[0]).await);
    assert_eq!(duration_of(&app.recovery_next_guess(&access).await), 0);
    for _ in 0..3 {
        app.recovery_authenticate(&access, WRONG_RECOVERY)
            .await
            .assert_error(401, "RECOVERY_CODE_INVALID");
    }
    let wait = assert_429(
        &app.recovery_authenticate(&access, WRONG_RECOVERY).await,
        "TOO_MANY_RECOVERY_CODE_CHECKS",
    );
    assert_eq!(wait, 1, "back to the first wait");
}

/// A real `authd serve` process, with bearer calls.
struct Server {
    process: AuthdProcess,
    client: reqwest::Client,
}

impl Server {
    fn start(db: &TestDb, overrides: &[(&str, &str)]) -> Self {
        Self {
            process: AuthdProcess::start(AUTHD, &db.url, overrides),
            client: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        call(&self.client, method, &self.process.url(path), token, body).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(&body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }
}

async fn two_factor_backoff_state_survives_a_restart(db: Db) {
    // A long first wait, so that it outlasts the restart.
    let overrides = [
        ("AUTHD__LIMITS__TOTP_BACKOFF__INITIAL_WAIT_SECS", "60"),
        (
            "AUTHD__LIMITS__RECOVERY_CODE_BACKOFF__INITIAL_WAIT_SECS",
            "60",
        ),
    ];
    let db = TestDb::create(db);
    create_user(AUTHD, &db.url, ANN, PASSWORD);
    let mut first = Server::start(&db, &overrides);
    let res = first
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(&json!({ "username": ANN, "password": PASSWORD })),
        )
        .await;
    assert_eq!(res.status, 200, "login: {}", res.text);
    let access = first.get("/auth/accesstoken", &res.text).await;
    assert_eq!(access.status, 200, "{}", access.text);
    let access = access.text;

    // Real time: these servers run in processes of their own, whose clocks a test cannot move.
    sleep_until_room_in_step(5).await;
    let res = first.post("/user/2fa/totp/setup", &access, json!({})).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let url = res.json()["url"].as_str().unwrap().to_owned();
    let code = totp_at(&url, now_secs() - STEP_SECS);
    let codes = assert_ten_recovery_codes(
        &first
            .post("/user/2fa/totp/enable", &access, json!({ "totp": code }))
            .await,
    );

    // TOTP: three failures and the wait on the first process.
    let wrong = wrong_totp(&url, now_secs());
    for _ in 0..3 {
        first
            .post(
                "/user/2fa/totp/authenticate",
                &access,
                json!({ "totp": wrong }),
            )
            .await
            .assert_error(401, "TOTP_INVALID");
    }
    let before = assert_429(
        &first
            .post(
                "/user/2fa/totp/authenticate",
                &access,
                json!({ "totp": wrong }),
            )
            .await,
        "TOO_MANY_TOTP_CHECKS",
    );
    assert_eq!(before, 60);
    // Recovery codes: two failures only, the streak goes on after the restart.
    for _ in 0..2 {
        first
            .post(
                "/user/2fa/recovery-code/authenticate",
                &access,
                json!({ "recoveryCode": WRONG_RECOVERY }),
            )
            .await
            .assert_error(401, "RECOVERY_CODE_INVALID");
    }

    // The process dies without a chance to save anything; a fresh one takes over.
    first.process.kill();
    let second = Server::start(&db, &overrides);

    let next = duration_of(&second.get("/user/2fa/totp/next-guess", &access).await);
    assert!(
        (50..=60).contains(&next),
        "the TOTP wait survived the restart: next-guess {next}"
    );
    let after = assert_429(
        &second
            .post(
                "/user/2fa/totp/authenticate",
                &access,
                json!({ "totp": totp_at(&url, now_secs()) }),
            )
            .await,
        "TOO_MANY_TOTP_CHECKS",
    );
    // Here next-guess was read first: the 429 just after it may be a second lower.
    assert!(
        after <= next && next - after <= 1,
        "retryAfter {after} read after next-guess {next}"
    );

    assert_eq!(
        duration_of(
            &second
                .get("/user/2fa/recovery-code/next-guess", &access)
                .await
        ),
        0
    );
    second
        .post(
            "/user/2fa/recovery-code/authenticate",
            &access,
            json!({ "recoveryCode": WRONG_RECOVERY }),
        )
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    let wait = assert_429(
        &second
            .post(
                "/user/2fa/recovery-code/authenticate",
                &access,
                json!({ "recoveryCode": codes[0] }),
            )
            .await,
        "TOO_MANY_RECOVERY_CODE_CHECKS",
    );
    assert_eq!(
        wait, 60,
        "the third failure counted with the two before the restart"
    );
    assert_agrees(
        duration_of(
            &second
                .get("/user/2fa/recovery-code/next-guess", &access)
                .await,
        ),
        wait,
    );
}

async fn two_factor_backoff_parallel_wrong_guesses_all_count_and_never_fail(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[(
            "AUTHD__LIMITS__RECOVERY_CODE_BACKOFF__INITIAL_WAIT_SECS",
            "60",
        )],
    )
    .await;
    // Several users, so that the first failures of each race each other several times.
    let mut users = Vec::new();
    for i in 0..6 {
        let email = format!("user{i}@example.org");
        app.create_user(&email, PASSWORD).await;
        let access = app.login_access(&email, PASSWORD).await;
        let (_, res) = app.turn_on_totp(&access, &access).await;
        users.push((access, assert_ten_recovery_codes(&res)));
    }
    // Many wrong codes per user at once, before any failure is on record.
    const PER_USER: usize = 16;
    let flood = std::time::Instant::now();
    let replies = futures_util::future::join_all(
        users
            .iter()
            .flat_map(|(access, _)| (0..PER_USER).map(move |_| (access, WRONG_RECOVERY)))
            .map(|(access, code)| app.recovery_authenticate(access, code)),
    )
    .await;
    for (u, (access, codes)) in users.iter().enumerate() {
        let mine = &replies[u * PER_USER..(u + 1) * PER_USER];
        let mut refused = 0;
        for r in mine {
            if r.status == 401 {
                r.assert_error(401, "RECOVERY_CODE_INVALID");
                refused += 1;
            } else {
                assert_429(r, "TOO_MANY_RECOVERY_CODE_CHECKS");
            }
        }
        // Guesses are counted when admitted, so a parallel flood gets exactly the free
        // failures a sequence would, and no more.
        assert_eq!(refused, 3, "exactly the free failures were checked");
        // However they interleaved, the streak is past the free failures now.
        let wait = assert_429(
            &app.recovery_authenticate(access, &codes[0]).await,
            "TOO_MANY_RECOVERY_CODE_CHECKS",
        );
        // The 60 s wait began at the third failure, somewhere in the flood: what is left of it
        // is 60 s less the real time since the flood began (however slow the machine is),
        // and never more than 60 s.
        let since = i64::try_from(flood.elapsed().as_secs()).unwrap();
        assert!(
            wait <= 60 && wait + since + 1 >= 60,
            "retryAfter {wait}, {since} s after the flood began"
        );
        assert_agrees(duration_of(&app.recovery_next_guess(access).await), wait);
    }
}
