//! SIGTERM: stop accepting, finish what is in flight, exit 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use authd_tests::smtp::AuthdProcess;
use authd_tests::{Db, TestDb};

use crate::mail_backends::AUTHD;

#[test]
fn sigterm_finishes_a_request_in_flight_refuses_new_connections_and_exits_0() {
    let db = TestDb::create(Db::Sqlite);
    let mut server = AuthdProcess::start(
        AUTHD,
        &db.url,
        &[("AUTHD__HTTP__SHUTDOWN_TIMEOUT_SECS", "10")],
    );
    let addr = format!("127.0.0.1:{}", server.port());

    // A request whose body is still arriving when the signal comes.
    let body = br#"{"email":"someone@example.org"}"#;
    let mut conn = TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /user/password/reset/send HTTP/1.1\r\nHost: authd\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let stopping = std::thread::spawn(move || server.terminate(Duration::from_secs(15)));
    // The listener closes first: new connections are refused while the old one is served.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting connections 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    conn.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("null"), "{answer}");

    let status = stopping.join().unwrap();
    assert!(status.success(), "exit status {status}");
}
