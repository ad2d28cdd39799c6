//! `dev.reload_templates`: in development a changed template is used by the next mail without
//! a restart; a broken edit keeps the last good templates, and says so in the log, the
//! metrics and the mailbox page. The waits here are real time: the file watcher and the
//! Mailer run on their own threads. Throttle windows are crossed by moving the clock.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use authd_tests::{both_dbs, metric_value, Db, TestApp};

both_dbs!(
    dev_reload_templates_an_edit_reaches_the_next_mail_and_a_broken_one_keeps_the_last_good,
    dev_reload_templates_false_keeps_the_templates_of_the_start,
);

const ANN: &str = "ann@example.org";
const SUBJECT: &str = "password_reset/en.subject.tera";
const RELOADS: &str = "auth_mail_template_reloads_total";
const FAILED: &str =
    r#"auth_mail_template_failures_total{origin="default",kind="password_reset",reason="reload"}"#;

/// A server on its own copy of the templates, with `extra` settings; returns the copy.
async fn app_with_own_templates(db: Db, extra: &[(&str, &str)]) -> (TestApp, PathBuf) {
    let mut dir = None;
    let app = TestApp::spawn_adjusted(db, |test_db, env| {
        let copy = authd_tests::templates_copy(&test_db.dir());
        env.insert(
            "AUTHD__MAIL__TEMPLATES_DIR".into(),
            copy.display().to_string(),
        );
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        dir = Some(copy);
    })
    .await;
    app.create_user(ANN, "Correct1horse").await;
    (app, dir.unwrap())
}

/// Sends a reset to Ann (past the address's window) and returns the subject of its mail.
async fn next_reset_subject(app: &TestApp) -> String {
    app.advance(Duration::from_secs(61));
    let before = app.mails().len();
    assert_eq!(app.reset_send(ANN, "").await.status, 200);
    app.wait_for_mails(before + 1).await[before].subject.clone()
}

/// Sends resets until one's subject contains `text` (the watcher reloads within a moment).
async fn wait_for_subject_with(app: &TestApp, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let subject = next_reset_subject(app).await;
        if subject.contains(text) {
            return subject;
        }
        assert!(
            Instant::now() < deadline,
            "no mail used the edited template; last subject: {subject}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dev_reload_templates_an_edit_reaches_the_next_mail_and_a_broken_one_keeps_the_last_good(
    db: Db,
) {
    let (app, dir) = app_with_own_templates(db, &[]).await;
    let first = next_reset_subject(&app).await;
    assert!(!first.contains("Edited"), "{first}");
    // Reading the templates (to render that mail) changes nothing: no reload.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metric_value(&app.metrics().await, RELOADS), Some(0.0));
    let page = app.get("/dev/mail").await;
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("template-error"), "no banner yet");

    std::fs::write(
        dir.join(SUBJECT),
        "Edited: reset your {{ product_name }} password\n",
    )
    .unwrap();
    let edited = wait_for_subject_with(&app, "Edited").await;
    assert_eq!(edited, "Edited: reset your Example password");
    assert_eq!(metric_value(&app.metrics().await, FAILED), Some(0.0));
    // One edit, one reload: the reload's own reading of every file is no change. (Editors
    // may write a file in a few steps; the settle time joins them.)
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metric_value(&app.metrics().await, RELOADS), Some(1.0));

    // A broken edit: refused, counted, shown; the last good template stays in use.
    std::fs::write(dir.join(SUBJECT), "{% if %}broken\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_value(&app.metrics().await, FAILED) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the broken edit was never counted"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let page = app.get("/dev/mail").await;
    assert!(page.text.contains("template-error"), "{}", page.text);
    assert!(page.text.contains("were not reloaded"), "{}", page.text);
    assert_eq!(
        next_reset_subject(&app).await,
        edited,
        "the last good template"
    );

    // Mended: used again, and the banner is gone.
    std::fs::write(dir.join(SUBJECT), "Mended: {{ product_name }} reset\n").unwrap();
    assert_eq!(
        wait_for_subject_with(&app, "Mended").await,
        "Mended: Example reset"
    );
    assert!(!app.get("/dev/mail").await.text.contains("template-error"));
}

async fn dev_reload_templates_false_keeps_the_templates_of_the_start(db: Db) {
    let (app, dir) = app_with_own_templates(db, &[("AUTHD__DEV__RELOAD_TEMPLATES", "false")]).await;
    let first = next_reset_subject(&app).await;
    std::fs::write(
        dir.join(SUBJECT),
        "Edited: reset your {{ product_name }} password\n",
    )
    .unwrap();
    // Real time: on, a reload lands within a fraction of this (see the test above).
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(next_reset_subject(&app).await, first);
}
