//! The error contract on every kind of refusal the server itself makes.

use authd_tests::{both_dbs, Db, TestApp};

both_dbs!(a_stored_address_that_is_no_address_answers_500_and_never_400,);

/// Stored data is not re-parsed as user input: a row whose address does not parse is the
/// server's fault (500, cause in the log), not the caller's (a 400 "Invalid email address"
/// for a request that sent no address at all). Other accounts are untouched.
async fn a_stored_address_that_is_no_address_answers_500_and_never_400(db: Db) {
    const PASSWORD: &str = "Correct1horse";
    let app = TestApp::spawn(db).await;
    let id = app.create_user("ann@example.org", PASSWORD).await;
    app.create_user("bob@example.org", PASSWORD).await;
    let access = app.login_access("ann@example.org", PASSWORD).await;
    let changed = app
        .execute_sql(&format!(
            "UPDATE users SET email = 'not an address' WHERE id = {id}"
        ))
        .await;
    assert_eq!(changed, 1);
    app.change_password(&access, PASSWORD, "Another2horse")
        .await
        .assert_error(500, "INTERNAL_SERVER_ERROR");
    app.get_with("/user/2fa", &access)
        .await
        .assert_error(500, "INTERNAL_SERVER_ERROR");
    let bob = app.login_access("bob@example.org", PASSWORD).await;
    assert_eq!(app.get_with("/user/2fa", &bob).await.status, 200);
}

#[actix_web::test]
async fn an_unknown_route_answers_404_in_the_contract_shape() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.get("/no/such/route")
        .await
        .assert_error(404, "NOT_FOUND");
    app.post_raw("/no/such/route", Some("application/json"), "{}")
        .await
        .assert_error(404, "NOT_FOUND");
}

#[actix_web::test]
async fn a_wrong_method_answers_405_with_an_allow_header() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = app.send(app.client.delete(app.url("/healthz"))).await;
    res.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(res.header("allow"), Some("GET"));
}

#[actix_web::test]
async fn a_plain_request_id_from_the_caller_is_kept_and_a_forged_one_replaced() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", "lb-1234.abc_9"),
        )
        .await;
    assert_eq!(res.header("x-request-id"), Some("lb-1234.abc_9"));
    let forged = "x\" injected=\"yes";
    let res = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", forged),
        )
        .await;
    let id = res.header("x-request-id").expect("id");
    assert_ne!(id, forged);
    assert_eq!(id.len(), 32);
}

#[actix_web::test]
async fn a_garbage_request_line_does_not_crash_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(Db::Sqlite).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    sock.write_all(b"\x16\x03\x01 definitely not http\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf).await;
    assert_eq!(app.healthz().await.status, 200);
}
