//! Rows sealed by the first releases (per-purpose keys derived with HMAC, values without the
//! `v2.` marker) still open after the derivation moved to HKDF. The TOTP secret case is in
//! `two_factor_totp.rs`, next to the other TOTP tests.

use authd_tests::{both_dbs, seal_like_the_first_releases, Db, TestApp};

both_dbs!(sealed_rows_a_mail_queued_by_the_first_releases_is_delivered);

/// A mail left in the outbox by the old version (e.g. queued just before an upgrade) is
/// delivered by the new one.
async fn sealed_rows_a_mail_queued_by_the_first_releases_is_delivered(db: Db) {
    let app = TestApp::spawn(db).await;
    let envelope = serde_json::json!({
        "from": "authd@example.org",
        "to": ["old-queue@example.org"],
        "message": "From: authd@example.org\r\nTo: old-queue@example.org\r\n\
                    Subject: Queued before the upgrade\r\n\r\nStill delivered.\r\n",
    });
    let payload = seal_like_the_first_releases(
        app.env["AUTHD__SECRETS__OTP_KEY"].as_bytes(),
        b"authd/outbox/v1",
        b"",
        envelope.to_string().as_bytes(),
    );
    assert!(!payload.starts_with("v2."));
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        app.execute_sql(&format!(
            "INSERT INTO outbox (origin, kind, backend, recipient_masked, payload, status, \
             attempts, next_attempt_at_ms, created_at_ms) \
             VALUES ('default', 'password_changed', 'file', 'o***@example.org', '{payload}', \
             'pending', 0, {now}, {now})"
        ))
        .await,
        1
    );
    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails[0].subject, "Queued before the upgrade");
    assert_eq!(mails[0].to, "old-queue@example.org");
    assert_eq!(mails[0].text.trim(), "Still delivered.");
}
