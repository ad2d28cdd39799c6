use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;

/// Sources over these variables; `AUTHD_ENV` is `development` unless given.
fn sources(env: &[(&str, &str)], file: Option<&Path>, dir: &Path) -> Sources {
    let mut vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.entry(ENV_VAR.to_owned())
        .or_insert_with(|| "development".to_owned());
    Sources {
        config_dir: Some(dir.to_path_buf()),
        file: file.map(Path::to_path_buf),
        env: Some(vars),
    }
}

#[test]
fn an_unset_or_undocumented_environment_is_refused_with_the_valid_names() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["prod", "Production", "staging", "", " development", "test"] {
        let text = err_text(&sources(&[("AUTHD_ENV", bad)], None, dir.path()));
        assert!(
            text.contains("development") && text.contains("production"),
            "{bad:?}: {text}"
        );
        assert!(text.contains(&format!("{bad:?}")), "{bad:?}: {text}");
    }
    let unset = Sources {
        config_dir: Some(dir.path().to_path_buf()),
        file: None,
        env: Some(HashMap::new()),
    };
    let text = err_text(&unset);
    assert!(text.contains("AUTHD_ENV is not set"), "{text}");
    assert!(
        text.contains("development") && text.contains("production"),
        "{text}"
    );
}

/// The environment of a production start with every secret set, plus `extra`.
fn production<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("AUTHD_ENV", "production"),
        (
            "AUTHD__SECRETS__OTP_KEY",
            "0123456789abcdef0123456789abcdef",
        ),
        (
            "AUTHD__SECRETS__TOTP_KEY",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ),
        ("AUTHD__SECRETS__SIGNING_KEY", "pem"),
    ];
    env.extend_from_slice(extra);
    env
}

fn err_text(s: &Sources) -> String {
    s.load().expect_err("load should fail").to_string()
}

#[test]
fn the_defaults_file_alone_loads_and_runs_on_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = sources(&[], None, dir.path()).load().unwrap();
    assert_eq!(loaded.environment, Environment::Development);
    let s = loaded.settings;
    assert_eq!(s.http.bind, "127.0.0.1:8080");
    assert_eq!(s.metrics.bind, "127.0.0.1:9464");
    assert_eq!(
        s.database_url(),
        DatabaseUrl::Sqlite(PathBuf::from("./var/authd.db"))
    );
    assert_eq!(s.http.body_limit_bytes, 16 * 1024);
}

fn leaf_paths(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            toml::Value::Table(t) => leaf_paths(t, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

fn remove_path(table: &mut toml::Table, path: &[String]) {
    match path {
        [last] => {
            table.remove(last);
        }
        [first, rest @ ..] => remove_path(table[first].as_table_mut().unwrap(), rest),
        [] => {}
    }
}

#[test]
fn every_setting_in_code_is_in_default_toml_with_a_comment() {
    // There are no serde defaults in code (the keys of an smtp table, which the file-backed
    // example origins cannot show, excepted), so removing any key from the defaults file must
    // make loading fail: a setting added in code but not documented there breaks this test.
    let doc: toml::Table = DEFAULT_TOML.parse().unwrap();
    let mut leaves = Vec::new();
    leaf_paths(&doc, &mut Vec::new(), &mut leaves);
    for path in &leaves {
        let mut pruned = doc.clone();
        remove_path(&mut pruned, path);
        let text = toml::to_string(&pruned).unwrap();
        let result = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize::<Settings>();
        assert!(
            result.is_err(),
            "{} has a default in code; it must live in config/default.toml",
            path.join(".")
        );
    }
    assert!(leaves.len() > 40, "found only {} keys", leaves.len());

    // Each key line has a comment line directly above it.
    let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
            continue;
        }
        let above = if i == 0 { "" } else { lines[i - 1].trim() };
        assert!(
            above.starts_with('#'),
            "config/default.toml line {}: `{t}` has no comment above it",
            i + 1
        );
    }
}

#[test]
fn an_origin_can_switch_backend_in_a_layer_above() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.toml");
    std::fs::write(
        &file,
        "[origins.default]\nbackend = \"smtp\"\nsmtp = { host = \"mail\", port = 25, tls = \"none\" }\n",
    )
    .unwrap();
    let s = sources(&[], Some(&file), dir.path())
        .load()
        .unwrap()
        .settings;
    let origin = s.origin("default").unwrap();
    match origin.backend() {
        Some(Backend::Smtp(smtp)) => {
            assert_eq!(smtp.host, "mail");
            assert_eq!(smtp.timeout_secs, 10);
        }
        other => panic!("expected smtp, got {other:?}"),
    }
    std::fs::write(&file, "[origins.default]\nbackend = \"sendmail\"\n").unwrap();
    let msg = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(msg.contains("origins.default.sendmail"), "{msg}");
}

#[test]
fn environment_variables_win_over_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.toml");
    std::fs::write(&file, "[http]\nbind = \"127.0.0.1:9000\"\nworkers = 3\n").unwrap();
    let s = sources(
        &[("AUTHD__HTTP__BIND", "127.0.0.1:9001")],
        Some(&file),
        dir.path(),
    )
    .load()
    .unwrap()
    .settings;
    assert_eq!(s.http.bind, "127.0.0.1:9001");
    assert_eq!(s.http.workers, 3, "the file still overrides the defaults");
}

#[test]
fn the_environment_file_sits_between_defaults_and_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("development.toml"),
        "[http]\nworkers = 5\nkeep_alive_secs = 9\n",
    )
    .unwrap();
    let file = dir.path().join("extra.toml");
    std::fs::write(&file, "[http]\nworkers = 7\n").unwrap();
    let loaded = sources(&[("AUTHD_ENV", "development")], Some(&file), dir.path())
        .load()
        .unwrap();
    assert_eq!(loaded.environment, Environment::Development);
    assert_eq!(loaded.settings.http.keep_alive_secs, 9);
    assert_eq!(loaded.settings.http.workers, 7);
}

#[test]
fn an_unknown_key_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.toml");
    std::fs::write(&file, "[http]\nbindd = \"127.0.0.1:9000\"\n").unwrap();
    let msg = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(msg.contains("bindd"), "{msg}");

    let msg = err_text(&sources(
        &[("AUTHD__DATABASE__PASSWORD", "x")],
        None,
        dir.path(),
    ));
    assert!(msg.contains("password"), "{msg}");

    std::fs::write(&file, "[nonsense]\nx = 1\n").unwrap();
    let msg = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(msg.contains("nonsense"), "{msg}");
}

#[test]
fn production_without_secrets_is_refused_with_the_missing_keys_named() {
    let dir = tempfile::tempdir().unwrap();
    let msg = err_text(&sources(
        &[
            ("AUTHD_ENV", "production"),
            ("AUTHD__ORIGINS__DEFAULT__BACKEND", "sendmail"),
            (
                "AUTHD__ORIGINS__DEFAULT__SENDMAIL__PROGRAM",
                "/usr/sbin/sendmail",
            ),
            ("AUTHD__ORIGINS__ACME__ENABLED", "false"),
        ],
        None,
        dir.path(),
    ));
    for key in ["secrets.otp_key", "secrets.totp_key", "secrets.signing_key"] {
        assert!(msg.contains(key), "{msg}");
    }
    let key_file = dir.path().join("signing.pem");
    std::fs::write(
        &key_file,
        "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let key_path = key_file.to_str().unwrap();
    let loaded = sources(
        &[
            ("AUTHD_ENV", "production"),
            (
                "AUTHD__SECRETS__OTP_KEY",
                "0123456789abcdef0123456789abcdef",
            ),
            (
                "AUTHD__SECRETS__TOTP_KEY",
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            ),
            ("AUTHD__SECRETS__SIGNING_KEY_FILE", key_path),
            ("AUTHD__ORIGINS__DEFAULT__BACKEND", "sendmail"),
            (
                "AUTHD__ORIGINS__DEFAULT__SENDMAIL__PROGRAM",
                "/usr/sbin/sendmail",
            ),
            ("AUTHD__ORIGINS__ACME__ENABLED", "false"),
        ],
        None,
        dir.path(),
    )
    .load()
    .unwrap();
    assert!(loaded
        .settings
        .secrets
        .signing_key
        .expose_secret()
        .ends_with("-----END PRIVATE KEY-----"));
}

#[test]
fn a_database_url_file_replaces_the_default_url_and_an_explicit_url_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("db-url");
    std::fs::write(&url_file, "postgres://authd:pw@db.internal:5432/authd\n").unwrap();
    let url_path = url_file.to_str().unwrap();
    let loaded = sources(&[("AUTHD__DATABASE__URL_FILE", url_path)], None, dir.path())
        .load()
        .unwrap();
    assert_eq!(
        loaded.settings.database.url.expose_secret(),
        "postgres://authd:pw@db.internal:5432/authd"
    );
    let msg = err_text(&sources(
        &[
            ("AUTHD__DATABASE__URL", "sqlite://./other.db"),
            ("AUTHD__DATABASE__URL_FILE", url_path),
        ],
        None,
        dir.path(),
    ));
    assert!(
        msg.contains("database.url and database.url_file are both set"),
        "{msg}"
    );
}

#[test]
fn retired_signing_key_files_can_be_listed_in_an_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = sources(
        &[(
            "AUTHD__TOKENS__RETIRED_SIGNING_KEY_FILES",
            "/k/old1.pem,/k/old2.pem",
        )],
        None,
        dir.path(),
    )
    .load()
    .unwrap();
    assert_eq!(
        loaded.settings.tokens.retired_signing_key_files,
        [
            std::path::PathBuf::from("/k/old1.pem"),
            std::path::PathBuf::from("/k/old2.pem")
        ]
    );
}

#[test]
fn a_secret_given_twice_or_from_a_missing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let msg = err_text(&sources(
        &[
            ("AUTHD__SECRETS__OTP_KEY", "x"),
            ("AUTHD__SECRETS__OTP_KEY_FILE", "/nonexistent"),
        ],
        None,
        dir.path(),
    ));
    assert!(
        msg.contains("secrets.otp_key and secrets.otp_key_file are both set"),
        "{msg}"
    );
    let msg = err_text(&sources(
        &[("AUTHD__SECRETS__OTP_KEY_FILE", "/nonexistent/key")],
        None,
        dir.path(),
    ));
    assert!(msg.contains("/nonexistent/key"), "{msg}");
}

#[test]
fn debug_output_never_contains_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let s = sources(
        &[
            (
                "AUTHD__SECRETS__OTP_KEY",
                "very-secret-otp-key-material-123",
            ),
            ("AUTHD__DATABASE__URL", "postgres://u:hunter2@db/authd"),
        ],
        None,
        dir.path(),
    )
    .load()
    .unwrap();
    let printed = format!("{s:?} {:?}", s.settings.database_url());
    assert!(!printed.contains("very-secret"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

#[test]
fn a_bad_database_url_or_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let msg = err_text(&sources(
        &[("AUTHD__DATABASE__URL", "mysql://x")],
        None,
        dir.path(),
    ));
    assert!(msg.contains("database.url"), "{msg}");
    let msg = err_text(&sources(
        &[("AUTHD__HTTP__BIND", "localhost")],
        None,
        dir.path(),
    ));
    assert!(msg.contains("http.bind"), "{msg}");
    let msg = err_text(&sources(
        &[("AUTHD__HTTP__WORKERS", "many")],
        None,
        dir.path(),
    ));
    assert!(msg.contains("workers"), "{msg}");
}

#[test]
fn production_refuses_the_file_backend() {
    let dir = tempfile::tempdir().unwrap();
    let msg = err_text(&sources(&production(&[]), None, dir.path()));
    assert!(
        msg.contains("origins.acme.backend: the file backend"),
        "{msg}"
    );
}

/// An override file that makes the default origin send through an SMTP relay with `extra`
/// keys in its smtp table.
fn smtp_origin(dir: &Path, extra: &str) -> PathBuf {
    let file = dir.join("smtp.toml");
    std::fs::write(
        &file,
        format!(
            "[origins.default]\nbackend = \"smtp\"\n\
             smtp = {{ host = \"mail\", port = 25, tls = \"none\"{extra} }}\n"
        ),
    )
    .unwrap();
    file
}

fn smtp_of(s: &Settings) -> &SmtpSettings {
    match s.origin("default").unwrap().backend() {
        Some(Backend::Smtp(smtp)) => smtp,
        other => panic!("expected smtp, got {other:?}"),
    }
}

#[test]
fn origins_smtp_password_file_is_read_with_its_trailing_newline_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("smtp-password");
    std::fs::write(&secret, "relay-pass-42\n").unwrap();
    let file = smtp_origin(
        dir.path(),
        &format!(
            ", username = \"authd\", password_file = \"{}\"",
            secret.display()
        ),
    );
    let s = sources(&[], Some(&file), dir.path())
        .load()
        .unwrap()
        .settings;
    let smtp = smtp_of(&s);
    assert_eq!(smtp.username, "authd");
    assert_eq!(smtp.password.expose_secret(), "relay-pass-42");
    // Given as an environment variable, the way deployments pass it, it is read too.
    let s = sources(
        &[(
            "AUTHD__ORIGINS__DEFAULT__SMTP__PASSWORD_FILE",
            secret.to_str().unwrap(),
        )],
        Some(&smtp_origin(dir.path(), ", username = \"authd\"")),
        dir.path(),
    )
    .load()
    .unwrap()
    .settings;
    assert_eq!(smtp_of(&s).password.expose_secret(), "relay-pass-42");
    assert!(!format!("{s:?}").contains("relay-pass-42"));
}

#[test]
fn origins_smtp_password_and_password_file_together_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("smtp-password");
    std::fs::write(&secret, "from-file").unwrap();
    let file = smtp_origin(
        dir.path(),
        &format!(
            ", username = \"authd\", password = \"inline\", password_file = \"{}\"",
            secret.display()
        ),
    );
    let msg = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(
        msg.contains(
            "origins.default.smtp.password and origins.default.smtp.password_file are both set"
        ),
        "{msg}"
    );
    // A password file that cannot be read is named, not skipped.
    let file = smtp_origin(
        dir.path(),
        ", username = \"authd\", password_file = \"/nonexistent/smtp\"",
    );
    let msg = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(
        msg.contains("origins.default.smtp.password_file") && msg.contains("/nonexistent/smtp"),
        "{msg}"
    );
}

#[test]
fn origins_smtp_username_without_a_password_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = smtp_origin(dir.path(), ", username = \"authd\"");
    let msg = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(
        msg.contains("invalid value for origins.default.smtp.password"),
        "{msg}"
    );
    let file = smtp_origin(dir.path(), ", password = \"orphan\"");
    let msg = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(
        msg.contains("invalid value for origins.default.smtp.username"),
        "{msg}"
    );
    // Neither is a relay without authentication: that loads.
    let file = smtp_origin(dir.path(), "");
    assert!(sources(&[], Some(&file), dir.path()).load().is_ok());
}

#[test]
fn an_smtp_table_left_under_another_backend_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.toml");
    std::fs::write(
        &file,
        "[origins.default]\nbackend = \"file\"\n\
         smtp = { host = \"mail\", port = 25, tls = \"none\", username = \"u\", password_file = \"/nonexistent/smtp\" }\n",
    )
    .unwrap();
    assert!(sources(&[], Some(&file), dir.path()).load().is_ok());
}

#[test]
fn an_unknown_client_ip_header_is_refused_with_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let text = err_text(&sources(
        &[("AUTHD__HTTP__CLIENT_IP_HEADER", "X-Real-IP")],
        None,
        dir.path(),
    ));
    assert!(
        text.contains("x-forwarded-for") && text.contains("forwarded"),
        "{text}"
    );
    let loaded = sources(
        &[("AUTHD__HTTP__CLIENT_IP_HEADER", "forwarded")],
        None,
        dir.path(),
    )
    .load()
    .unwrap();
    assert_eq!(
        loaded.settings.http.client_ip_header,
        ClientIpHeader::Forwarded
    );
}

#[test]
fn dev_mailbox_takes_auto_true_or_false_and_refuses_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let load = |value: &str| sources(&[("AUTHD__DEV__MAILBOX", value)], None, dir.path()).load();
    let switch = |value: &str| load(value).unwrap().settings.dev.mailbox;
    assert_eq!(switch("auto"), DevSwitch::Auto);
    assert_eq!(switch("true"), DevSwitch::On);
    assert_eq!(switch("false"), DevSwitch::Off);
    for bad in ["yes", "on", "Auto", "1", ""] {
        let text = load(bad).expect_err(bad).to_string();
        assert!(text.contains("dev.mailbox"), "{bad:?}: {text}");
    }
    let file = dir.path().join("mailbox.toml");
    std::fs::write(&file, "[dev]\nmailbox = \"sometimes\"\n").unwrap();
    let text = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(text.contains("\"sometimes\""), "{text}");
}

#[test]
fn dev_mailbox_auto_is_on_in_development_with_a_file_origin_only() {
    let dir = tempfile::tempdir().unwrap();
    let settings = |env: &[(&str, &str)]| sources(env, None, dir.path()).load().unwrap().settings;
    let dev = Environment::Development;
    let on = settings(&[])
        .dev_mailbox(&dev)
        .expect("on by default in development");
    let names: Vec<&str> = on.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["acme", "default"]);
    assert_eq!(on[1].1, PathBuf::from("./var/mail"));
    // No enabled origin on the file backend: auto is off, true is on (with no folders).
    let no_files = [
        ("AUTHD__ORIGINS__DEFAULT__BACKEND", "sendmail"),
        (
            "AUTHD__ORIGINS__DEFAULT__SENDMAIL__PROGRAM",
            "/usr/sbin/sendmail",
        ),
        ("AUTHD__ORIGINS__ACME__ENABLED", "false"),
    ];
    assert!(settings(&no_files).dev_mailbox(&dev).is_none());
    let mut forced = no_files.to_vec();
    forced.push(("AUTHD__DEV__MAILBOX", "true"));
    assert_eq!(settings(&forced).dev_mailbox(&dev), Some(vec![]));
    assert!(settings(&[("AUTHD__DEV__MAILBOX", "false")])
        .dev_mailbox(&dev)
        .is_none());
    // Auto is off in production whatever the origins use.
    assert!(settings(&[])
        .dev_mailbox(&Environment::Production)
        .is_none());
}

#[test]
fn production_refuses_the_mailbox_switched_on() {
    let dir = tempfile::tempdir().unwrap();
    let msg = err_text(&sources(
        &production(&[("AUTHD__DEV__MAILBOX", "true")]),
        None,
        dir.path(),
    ));
    assert!(msg.contains("dev.mailbox"), "{msg}");
}

#[test]
fn production_refuses_template_reload_switched_on_and_auto_is_on_in_development_only() {
    let dir = tempfile::tempdir().unwrap();
    let on = production(&[("AUTHD__DEV__RELOAD_TEMPLATES", "true")]);
    let msg = err_text(&sources(&on, None, dir.path()));
    assert!(msg.contains("dev.reload_templates"), "{msg}");
    let bad = production(&[("AUTHD__DEV__RELOAD_TEMPLATES", "sometimes")]);
    let msg = err_text(&sources(&bad, None, dir.path()));
    assert!(msg.contains("\"sometimes\""), "{msg}");

    let settings = |env: &[(&str, &str)]| sources(env, None, dir.path()).load().unwrap().settings;
    let (dev, prod) = (Environment::Development, Environment::Production);
    assert!(
        settings(&[]).reload_templates(&dev),
        "auto: on in development"
    );
    assert!(
        !settings(&[]).reload_templates(&prod),
        "auto: off in production"
    );
    let off = settings(&[("AUTHD__DEV__RELOAD_TEMPLATES", "false")]);
    assert!(!off.reload_templates(&dev));
    let on = settings(&[("AUTHD__DEV__RELOAD_TEMPLATES", "true")]);
    assert!(on.reload_templates(&dev));
}

#[test]
fn cors_allowed_origins_are_read_from_a_comma_separated_variable() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = sources(
        &[(
            "AUTHD__HTTP__CORS__ALLOWED_ORIGINS",
            "https://app.example.com,http://localhost:5173",
        )],
        None,
        dir.path(),
    )
    .load()
    .unwrap();
    assert_eq!(
        loaded.settings.http.cors.allowed_origins,
        ["https://app.example.com", "http://localhost:5173"]
    );
    let defaults = sources(&[], None, dir.path()).load().unwrap();
    assert!(defaults.settings.http.cors.allowed_origins.is_empty());
}

#[test]
fn cors_allowed_origins_refuse_wildcards_and_anything_but_a_bare_origin() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "*",
        "https://*.example.com",
        "null",
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com/",
        "https://app.example.com/app",
        "https://app.example.com?x=1",
        "https://user@app.example.com",
        "https://App.Example.com",
        "https://app.example.com:443",
        "http://app.example.com:80",
        "https://app.example.com:0",
        "https://app.example.com:65536",
        "https://app.example.com:08080",
        "https://",
        "http://[::1",
        "http://[0:0:0:0:0:0:0:1]",
        "",
    ] {
        let text = err_text(&sources(
            &[("AUTHD__HTTP__CORS__ALLOWED_ORIGINS", bad)],
            None,
            dir.path(),
        ));
        assert!(
            text.contains("http.cors.allowed_origins"),
            "{bad:?} must be refused with the key named: {text}"
        );
    }
    for good in [
        "https://app.example.com",
        "http://localhost:5173",
        "http://127.0.0.1:8080",
        "http://[::1]:3000",
        "https://app.example.com:8443",
    ] {
        assert_eq!(origin_problem(good), None, "{good}");
    }
    let file = dir.path().join("cors.toml");
    std::fs::write(&file, "[http.cors]\nallowed_origins = [\"*\"]\n").unwrap();
    let text = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(text.contains("wildcards are not allowed"), "{text}");
    std::fs::write(&file, "[http.cors]\nallowed_methods = [\"GET\"]\n").unwrap();
    let text = err_text(&sources(&[], Some(&file), dir.path()));
    assert!(
        text.contains("allowed_methods"),
        "unknown keys are refused: {text}"
    );
    let text = err_text(&sources(
        &[("AUTHD__HTTP__CORS__MAX_AGE_SECS", "86401")],
        None,
        dir.path(),
    ));
    assert!(text.contains("http.cors.max_age_secs"), "{text}");
}
