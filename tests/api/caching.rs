//! No answer of the API may be kept by a browser or a shared cache: answers carry tokens,
//! TOTP secrets and recovery codes.

use authd_tests::{both_dbs, Db, Reply, TestApp};

both_dbs!(every_answer_says_no_store_tokens_secrets_and_errors_alike);

fn assert_no_store(what: &str, res: &Reply) {
    assert_eq!(
        res.header("cache-control"),
        Some("no-store"),
        "Cache-Control of {what} ({}): {:?}",
        res.status,
        res.headers
    );
}

async fn every_answer_says_no_store_tokens_secrets_and_errors_alike(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("ann@example.org", "Correct1horse").await;

    // A token answer (text/plain).
    let login = app.login("ann@example.org", "Correct1horse").await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_no_store("a refresh token", &login);
    let access = app.get_with("/auth/accesstoken", &login.text).await;
    assert_eq!(access.status, 200);
    assert_no_store("an access token", &access);

    // A JSON answer carrying a secret: the TOTP setup URL.
    let setup = app.totp_setup(&access.text, "").await;
    assert_eq!(setup.status, 200, "{}", setup.text);
    assert!(setup.json()["url"]
        .as_str()
        .is_some_and(|u| u.contains("secret=")));
    assert_no_store("the TOTP setup URL", &setup);

    // Errors: one a route makes, one the framework makes, and an unknown route.
    let wrong = app.login("ann@example.org", "Wrong1password").await;
    wrong.assert_error(401, "PASSWORD_INCORRECT");
    assert_no_store("a refused login", &wrong);
    let malformed = app
        .post_raw("/auth/login", Some("application/json"), "{not json")
        .await;
    assert_eq!(malformed.status, 400);
    assert_no_store("malformed JSON", &malformed);
    let missing = app.get("/no/such/route").await;
    missing.assert_error(404, "NOT_FOUND");
    assert_no_store("an unknown route", &missing);
}
