//! `authd healthcheck`, the container's health check: the real binary asks a real server.

use std::net::TcpListener;
use std::process::{Command, Stdio};

use authd_tests::smtp::AuthdProcess;
use authd_tests::{Db, TestDb};

use crate::mail_backends::AUTHD;

/// Runs `authd healthcheck` with `http.bind` set to `bind`; returns (exit code, stdout, stderr).
fn healthcheck(db: &TestDb, bind: &str) -> (i32, String, String) {
    let out = Command::new(AUTHD)
        .arg("healthcheck")
        .current_dir(db.dir())
        .env("AUTHD_ENV", "development")
        .env_remove("RUST_LOG")
        .env("AUTHD__LOG__LEVEL", "warn")
        .env("AUTHD__DATABASE__URL", &db.url)
        .env("AUTHD__HTTP__BIND", bind)
        .stdin(Stdio::null())
        .output()
        .expect("authd healthcheck runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn healthcheck_exits_0_when_the_server_is_ready_also_through_an_unspecified_bind() {
    let db = TestDb::create(Db::Sqlite);
    // The server listens on every interface, as in the container; the check maps 0.0.0.0 to
    // 127.0.0.1.
    let server = AuthdProcess::start(AUTHD, &db.url, &[("AUTHD__HTTP__BIND", "0.0.0.0:0")]);
    for bind in [
        format!("127.0.0.1:{}", server.port()),
        format!("0.0.0.0:{}", server.port()),
    ] {
        let (code, stdout, stderr) = healthcheck(&db, &bind);
        assert_eq!(code, 0, "bind {bind}: stdout {stdout:?} stderr {stderr:?}");
        let expected = format!(
            "ready: GET http://127.0.0.1:{}/readyz answered 200",
            server.port()
        );
        assert!(stdout.starts_with(&expected), "{stdout:?}");
        assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    }
}

#[test]
fn healthcheck_exits_1_when_nothing_listens() {
    let db = TestDb::create(Db::Sqlite);
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (code, stdout, stderr) = healthcheck(&db, &format!("127.0.0.1:{port}"));
    assert_eq!(code, 1, "stdout {stdout:?} stderr {stderr:?}");
    assert!(stdout.is_empty(), "{stdout:?}");
    assert!(
        stderr.starts_with(&format!(
            "error: not ready: GET http://127.0.0.1:{port}/readyz failed"
        )),
        "{stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
}

#[test]
fn healthcheck_exits_1_when_the_server_answers_but_is_not_ready() {
    let db = TestDb::create(Db::Sqlite);
    // Every key given, so that nothing needs the (missing) tables to start.
    let signing_key = authd_domain::tokens::TokenSigner::generate_pem().unwrap();
    let server = AuthdProcess::start(
        AUTHD,
        &db.url,
        &[
            ("AUTHD__DATABASE__MIGRATE_ON_START", "false"),
            (
                "AUTHD__SECRETS__TOTP_KEY",
                "test-totp-key-0123456789abcdef012345678",
            ),
            ("AUTHD__SECRETS__SIGNING_KEY", &signing_key),
        ],
    );
    let (code, stdout, stderr) = healthcheck(&db, &format!("127.0.0.1:{}", server.port()));
    assert_eq!(code, 1, "stdout {stdout:?} stderr {stderr:?}");
    assert!(stderr.contains("answered \"HTTP/1.1 503"), "{stderr:?}");
}

#[test]
fn healthcheck_maps_unspecified_addresses_to_loopback_and_refuses_port_0() {
    use authd::cli::healthcheck_addr;
    assert_eq!(
        healthcheck_addr("0.0.0.0:8080").unwrap().to_string(),
        "127.0.0.1:8080"
    );
    assert_eq!(
        healthcheck_addr("[::]:8080").unwrap().to_string(),
        "[::1]:8080"
    );
    assert_eq!(
        healthcheck_addr("10.1.2.3:81").unwrap().to_string(),
        "10.1.2.3:81"
    );
    assert!(healthcheck_addr("127.0.0.1:0").is_err());
}
