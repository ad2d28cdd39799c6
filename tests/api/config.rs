//! Configuration errors as an operator meets them: the real binary refusing to start.

use std::process::Command;

fn authd(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authd-under-test"));
    cmd.current_dir(dir)
        .env_remove("AUTHD_ENV")
        .env("AUTHD__LOG__LEVEL", "warn");
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("authd runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_environment_variable_wins_over_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("extra.toml"),
        "[http]\nbind = \"127.0.0.1:7001\"\n",
    )
    .unwrap();
    let (code, out, err) = run(authd(dir.path())
        .args(["--config", "extra.toml", "config", "check"])
        .env("AUTHD__HTTP__BIND", "127.0.0.1:7002"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("http.bind: 127.0.0.1:7002"), "{out}");
}

#[test]
fn an_unknown_key_stops_the_start_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("extra.toml"), "[database]\npool_size = 3\n").unwrap();
    let (code, _, err) = run(authd(dir.path()).args(["--config", "extra.toml", "serve"]));
    assert_eq!(code, 1);
    assert!(err.contains("pool_size"), "{err}");
    assert!(err.starts_with("error: configuration"), "{err}");
}

#[test]
fn production_without_secrets_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(authd(dir.path())
        .arg("serve")
        .env("AUTHD_ENV", "production"));
    assert_eq!(code, 1);
    assert!(
        err.contains("AUTHD_ENV=production needs these secrets"),
        "{err}"
    );
    assert!(err.contains("secrets.otp_key"), "{err}");
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(authd(dir.path()).args(["--config", "nope.toml", "config", "check"]));
    assert_eq!(code, 1);
    assert!(err.contains("nope.toml"), "{err}");
}
