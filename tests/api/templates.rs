//! `authd templates check` and `authd mail preview`, run as an operator would.

use std::process::Command;

fn authd(args: &[&str], templates: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_authd-under-test"))
        .args(args)
        .current_dir(dir.path())
        .env("AUTHD_ENV", "development")
        .env("AUTHD__MAIL__TEMPLATES_DIR", templates)
        .output()
        .expect("authd runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn templates_check_passes_on_the_shipped_templates() {
    let (code, out, err) = authd(&["templates", "check"], &authd_tests::templates_dir());
    assert_eq!(code, 0, "{out}\n{err}");
    for kind in [
        "password_reset",
        "password_changed",
        "email_otp_setup",
        "email_otp_challenge",
        "two_factor_changed",
        "recovery_codes_reset",
        "recovery_code_used",
        "email_transfer_verify",
        "email_changed",
    ] {
        for lang in ["en", "nl", "fr", "de"] {
            assert!(
                out.contains(&format!("ok       default {kind} {lang}")),
                "{kind} {lang}: {out}"
            );
        }
    }
    assert!(out.contains("ok       acme password_reset en"), "{out}");
}

#[test]
fn templates_check_fails_and_names_a_missing_language_and_a_broken_template() {
    let scratch = tempfile::tempdir().unwrap();
    let dst = scratch.path().join("t");
    let status = Command::new("cp")
        .args(["-r", &authd_tests::templates_dir()])
        .arg(&dst)
        .status()
        .unwrap();
    assert!(status.success());
    for part in ["subject", "txt", "html"] {
        std::fs::remove_file(dst.join(format!("password_changed/nl.{part}.tera"))).unwrap();
    }
    std::fs::write(dst.join("password_reset/de.txt.tera"), "{{ nope }}").unwrap();
    let (code, _, err) = authd(&["templates", "check"], dst.to_str().unwrap());
    assert_eq!(code, 1);
    assert!(
        err.contains("MISSING  default password_changed nl"),
        "{err}"
    );
    assert!(err.contains("FAILED   default password_reset de"), "{err}");
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn mail_preview_prints_a_message_a_mail_parser_reads() {
    let (code, out, err) = authd(
        &[
            "mail",
            "preview",
            "--kind",
            "password_reset",
            "--language",
            "fr",
        ],
        &authd_tests::templates_dir(),
    );
    assert_eq!(code, 0, "{err}");
    let mail = authd_tests::Mail::parse("preview.eml".into(), out);
    assert_eq!(mail.to, "ann@example.org");
    assert!(mail.subject.contains("mot de passe"), "{}", mail.subject);
    assert_eq!(mail.code(), "123456");
    assert!(mail.html.contains("123456"));
    // The kind and the language used, for the development mailbox and receivers' filters.
    assert!(
        mail.raw.contains("\r\nX-Authd-Kind: password_reset\r\n"),
        "{}",
        mail.raw
    );
    assert!(
        mail.raw.contains("\r\nX-Authd-Language: fr\r\n"),
        "{}",
        mail.raw
    );

    let (code, _, err) = authd(
        &["mail", "preview", "--kind", "nope"],
        &authd_tests::templates_dir(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("known kinds: password_reset, password_changed"),
        "{err}"
    );
}
