//! Configuration errors as an operator meets them: the real binary refusing to start.

use std::process::Command;

fn authd(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authd-under-test"));
    cmd.current_dir(dir)
        .env("AUTHD_ENV", "development")
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

/// Finding: `AUTHD_ENV=prod` (or `Production`, `staging`, nothing) used to start in
/// development mode, with generated keys and file mail. Only the documented names start.
#[test]
fn an_undocumented_or_missing_authd_env_refuses_to_start_and_names_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    for value in [
        Some("prod"),
        Some("Production"),
        Some("staging"),
        Some(""),
        None,
    ] {
        let mut cmd = authd(dir.path());
        cmd.args(["config", "check"]);
        match value {
            Some(v) => cmd.env("AUTHD_ENV", v),
            None => cmd.env_remove("AUTHD_ENV"),
        };
        let (code, out, err) = run(&mut cmd);
        assert_eq!(code, 1, "{value:?} must be refused: {out}{err}");
        assert!(
            err.contains("development") && err.contains("production"),
            "{value:?}: the valid names are listed: {err}"
        );
        assert!(!out.contains("configuration OK"), "{value:?}: {out}");
    }
    let (code, out, err) = run(authd(dir.path()).args(["config", "check"]));
    assert_eq!(code, 0, "development starts: {err}");
    assert!(out.contains("environment: development"), "{out}");
}
