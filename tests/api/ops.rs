use authd_tests::{both_dbs, Db, TestApp};

both_dbs!(
    healthz_answers_200_with_a_request_id,
    readyz_answers_200_once_migrations_are_applied
);

async fn healthz_answers_200_with_a_request_id(db: Db) {
    let app = TestApp::spawn(db).await;
    let res = app.healthz().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(
        res.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(res.header("x-request-id").map(str::len), Some(32));
}

async fn readyz_answers_200_once_migrations_are_applied(db: Db) {
    let app = TestApp::spawn(db).await;
    let res = app.readyz().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json(), serde_json::json!({"status": "ready"}));
}

/// PostgreSQL only: a SQLite file cannot be taken away from a process that has it open.
#[actix_web::test]
async fn readyz_answers_503_when_the_postgres_database_goes_away_and_healthz_stays_200() {
    let mut app = TestApp::spawn(Db::Postgres).await;
    assert_eq!(app.readyz().await.status, 200);
    app.db.drop_now();
    app.readyz().await.assert_error(503, "DATABASE_UNAVAILABLE");
    assert_eq!(app.healthz().await.status, 200);
}

#[actix_web::test]
async fn readyz_reports_pending_migrations_when_the_server_did_not_apply_them() {
    let app = TestApp::spawn_with(
        Db::Sqlite,
        &[("AUTHD__DATABASE__MIGRATE_ON_START", "false")],
    )
    .await;
    app.readyz().await.assert_error(503, "MIGRATIONS_PENDING");
}
