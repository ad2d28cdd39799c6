//! The development mailbox at `/dev/mail` (issue 13, item 1): when it is on, what it lists,
//! filters, opens and deletes, the policies its pages carry, and that no request reaches a
//! file outside the configured mail folders.

use std::path::PathBuf;

use authd_tests::{both_dbs, Db, TestApp};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "Correct1horse";

both_dbs!(the_list_shows_every_mail_of_every_file_origin_newest_first_and_filters_by_address,);

/// The settings that put every enabled origin on another backend than `file`.
const NO_FILE_ORIGIN: &[(&str, &str)] = &[
    ("AUTHD__ORIGINS__DEFAULT__BACKEND", "sendmail"),
    ("AUTHD__ORIGINS__DEFAULT__SENDMAIL__PROGRAM", "/bin/true"),
    ("AUTHD__ORIGINS__ACME__ENABLED", "false"),
];

fn mail_dir(app: &TestApp) -> PathBuf {
    app.db.dir().join("mail")
}

async fn feed(app: &TestApp, query: &str) -> Value {
    let res = app.get(&format!("/dev/mail/mails.json{query}")).await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()
}

/// The mailbox's list, waiting (up to 10 s) until it has `n` mails.
async fn wait_for_listed(app: &TestApp, n: usize) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let feed = feed(app, "").await;
        if feed["total"] == n || std::time::Instant::now() > deadline {
            assert_eq!(feed["total"], n, "{feed}");
            return feed;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A GET written byte for byte on a socket, so that no client library normalises `..` or
/// `%2e%2e` away before the server sees it. Returns the status and the body.
async fn raw_request(app: &TestApp, method: &str, path: &str, extra: &str) -> (u16, String) {
    let host = app.address.trim_start_matches("http://").to_owned();
    request_as(app, method, path, &host, extra).await
}

/// [`raw_request`] with this `Host` header (the connection still goes to the test server).
async fn request_as(
    app: &TestApp,
    method: &str,
    path: &str,
    host: &str,
    extra: &str,
) -> (u16, String) {
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    sock.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[actix_web::test]
async fn dev_mailbox_auto_is_on_in_development_when_an_origin_writes_files() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = app.get("/dev/mail").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(res.text.contains("No mail yet"), "{}", res.text);
    let dir = mail_dir(&app).display().to_string();
    assert!(
        res.text.contains(&dir),
        "names the folders it reads: {}",
        res.text
    );
}

#[actix_web::test]
async fn dev_mailbox_auto_is_off_when_no_origin_writes_files() {
    let app = TestApp::spawn_with(Db::Sqlite, NO_FILE_ORIGIN).await;
    for path in [
        "/dev/mail",
        "/dev/mail/mails.json",
        "/dev/mail/assets/mailbox.js",
    ] {
        app.get(path).await.assert_error(404, "NOT_FOUND");
    }
}

#[actix_web::test]
async fn dev_mailbox_false_turns_the_page_off() {
    let app = TestApp::spawn_with(Db::Sqlite, &[("AUTHD__DEV__MAILBOX", "false")]).await;
    for path in ["/dev/mail", "/dev/mail/mails.json"] {
        app.get(path).await.assert_error(404, "NOT_FOUND");
    }
    let res = app
        .send(
            app.client
                .post(app.url("/dev/mail/delete"))
                .header("x-mailbox-request", "1"),
        )
        .await;
    res.assert_error(404, "NOT_FOUND");
}

#[actix_web::test]
async fn dev_mailbox_true_turns_the_page_on_without_a_file_origin() {
    let mut env = NO_FILE_ORIGIN.to_vec();
    env.push(("AUTHD__DEV__MAILBOX", "true"));
    let app = TestApp::spawn_with(Db::Sqlite, &env).await;
    let res = app.get("/dev/mail").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(
        res.text.contains("No enabled origin uses the file backend"),
        "{}",
        res.text
    );
    assert_eq!(feed(&app, "").await["total"], 0);
}

async fn the_list_shows_every_mail_of_every_file_origin_newest_first_and_filters_by_address(
    db: Db,
) {
    let app = TestApp::spawn(db).await;
    app.create_user("ann@example.org", PASSWORD).await;
    app.create_user("bob@example.org", PASSWORD).await;
    let res = app.reset_send("ann@example.org", "?language=nl").await;
    assert_eq!(res.status, 200, "{}", res.text);
    app.wait_for_mails(1).await;
    let res = app.reset_send("Bob@example.org", "?origin=acme").await;
    assert_eq!(res.status, 200, "{}", res.text);
    app.wait_for_mails_of("acme", 1).await;

    // A mail another process wrote (a replica, the CLI) shows too: the folders are read.
    let ann = app.mails().remove(0);
    let copy = "29991231T235959.999Z-0000000001.eml";
    std::fs::write(mail_dir(&app).join(copy), ann.raw.replace("ann@", "cid@")).unwrap();

    let feed = wait_for_listed(&app, 3).await;
    let mails = feed["mails"].as_array().unwrap();
    let column =
        |key: &str| -> Vec<&str> { mails.iter().map(|m| m[key].as_str().unwrap()).collect() };
    assert_eq!(
        column("to"),
        ["cid@example.org", "bob@example.org", "ann@example.org"],
        "newest first: {feed}"
    );
    assert_eq!(column("origin"), ["default", "acme", "default"]);
    assert_eq!(column("kind"), ["password_reset"; 3], "X-Authd-Kind");
    assert_eq!(column("language"), ["nl", "en", "nl"], "X-Authd-Language");
    assert_eq!(mails[1]["subject"], "Your Acme Corp password reset code");
    assert_eq!(mails[2]["subject"], ann.subject);
    assert_eq!(mails[0]["file"], copy);
    assert!(mails.iter().all(|m| m["error"].is_null()), "{feed}");
    assert_eq!(mails[0]["time"], "2999-12-31T23:59:59.999Z");

    // The page lists the same, with the columns.
    let page = app.get("/dev/mail").await;
    assert_eq!(page.status, 200);
    for text in [
        "ann@example.org",
        "bob@example.org",
        "cid@example.org",
        "Your Acme Corp password reset code",
        "password_reset",
        "2999-12-31 23:59:59",
        "3</span> mails",
    ] {
        assert!(page.text.contains(text), "{text} in {}", page.text);
    }
    let (cid, bob) = (
        page.text.find("cid@example.org").unwrap(),
        page.text.find("bob@example.org").unwrap(),
    );
    assert!(cid < bob, "newest first on the page");

    // Filtered by address: any case, part of the address, page and feed alike.
    let only_bob = self::feed(&app, "?to=BOB%40").await;
    assert_eq!(only_bob["total"], 1, "{only_bob}");
    assert_eq!(only_bob["mails"][0]["to"], "bob@example.org");
    assert_ne!(only_bob["version"], feed["version"]);
    let page = app.get("/dev/mail?to=bob").await;
    assert!(page.text.contains("bob@example.org"));
    assert!(!page.text.contains("ann@example.org"), "{}", page.text);
    assert_eq!(self::feed(&app, "?to=nobody").await["total"], 0);
    let long = "a".repeat(257);
    app.get(&format!("/dev/mail?to={long}"))
        .await
        .assert_error(400, "to must be at most 256 characters");
}

#[actix_web::test]
async fn a_mail_opens_with_its_code_link_parts_headers_and_raw_file() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.create_user("ann@example.org", PASSWORD).await;
    app.reset_send("ann@example.org", "").await;
    let mail = app.wait_for_mails(1).await.remove(0);
    let code = mail.code();
    let feed = wait_for_listed(&app, 1).await;
    let url = feed["mails"][0]["url"].as_str().unwrap().to_owned();
    let file = mail.file.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(url, format!("/dev/mail/m/default/{file}"));

    let page = app.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains(&format!(
            r#"<output id="code" class="code">{code}</output>"#
        )),
        "the code, large: {}",
        page.text
    );
    assert!(page.text.contains(r#"data-copy="code""#), "a copy button");
    let link = format!("http://localhost:3000/reset-password?email=ann%40example%2Eorg&otp={code}")
        .replace('&', "&amp;");
    assert!(
        page.text.contains(&format!(
            r#"<a href="{link}" target="_blank" rel="noopener noreferrer">"#
        )),
        "the link, clickable: {}",
        page.text
    );
    assert!(
        page.text.contains("Message-ID: &lt;"),
        "the headers: {}",
        page.text
    );
    assert!(
        page.text.contains("X-Authd-Kind: password_reset"),
        "{}",
        page.text
    );
    assert!(page.text.contains("Enter this code"), "the text part");
    assert!(
        page.text.contains(&format!(
            r#"<iframe id="html-part" class="html-part" src="{url}/html" sandbox="" "#
        )),
        "the HTML part in a frame sandboxed without scripts: {}",
        page.text
    );
    assert!(page
        .text
        .contains(&format!(r#"href="{url}/raw" download="{file}""#)));

    let html = app.get(&format!("{url}/html")).await;
    assert_eq!(html.status, 200);
    assert_eq!(html.text, mail.html, "the HTML part as sent");
    let csp = html.header("content-security-policy").unwrap();
    assert!(csp.starts_with("sandbox;"), "{csp}");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(html.header("x-frame-options"), Some("SAMEORIGIN"));

    let raw = app.get(&format!("{url}/raw")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text, mail.raw, "the file, byte for byte");
    assert_eq!(raw.header("content-type"), Some("message/rfc822"));
    assert_eq!(
        raw.header("content-disposition"),
        Some(format!("attachment; filename=\"{file}\"").as_str())
    );
}

#[actix_web::test]
async fn the_pages_carry_a_strict_content_security_policy_and_no_inline_script() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let page = app.get("/dev/mail").await;
    let csp = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.split("; ").any(|d| d == directive),
            "{directive} in {csp}"
        );
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    // Every script is a file; none is inline, and no handler attribute is used.
    let scripts: Vec<&str> = page.text.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1, "{}", page.text);
    assert!(scripts[0].starts_with(r#" src="/dev/mail/assets/mailbox.js""#));
    assert!(!page.text.contains(" onclick="), "{}", page.text);
    let js = app.get("/dev/mail/assets/mailbox.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.text.contains("X-Mailbox-Request"), "{}", js.text);
    let css = app.get("/dev/mail/assets/mailbox.css").await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
}

#[actix_web::test]
async fn mails_are_deleted_by_a_post_from_the_page_only() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.create_user("ann@example.org", PASSWORD).await;
    app.create_user("bob@example.org", PASSWORD).await;
    app.create_user("cid@example.org", PASSWORD).await;
    for who in ["ann", "bob", "cid"] {
        app.reset_send(&format!("{who}@example.org"), "").await;
    }
    let mails = app.wait_for_mails(3).await;
    let feed = wait_for_listed(&app, 3).await;
    let url = |i: usize| feed["mails"][i]["url"].as_str().unwrap().to_owned();

    // Another site's page cannot delete: no Origin, a foreign Origin, a GET.
    let delete = format!("{}/delete", url(0));
    let post = |origin: Option<&str>| {
        let mut req = app.client.post(app.url(&delete));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        app.send(req)
    };
    post(None).await.assert_error(403, "CROSS_ORIGIN_REQUEST");
    post(Some("http://evil.example"))
        .await
        .assert_error(403, "CROSS_ORIGIN_REQUEST");
    post(Some("null"))
        .await
        .assert_error(403, "CROSS_ORIGIN_REQUEST");
    app.get(&delete)
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(app.mails().len(), 3, "nothing deleted");

    // A form on the page (same Origin) deletes one and goes back to the list.
    let res = post(Some(&app.address)).await;
    assert_eq!(res.status, 303, "{}", res.text);
    assert_eq!(res.header("location"), Some("/dev/mail"));
    assert_eq!(app.mails().len(), 2);
    post(Some(&app.address))
        .await
        .assert_error(404, "NOT_FOUND");

    // Delete all of a filter (the script's header is enough), then all.
    let deleted = feed["mails"][0]["to"].as_str().unwrap().to_owned();
    let res = app
        .send(
            app.client
                .post(app.url("/dev/mail/delete?to=bob"))
                .header("x-mailbox-request", "1"),
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.text);
    assert_eq!(res.header("location"), Some("/dev/mail?to=bob"));
    let mut left: Vec<String> = app.mails().into_iter().map(|m| m.to).collect();
    left.sort();
    let mut expected: Vec<String> = mails
        .iter()
        .map(|m| m.to.clone())
        .filter(|to| *to != deleted && to != "bob@example.org")
        .collect();
    expected.sort();
    assert_eq!(left, expected);
    app.send(app.client.post(app.url("/dev/mail/delete")))
        .await
        .assert_error(403, "CROSS_ORIGIN_REQUEST");
    let res = app
        .send(
            app.client
                .post(app.url("/dev/mail/delete"))
                .header("origin", &app.address),
        )
        .await;
    assert_eq!(res.status, 303);
    assert!(app.mails().is_empty());
    assert_eq!(
        wait_for_listed(&app, 0).await["mails"],
        serde_json::json!([])
    );
}

/// DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends its
/// requests with its own name in `Host` (and `Origin`). Such requests neither read nor
/// delete; the same requests by localhost or by address do.
#[actix_web::test]
async fn a_page_reached_under_another_sites_name_is_refused() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.create_user("ann@example.org", PASSWORD).await;
    app.reset_send("ann@example.org", "").await;
    app.wait_for_mails(1).await;
    let feed = wait_for_listed(&app, 1).await;
    let mail = feed["mails"][0]["url"].as_str().unwrap().to_owned();
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let evil = format!("evil.example:{port}");
    for path in [
        "/dev/mail".to_owned(),
        "/dev/mail/mails.json".to_owned(),
        mail.clone(),
        format!("{mail}/html"),
        format!("{mail}/raw"),
        "/dev/mail/assets/mailbox.js".to_owned(),
    ] {
        let (status, body) = request_as(&app, "GET", &path, &evil, "").await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("MAILBOX_HOST_NOT_ALLOWED"), "{path}: {body}");
        assert!(!body.contains("ann@"), "{path}: {body}");
        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
            let (status, body) = request_as(&app, "GET", &path, &host, "").await;
            assert_eq!(status, 200, "{path} as {host}: {body}");
        }
    }
    // A rebinding page's delete carries a matching Origin; the name still refuses it.
    let origin = format!("Origin: http://{evil}\r\n");
    for path in [format!("{mail}/delete"), "/dev/mail/delete".to_owned()] {
        let (status, body) = request_as(&app, "POST", &path, &evil, &origin).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("MAILBOX_HOST_NOT_ALLOWED"), "{path}: {body}");
    }
    assert_eq!(app.mails().len(), 1, "nothing deleted");
    // The page's own delete, by localhost, still works.
    let local = format!("localhost:{port}");
    let origin = format!("Origin: http://{local}\r\n");
    let (status, body) = request_as(&app, "POST", &format!("{mail}/delete"), &local, &origin).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(app.mails().len(), 0);
}

#[actix_web::test]
async fn no_request_reaches_a_file_outside_the_mail_folders() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let dir = mail_dir(&app);
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "SECRET-OUTSIDE-THE-FOLDER";
    // A mail-shaped file next to the folder, one in the other origin's folder, and links
    // inside the folder pointing at them.
    let outside = app.db.dir().join("outside.eml");
    let mail = format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: {secret}\r\n\r\n{secret}\r\n"
    );
    std::fs::write(&outside, &mail).unwrap();
    let acme = app.db.dir().join("mail-acme");
    std::fs::create_dir_all(&acme).unwrap();
    std::fs::write(acme.join("acme.eml"), &mail).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("absolute-link.eml")).unwrap();
    std::os::unix::fs::symlink("../outside.eml", dir.join("relative-link.eml")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.eml")).unwrap();

    let listed = feed(&app, "").await;
    let files: Vec<&str> = listed["mails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["acme.eml"], "links are not mails: {listed}");

    let abs = outside.display().to_string();
    let abs_encoded = abs.replace('/', "%2F");
    let names = [
        "../outside.eml".to_owned(),
        "..%2Foutside.eml".to_owned(),
        "..%2foutside.eml".to_owned(),
        "%2e%2e%2foutside.eml".to_owned(),
        "%2E%2E/outside.eml".to_owned(),
        "..%5Coutside.eml".to_owned(),
        "%2e%2e".to_owned(),
        "..".to_owned(),
        abs_encoded.clone(),
        abs.trim_start_matches('/').to_owned(),
        "absolute-link.eml".to_owned(),
        "relative-link.eml".to_owned(),
        "passwd.eml".to_owned(),
        "acme.eml".to_owned(),
        "outside.eml%00.eml".to_owned(),
    ];
    for origin in ["default", "..", "%2e%2e", "acme%2F..", "nope"] {
        for name in &names {
            if origin == "acme%2F.." && name == "acme.eml" {
                continue;
            }
            for suffix in ["", "/raw", "/html"] {
                let path = format!("/dev/mail/m/{origin}/{name}{suffix}");
                let (status, body) = raw_request(&app, "GET", &path, "").await;
                assert!(
                    status == 404 || (status == 400 && !body.contains(secret)),
                    "{path}: {status} {body}"
                );
                assert!(!body.contains(secret), "{path} showed the file: {body}");
                assert!(!body.contains("root:"), "{path} showed /etc/passwd: {body}");
            }
            let path = format!("/dev/mail/m/{origin}/{name}/delete");
            let (status, _) = raw_request(&app, "POST", &path, "X-Mailbox-Request: 1\r\n").await;
            assert!(status == 404 || status == 400, "{path}: {status}");
        }
    }
    // The other origin's mail opens under its own origin only.
    assert_eq!(app.get("/dev/mail/m/acme/acme.eml/raw").await.status, 200);
    assert!(outside.exists(), "nothing outside was deleted");
    assert!(
        dir.join("absolute-link.eml").exists(),
        "the links were not followed or removed"
    );
}

#[actix_web::test]
async fn a_malformed_mail_file_shows_as_an_error_row_not_a_broken_page() {
    let app = TestApp::spawn(Db::Sqlite).await;
    app.create_user("ann@example.org", PASSWORD).await;
    app.reset_send("ann@example.org", "").await;
    app.wait_for_mails(1).await;
    let dir = mail_dir(&app);
    std::fs::write(
        dir.join("20200101T000000.000Z-0000000001.eml"),
        "this is no mail at all\n",
    )
    .unwrap();
    std::fs::write(dir.join("20200101T000000.000Z-0000000002.eml"), b"").unwrap();
    std::fs::write(
        dir.join("20200101T000000.000Z-0000000003.eml"),
        [0xff_u8, 0xfe, 0x00, 0x01, b'\n', 0x80, 0x81],
    )
    .unwrap();

    let listed = wait_for_listed(&app, 4).await;
    let mails = listed["mails"].as_array().unwrap();
    assert!(mails[0]["error"].is_null(), "the real mail first: {listed}");
    for m in &mails[1..] {
        assert!(m["error"].as_str().is_some_and(|e| !e.is_empty()), "{m}");
    }
    let page = app.get("/dev/mail").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        page.text.matches("Malformed mail").count(),
        3,
        "{}",
        page.text
    );
    assert!(
        page.text.contains("ann@example.org"),
        "the good mail still shows"
    );
    for m in &mails[1..] {
        let url = m["url"].as_str().unwrap();
        let one = app.get(url).await;
        assert_eq!(one.status, 200, "{url}: {}", one.text);
        assert!(one.text.contains(r#"id="mail-error""#), "{}", one.text);
        assert_eq!(app.get(&format!("{url}/raw")).await.status, 200);
        app.get(&format!("{url}/html"))
            .await
            .assert_error(404, "NOT_FOUND");
    }
}

#[actix_web::test]
async fn what_a_mail_says_is_shown_as_text_never_as_markup() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let dir = mail_dir(&app);
    std::fs::create_dir_all(&dir).unwrap();
    let raw = "From: \"<b>Mallory</b>\" <mallory@example.org>\r\nTo: \"<i>x</i>\" <victim@example.org>\r\n\
               Subject: <img src=x onerror=alert(1)>\r\nX-Authd-Kind: <script>k</script>\r\n\
               \r\n<script>alert(2)</script>\r\n";
    std::fs::write(dir.join("20990101T000000.000Z-0000000001.eml"), raw).unwrap();
    let url = "/dev/mail/m/default/20990101T000000.000Z-0000000001.eml";
    for path in ["/dev/mail", url] {
        let page = app.get(path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(
            page.text.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{}",
            page.text
        );
        assert!(!page.text.contains("<img"), "{path}: {}", page.text);
        assert!(!page.text.contains("<script>"), "{path}: {}", page.text);
    }
    let page = app.get(url).await;
    assert!(
        page.text.contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
        "the text part, as text: {}",
        page.text
    );
}

#[actix_web::test]
async fn odd_input_is_answered_without_a_server_error() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let long = "a".repeat(4000);
    for (method, path) in [
        ("GET", "/dev/mail?to=%ff%fe".to_owned()),
        ("GET", "/dev/mail/mails.json?to=%00".to_owned()),
        ("GET", "/dev/mail?to=a&to=b".to_owned()),
        ("GET", "/dev/mail?to[]=x".to_owned()),
        ("GET", format!("/dev/mail/m/default/{long}.eml")),
        ("GET", format!("/dev/mail/m/{long}/x.eml/raw")),
        ("GET", "/dev/mail/m/default/%ff.eml".to_owned()),
        ("GET", "/dev/mail/m/default/x.eml/nope".to_owned()),
        ("GET", "/dev/mail/m/default".to_owned()),
        ("POST", "/dev/mail/delete?to=%ff".to_owned()),
        ("POST", "/dev/mail/m/default/x.eml/delete".to_owned()),
        ("DELETE", "/dev/mail".to_owned()),
        ("PUT", "/dev/mail/m/default/x.eml".to_owned()),
    ] {
        let (status, body) = raw_request(&app, method, &path, "X-Mailbox-Request: 1\r\n").await;
        assert!(status < 500, "{method} {path}: {status} {body}");
        if status >= 400 {
            assert!(
                body.starts_with("{\"statusCode\":"),
                "{method} {path}: {body}"
            );
        }
    }
}
