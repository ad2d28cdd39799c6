//! Recovery codes and the 2FA overview: single use, reset, formatting, and the rules that
//! create, keep and delete the set as methods go on and off.

use authd_domain::tokens::TokenKind;
use authd_tests::two_factor::{
    assert_full_tokens, assert_no_recovery_codes, assert_notice_without_codes, assert_sudo_only,
    assert_ten_recovery_codes, assert_two_factor_required, duration_of, totp_at,
};
use authd_tests::{both_dbs, Db, TestApp};
use serde_json::json;

const PASSWORD: &str = "Correct1horse";
const ANN: &str = "ann@example.org";
const ANN_OTP: &str = "ann.codes@example.net";
const MANY_MAILS: (&str, &str) = ("AUTHD__LIMITS__OTP_MAIL__MAX", "100");

both_dbs!(
    two_factor_recovery_each_code_works_once,
    two_factor_recovery_a_reset_invalidates_the_old_set,
    two_factor_recovery_codes_are_matched_ignoring_case_spaces_and_dashes,
    two_factor_recovery_a_second_method_keeps_the_set_and_turning_off_the_last_deletes_it,
    two_factor_recovery_ten_parallel_uses_of_one_code_succeed_exactly_once,
    two_factor_recovery_an_operator_turns_two_factor_off_for_an_owner_who_lost_everything,
    two_factor_recovery_each_use_tells_the_owner_how_many_codes_are_left,
);

/// A used recovery code means a lost device or a leaked set: the login address hears of every
/// use, with the count left, in the language the user last asked for, and never sees a code.
async fn two_factor_recovery_each_use_tells_the_owner_how_many_codes_are_left(db: Db) {
    let (app, _, access, codes) = ann_with_email_otp(db).await;
    // Turning email OTP on already mailed Ann one notice.
    let before = app.wait_for_mail_to(ANN, 1).await;
    assert!(!before.subject.is_empty());
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[0]).await);
    let first = app.wait_for_mail_to(ANN, 2).await;
    assert!(
        first.text.contains("9 recovery codes left"),
        "{}",
        first.text
    );
    assert_notice_without_codes(&first, &codes);
    // A wrong code mails nothing.
    app.recovery_authenticate(&access, "AAAA-BBBB-CCCC-DDDD")
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    // The request's language wins.
    let res = app
        .post_with(
            "/user/2fa/recovery-code/authenticate?language=nl",
            &access,
            &json!({ "recoveryCode": codes[1] }),
        )
        .await;
    assert_sudo_only(&res);
    let second = app.wait_for_mail_to(ANN, 3).await;
    assert!(
        second.text.contains("nog 8 herstelcodes over"),
        "{}",
        second.text
    );
    app.wait_for_outbox_drained().await;
    assert_eq!(app.mails_to(ANN).len(), 3, "one notice per use");
}

/// `authd user reset-two-factor`, run as a separate process on the server's database: the
/// account logs in with its password alone afterwards, and its old codes are gone.
async fn two_factor_recovery_an_operator_turns_two_factor_off_for_an_owner_who_lost_everything(
    db: Db,
) {
    let (app, _, access, codes) = ann_with_email_otp(db).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authd-under-test"))
        .args(["user", "reset-two-factor", "--email", "ANN@example.org"])
        .current_dir(app.db.dir())
        .env("AUTHD_ENV", "development")
        .env("AUTHD__DATABASE__URL", &app.db.url)
        .env("AUTHD__LOG__LEVEL", "error")
        .output()
        .expect("authd runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("two-factor authentication is off for ann@example.org"),
        "{stdout}"
    );
    // A plain refresh token: no second factor is asked for.
    assert!(!app.login_ok(ANN, PASSWORD).await.is_empty());
    let overview = app.two_factor_overview(&access).await.json();
    assert_eq!(
        overview,
        json!({"enabled": false, "emailOtp": null, "totp": null, "recoveryCodes": null})
    );
    app.recovery_authenticate(&access, &codes[0])
        .await
        .assert_error(409, "RECOVERY_CODES_UNINITIALIZED");
}

/// An app where Ann has email OTP on; returns her access token and recovery codes.
async fn ann_with_email_otp(db: Db) -> (TestApp, i64, String, Vec<String>) {
    let app = TestApp::spawn_with(db, &[MANY_MAILS]).await;
    let id = app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let codes = assert_ten_recovery_codes(&app.turn_on_email_otp(&access, ANN_OTP, 1).await);
    (app, id, access, codes)
}

async fn two_factor_recovery_each_code_works_once(db: Db) {
    let (app, id, access, codes) = ann_with_email_otp(db).await;
    assert_eq!(duration_of(&app.recovery_next_guess(&access).await), 0);

    let login = assert_two_factor_required(&app.login(ANN, PASSWORD).await);
    assert_eq!(login.methods, ["emailOtp", "recoveryCode"]);
    let tokens = assert_full_tokens(&app.recovery_authenticate(&login.partial, &codes[0]).await);
    let refresh = tokens.refresh.unwrap();
    assert_eq!(
        app.get_with("/auth/refreshtoken/validate", &refresh)
            .await
            .json(),
        json!({ "userId": id })
    );
    app.recovery_authenticate(&login.partial, &codes[0])
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");

    for code in &codes[1..] {
        assert_sudo_only(&app.recovery_authenticate(&access, code).await);
        app.recovery_authenticate(&access, code)
            .await
            .assert_error(401, "RECOVERY_CODE_INVALID");
    }
    // All used up: the login no longer offers recovery codes, and none works.
    let login = assert_two_factor_required(&app.login(ANN, PASSWORD).await);
    assert_eq!(login.methods, ["emailOtp"]);
    for code in [&codes[0], &codes[9]] {
        let res = app.recovery_authenticate(&login.partial, code).await;
        assert!(
            res.status == 401 || res.status == 409,
            "a used code is refused: {} {}",
            res.status,
            res.text
        );
        assert_ne!(res.json()["message"], "INVALID_TOKEN");
    }
}

async fn two_factor_recovery_a_reset_invalidates_the_old_set(db: Db) {
    let (app, id, access, old) = ann_with_email_otp(db).await;
    // Reset takes sudo, always.
    app.recovery_reset(&access)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let sudo = assert_sudo_only(&app.recovery_authenticate(&access, &old[0]).await);
    let new = assert_ten_recovery_codes(&app.recovery_reset(&sudo).await);
    assert!(
        new.iter().all(|c| !old.contains(c)),
        "a new set: {new:?} vs {old:?}"
    );
    app.recovery_authenticate(&access, &old[1])
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    app.recovery_authenticate(&access, &old[9])
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    let sudo = assert_sudo_only(&app.recovery_authenticate(&access, &new[0]).await);
    // A second reset replaces the second set too.
    let newer = assert_ten_recovery_codes(&app.recovery_reset(&sudo).await);
    app.recovery_authenticate(&access, &new[1])
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    let partial = assert_two_factor_required(&app.login(ANN, PASSWORD).await).partial;
    assert_full_tokens(&app.recovery_authenticate(&partial, &newer[5]).await);
    // The reset leaves 2FA on, with the same methods.
    let overview = app.two_factor_overview(&access).await.json();
    assert_eq!(overview["enabled"], true, "{overview}");
    assert_eq!(overview["emailOtp"]["email"], ANN_OTP, "{overview}");
    assert!(overview["recoveryCodes"]["completedAt"].is_string());
    // A minted sudo token of another user cannot reset Ann's codes.
    let other = app.create_user("bob@example.org", PASSWORD).await;
    assert_ne!(other, id);
    app.recovery_reset(&app.mint(TokenKind::Sudo, other))
        .await
        .assert_error(409, "2FA_IS_DISABLED");
    assert_sudo_only(&app.recovery_authenticate(&access, &newer[6]).await);
}

fn chunks(code: &str) -> Vec<String> {
    code.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect()
}

async fn two_factor_recovery_codes_are_matched_ignoring_case_spaces_and_dashes(db: Db) {
    let (app, _, access, codes) = ann_with_email_otp(db).await;
    let variants: Vec<String> = vec![
        // "abcd-efgh ijkl-mnpq"
        {
            let c = chunks(&codes[0].to_lowercase());
            format!("{}-{} {}-{}", c[0], c[1], c[2], c[3])
        },
        chunks(&codes[1]).join(" "),
        chunks(&codes[2]).join("-"),
        codes[3].to_lowercase(),
        format!(" {} ", chunks(&codes[4].to_lowercase()).join(" - ")),
        // Mixed case.
        codes[5]
            .chars()
            .enumerate()
            .map(|(i, ch)| {
                if i % 2 == 0 {
                    ch.to_ascii_lowercase()
                } else {
                    ch
                }
            })
            .collect(),
    ];
    for (i, v) in variants.iter().enumerate() {
        let res = app.recovery_authenticate(&access, v).await;
        assert_eq!(
            res.status, 200,
            "variant {v:?} of {}: {}",
            codes[i], res.text
        );
        assert_sudo_only(&res);
    }
    // A used code stays used in any spelling.
    app.recovery_authenticate(&access, &codes[0])
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    app.recovery_authenticate(&access, &chunks(&codes[1]).join("-"))
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[6]).await);
    // A near miss is no match.
    let mut near: Vec<char> = codes[7].chars().collect();
    near[15] = if near[15] == '2' { '3' } else { '2' };
    let near: String = near.into_iter().collect();
    app.recovery_authenticate(&access, &near)
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[7]).await);
}

fn parse_time(v: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time string: {v}")))
        .unwrap_or_else(|e| panic!("RFC 3339 ({e}): {v}"))
}

fn assert_overview_keys(overview: &serde_json::Value) {
    let mut keys: Vec<&str> = overview
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["emailOtp", "enabled", "recoveryCodes", "totp"],
        "{overview}"
    );
}

async fn two_factor_recovery_a_second_method_keeps_the_set_and_turning_off_the_last_deletes_it(
    db: Db,
) {
    let app = TestApp::spawn_with(db, &[MANY_MAILS]).await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let res = app.two_factor_overview(&access).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        res.json(),
        json!({ "enabled": false, "emailOtp": null, "totp": null, "recoveryCodes": null })
    );
    app.recovery_next_guess(&access)
        .await
        .assert_error(409, "RECOVERY_CODES_UNINITIALIZED");
    app.recovery_authenticate(&access, "ABCDEFGHJKMNPQRS")
        .await
        .assert_error(409, "RECOVERY_CODES_UNINITIALIZED");

    // First method: a new set.
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let codes = assert_ten_recovery_codes(&app.turn_on_email_otp(&access, ANN_OTP, 1).await);
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    let overview = app.two_factor_overview(&access).await.json();
    assert_overview_keys(&overview);
    assert_eq!(overview["enabled"], true);
    let email_done = parse_time(&overview["emailOtp"]["completedAt"]);
    let codes_done = parse_time(&overview["recoveryCodes"]["completedAt"]);
    for t in [email_done, codes_done] {
        assert!(before <= t && t <= after, "{t} within the enable call");
    }
    assert_eq!(
        overview["emailOtp"].as_object().unwrap().len(),
        2,
        "email and completedAt: {overview}"
    );
    assert!(overview["totp"].is_null());
    assert_eq!(duration_of(&app.recovery_next_guess(&access).await), 0);

    // Second method: nothing new, the set is kept.
    let sudo = assert_sudo_only(&app.recovery_authenticate(&access, &codes[0]).await);
    let (url, res) = app.turn_on_totp(&sudo, &access).await;
    assert_no_recovery_codes(&res);
    let overview = app.two_factor_overview(&access).await.json();
    assert_overview_keys(&overview);
    assert_eq!(
        overview["totp"].as_object().unwrap().len(),
        1,
        "only completedAt: {overview}"
    );
    parse_time(&overview["totp"]["completedAt"]);
    assert_eq!(
        parse_time(&overview["recoveryCodes"]["completedAt"]),
        codes_done,
        "the set is the same"
    );
    let login = assert_two_factor_required(&app.login(ANN, PASSWORD).await);
    assert_eq!(login.methods, ["emailOtp", "totp", "recoveryCode"]);
    assert_full_tokens(&app.recovery_authenticate(&login.partial, &codes[1]).await);

    // Turning one off keeps 2FA on and the set.
    let sudo = assert_sudo_only(&app.recovery_authenticate(&access, &codes[2]).await);
    let res = app.email_otp_disable(&sudo).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let overview = app.two_factor_overview(&access).await.json();
    assert_eq!(overview["enabled"], true, "{overview}");
    assert!(overview["emailOtp"].is_null(), "{overview}");
    assert!(overview["totp"].is_object(), "{overview}");
    assert!(overview["recoveryCodes"].is_object(), "{overview}");
    let login = assert_two_factor_required(&app.login(ANN, PASSWORD).await);
    assert_eq!(login.methods, ["totp", "recoveryCode"]);
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[3]).await);

    // Turning off the last one turns 2FA off and deletes the set.
    let sudo = assert_sudo_only(
        &app.totp_authenticate(&access, &totp_at(&url, app.now_secs()))
            .await,
    );
    let res = app.totp_disable(&sudo).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        app.two_factor_overview(&access).await.json(),
        json!({ "enabled": false, "emailOtp": null, "totp": null, "recoveryCodes": null })
    );
    app.recovery_authenticate(&access, &codes[4])
        .await
        .assert_error(409, "RECOVERY_CODES_UNINITIALIZED");
    app.recovery_next_guess(&access)
        .await
        .assert_error(409, "RECOVERY_CODES_UNINITIALIZED");
    app.recovery_reset(&sudo)
        .await
        .assert_error(409, "2FA_IS_DISABLED");
    app.login_ok(ANN, PASSWORD).await;

    // Each change was announced to the login address: two on, two off, and each of the four
    // recovery codes used.
    let eighth = app.wait_for_mail_to(ANN, 8).await;
    assert_notice_without_codes(&eighth, &codes);
    app.wait_for_outbox_drained().await;
    assert_eq!(app.mails_to(ANN).len(), 8, "one notice per change");

    // On again: a new set, the old one is gone for good.
    let fresh = assert_ten_recovery_codes(&app.turn_on_email_otp(&access, ANN_OTP, 2).await);
    assert!(fresh.iter().all(|c| !codes.contains(c)));
    app.recovery_authenticate(&access, &codes[5])
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    assert_sudo_only(&app.recovery_authenticate(&access, &fresh[0]).await);
}

async fn two_factor_recovery_ten_parallel_uses_of_one_code_succeed_exactly_once(db: Db) {
    let app = TestApp::spawn_with(
        db,
        &[
            MANY_MAILS,
            (
                "AUTHD__LIMITS__RECOVERY_CODE_BACKOFF__FREE_FAILURES",
                "1000",
            ),
        ],
    )
    .await;
    app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    let codes = assert_ten_recovery_codes(&app.turn_on_email_otp(&access, ANN_OTP, 1).await);
    // One failure first, so that the parallel failures below only add to a streak on record.
    app.recovery_authenticate(&access, "2222333344445555")
        .await
        .assert_error(401, "RECOVERY_CODE_INVALID");
    let partial = assert_two_factor_required(&app.login(ANN, PASSWORD).await).partial;
    let replies = futures_util::future::join_all((0..10).map(|i| {
        let token = if i % 2 == 0 { &access } else { &partial };
        app.recovery_authenticate(token, &codes[3])
    }))
    .await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok,
        1,
        "exactly one use succeeds: {:?}",
        replies
            .iter()
            .map(|r| (r.status.as_u16(), r.text.as_str()))
            .collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(401, "RECOVERY_CODE_INVALID");
    }
    // The other codes are untouched.
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[4]).await);
}
