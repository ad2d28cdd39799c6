//! The password policy's last rule over HTTP: well-known passwords are refused wherever a new
//! password is set, after the character rules, and the refusal changes nothing.

use authd_tests::{both_dbs, Db, TestApp};

const PASSWORD: &str = "Correct1horse";

/// Each passes the length, lowercase, uppercase and digit rules.
const COMMON: [&str; 3] = ["Password1", "Passw0rd", "Qwerty123"];

both_dbs!(
    a_reset_refuses_a_common_password_and_keeps_the_code_usable,
    a_password_change_refuses_a_common_password_and_changes_nothing,
);

async fn a_reset_refuses_a_common_password_and_keeps_the_code_usable(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("ann@example.org", PASSWORD).await;
    let res = app.reset_send("ann@example.org", "").await;
    assert_eq!(res.status, 200, "{}", res.text);
    let code = app.wait_for_mails(1).await.remove(0).code();
    for common in COMMON {
        app.reset_password("ann@example.org", &code, common)
            .await
            .assert_error(400, "Password is too common");
    }
    // The character rules still come first.
    app.reset_password("ann@example.org", &code, "password1")
        .await
        .assert_error(
            400,
            "Password must contain at least one uppercase character",
        );
    assert!(app.password_verifies("ann@example.org", PASSWORD).await);
    let res = app
        .reset_password("ann@example.org", &code, "Brand2newpass")
        .await;
    assert_eq!(res.status, 200, "the code was not used up: {}", res.text);
    assert!(
        app.password_verifies("ann@example.org", "Brand2newpass")
            .await
    );
}

async fn a_password_change_refuses_a_common_password_and_changes_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("bob@example.org", PASSWORD).await;
    let refresh = app.login_ok("bob@example.org", PASSWORD).await;
    let access = app.access_token(&refresh).await;
    for common in COMMON {
        app.change_password(&access, PASSWORD, common)
            .await
            .assert_error(400, "Password is too common");
    }
    assert!(app.password_verifies("bob@example.org", PASSWORD).await);
    let res = app
        .change_password(&access, PASSWORD, "Brand2newpass")
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
}
