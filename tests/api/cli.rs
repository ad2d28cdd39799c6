//! The operator commands, run as a separate process against each database.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use authd_tests::{both_dbs, templates_dir, Db, TestApp, TestDb};

struct Cli {
    db: TestDb,
}

impl Cli {
    fn new(db: Db) -> Self {
        Self {
            db: TestDb::create(db),
        }
    }

    fn run(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        let env = HashMap::from([
            ("AUTHD__DATABASE__URL".to_owned(), self.db.url.clone()),
            ("AUTHD__MAIL__TEMPLATES_DIR".to_owned(), templates_dir()),
        ]);
        run_authd(&self.db.dir(), &env, args, stdin)
    }
}

/// Runs the real command line in `dir` with `env` (`AUTHD__...` settings) on top.
fn run_authd(
    dir: &Path,
    env: &HashMap<String, String>,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authd-under-test"))
        .args(args)
        .current_dir(dir)
        .env("AUTHD_ENV", "development")
        .envs(env)
        .env("AUTHD__LOG__LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("authd runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("authd finishes");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

both_dbs!(
    user_create_then_list_shows_the_normalised_address,
    user_create_refuses_a_weak_password_with_the_policy_message,
    user_create_refuses_a_duplicate_email_in_any_case,
    user_disable_and_set_password_change_the_account,
    user_create_and_set_password_refuse_a_common_password,
    user_set_password_ends_every_login_and_mails_the_password_changed_notice,
    migrate_is_idempotent,
);

async fn user_create_and_set_password_refuse_a_common_password(db: Db) {
    let cli = Cli::new(db);
    for common in ["Password1", "Passw0rd", "Qwerty123"] {
        let (code, _, err) = cli.run(
            &["user", "create", "--email", "ann@example.com"],
            &format!("{common}\n"),
        );
        assert_eq!(code, 1, "{common}");
        assert_eq!(err.trim(), "error: Password is too common", "{common}");
    }
    assert!(!cli.run(&["user", "list"], "").1.contains("ann@example.com"));
    let (code, _, err) = cli.run(
        &["user", "create", "--email", "ann@example.com"],
        "Correct1horse\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli.run(
        &["user", "set-password", "--email", "ann@example.com"],
        "Qwerty123\n",
    );
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "error: Password is too common");
}

/// An operator's new password ends every login, as a reset does, and the owner is told
/// through the outbox, which the running server delivers.
async fn user_set_password_ends_every_login_and_mails_the_password_changed_notice(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_user("dee@example.org", "Correct1horse").await;
    let first = app.login_ok("dee@example.org", "Correct1horse").await;
    let second = app.login_ok("dee@example.org", "Correct1horse").await;
    assert_eq!(app.get_with("/auth/accesstoken", &first).await.status, 200);

    let (code, out, err) = run_authd(
        &app.db.dir(),
        &app.env,
        &["user", "set-password", "--email", "dee@example.org"],
        "Brand2newpass\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("password replaced for dee@example.org"),
        "{out}"
    );
    assert!(out.contains("2 login(s) ended"), "{out}");

    for refresh in [&first, &second] {
        app.get_with("/auth/accesstoken", refresh)
            .await
            .assert_error(401, "INVALID_TOKEN");
        app.get_with("/auth/refreshtoken", refresh)
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    let mail = app.wait_for_mails(1).await.remove(0);
    assert_eq!(mail.to, "dee@example.org");
    assert_eq!(mail.subject, "Your Example password was changed");
    app.login_ok("dee@example.org", "Brand2newpass").await;
}

async fn user_create_then_list_shows_the_normalised_address(db: Db) {
    let cli = Cli::new(db);
    let (code, out, err) = cli.run(
        &["user", "create", "--email", "Ann@Example.com"],
        "Correct1horse\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created user 1 <ann@example.com>"), "{out}");
    let (code, out, _) = cli.run(&["user", "list"], "");
    assert_eq!(code, 0);
    assert!(out.contains("ann@example.com"), "{out}");
    assert!(out.contains("active"), "{out}");
}

async fn user_create_refuses_a_weak_password_with_the_policy_message(db: Db) {
    let cli = Cli::new(db);
    let (code, _, err) = cli.run(
        &["user", "create", "--email", "ann@example.com"],
        "alllowercase1\n",
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error: Password must contain at least one uppercase character"
    );
    let (code, _, err) = cli.run(
        &["user", "create", "--email", "not-an-address"],
        "Correct1horse\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("Invalid email address"), "{err}");
    let (_, out, _) = cli.run(&["user", "list"], "");
    assert!(
        !out.contains("ann@example.com"),
        "nothing was created: {out}"
    );
}

async fn user_create_refuses_a_duplicate_email_in_any_case(db: Db) {
    let cli = Cli::new(db);
    assert_eq!(
        cli.run(
            &["user", "create", "--email", "bob@example.com"],
            "Correct1horse\n"
        )
        .0,
        0
    );
    let (code, _, err) = cli.run(
        &["user", "create", "--email", "BOB@example.com"],
        "Other1horse\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
}

async fn user_disable_and_set_password_change_the_account(db: Db) {
    let cli = Cli::new(db);
    let pw_file = cli.db.dir().join("pw.txt");
    std::fs::write(&pw_file, "Correct1horse\n").unwrap();
    let pw_path = pw_file.to_str().unwrap();
    assert_eq!(
        cli.run(
            &[
                "user",
                "create",
                "--email",
                "cy@example.com",
                "--password-file",
                pw_path
            ],
            ""
        )
        .0,
        0
    );
    let (code, out, _) = cli.run(&["user", "disable", "--email", "cy@example.com"], "");
    assert_eq!(code, 0);
    assert!(out.contains("disabled cy@example.com"));
    assert!(cli.run(&["user", "list"], "").1.contains("disabled"));
    let (code, _, err) = cli.run(&["user", "disable", "--email", "nobody@example.com"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no user"), "{err}");
    let (code, out, err) = cli.run(
        &["user", "set-password", "--email", "cy@example.com"],
        "Brand2newpass\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("password replaced"), "{out}");
    let (code, _, err) = cli.run(
        &["user", "set-password", "--email", "cy@example.com"],
        "short\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("at least 8 characters"), "{err}");
}

async fn migrate_is_idempotent(db: Db) {
    let cli = Cli::new(db);
    let (code, out, err) = cli.run(&["migrate"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("applied "), "{out}");
    let (code, out, _) = cli.run(&["migrate"], "");
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "applied 0 migration(s)");
}
