//! Every mail kind, in every shipped language, rendered by `authd mail preview` as an operator
//! would, compared with a reviewed snapshot (subject, text part, and the visible text of the
//! HTML part). Codes and times are masked so the snapshots hold only what a translator or
//! reviewer changes. Update after a deliberate template change with
//! `INSTA_UPDATE=always cargo nextest run -p authd-tests -E 'test(notices)'` and review the diff.

use std::process::Command;

const KINDS: &[&str] = &[
    "password_reset",
    "password_changed",
    "email_otp_setup",
    "email_otp_challenge",
    "two_factor_changed",
    "recovery_codes_reset",
    "recovery_code_used",
    "email_transfer_verify",
    "email_changed",
];

fn preview(kind: &str, language: &str) -> authd_tests::Mail {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_authd-under-test"))
        .args(["mail", "preview", "--kind", kind, "--language", language])
        .current_dir(dir.path())
        .env("AUTHD_ENV", "development")
        .env("AUTHD__MAIL__TEMPLATES_DIR", authd_tests::templates_dir())
        .output()
        .expect("authd runs");
    assert!(
        out.status.success(),
        "{kind}/{language}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    authd_tests::Mail::parse(
        format!("{kind}.{language}.eml").into(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The text a reader sees in the HTML part: tags dropped, entities of the templates decoded
/// (numeric ones are the preheader's invisible padding), whitespace collapsed, one line per
/// block.
fn visible_text(html: &str) -> String {
    let body = html
        .split_once("<body")
        .and_then(|(_, b)| b.split_once('>'))
        .map_or(html, |(_, b)| b);
    let mut out = String::new();
    let mut in_tag = false;
    let mut tag = String::new();
    for ch in body.chars() {
        match ch {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                if matches!(name, "p" | "br" | "h1" | "h2" | "tr" | "div" | "li") {
                    out.push('\n');
                }
            }
            c if in_tag => tag.push(c),
            c => out.push(c),
        }
    }
    let mut plain = String::new();
    let mut rest = out.as_str();
    while let Some(i) = rest.find("&#") {
        plain.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        match tail.find(';') {
            Some(j) if tail[..j].bytes().all(|b| b.is_ascii_digit()) => rest = &tail[j + 1..],
            _ => {
                plain.push_str("&#");
                rest = tail;
            }
        }
    }
    plain.push_str(rest);
    let out = plain
        .replace("&#x2F;", "/")
        .replace("&amp;", "&")
        .replace("&nbsp;", " ")
        .replace("&#39;", "'")
        .replace("&quot;", "\"");
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_mail_kind_renders_in_every_language_as_reviewed() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"\b\d{6}\b", "[code]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "[time]");
    settings.bind(|| {
        for kind in KINDS {
            for language in ["en", "nl", "fr", "de"] {
                let mail = preview(kind, language);
                assert_eq!(mail.to, "ann@example.org");
                assert!(!mail.subject.is_empty(), "{kind}/{language}: no subject");
                assert!(
                    !mail.text.trim().is_empty(),
                    "{kind}/{language}: no text part"
                );
                assert!(
                    mail.html.contains("</html>"),
                    "{kind}/{language}: no HTML part"
                );
                let seen = format!(
                    "subject: {}\n\n--- text ---\n{}\n\n--- html (visible text) ---\n{}\n",
                    mail.subject,
                    mail.text.trim_end(),
                    visible_text(&mail.html)
                );
                insta::assert_snapshot!(format!("{kind}.{language}"), seen);
            }
        }
    });
}
