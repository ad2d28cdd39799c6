//! TOTP (RFC 6238) end to end, with every code computed by PyPI's pyotp from the
//! `otpauth://` URL the server returns, never by the crate the server uses.

use authd_tests::two_factor::{
    assert_bad_request, assert_full_tokens, assert_no_recovery_codes, assert_notice_without_codes,
    assert_sudo_only, assert_ten_recovery_codes, assert_two_factor_required, duration_of,
    pyotp_parse, step_of, totp_at, totp_codes, STEP_SECS,
};
use authd_tests::{both_dbs, seal_like_the_first_releases, Db, TestApp};
use futures_util::future::join_all;

const PASSWORD: &str = "Correct1horse";
const ANN: &str = "ann@example.org";

both_dbs!(
    two_factor_totp_setup_returns_an_otpauth_url_that_an_independent_implementation_reads,
    two_factor_totp_enable_and_authenticate_accept_the_current_and_previous_step_only_once,
    two_factor_totp_ten_parallel_uses_of_one_code_succeed_exactly_once,
    two_factor_totp_parallel_enables_with_one_code_make_one_recovery_set,
    two_factor_totp_a_new_setup_replaces_the_pending_secret_and_the_active_one_works_until_enable,
    two_factor_totp_deactivation_needs_sudo_and_turns_two_factor_off,
    two_factor_totp_a_corrupt_secret_answers_500_totp_corrupt_and_nothing_else_breaks,
    two_factor_totp_a_secret_sealed_by_the_first_releases_still_signs_in,
);

async fn app_with_ann(db: Db, overrides: &[(&str, &str)]) -> (TestApp, i64, String) {
    let app = TestApp::spawn_with(db, overrides).await;
    let id = app.create_user(ANN, PASSWORD).await;
    let access = app.login_access(ANN, PASSWORD).await;
    (app, id, access)
}

/// The value of a query parameter of a URL (no percent-decoding).
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Percent-decodes a URL part (RFC 3986; `+` is no space here).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad escape in {s}")));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Checks the `otpauth://` URL: the label `<issuer>:<email>` and the issuer parameter
/// percent-encoded (characters outside RFC 3986's unreserved set escaped; escaping more is
/// allowed), and the parameters of the contract. Returns the secret.
fn assert_url_shape(url: &str, issuer: &str) -> String {
    let rest = url
        .strip_prefix("otpauth://totp/")
        .unwrap_or_else(|| panic!("an otpauth TOTP URL: {url}"));
    let (label, query) = rest
        .split_once('?')
        .unwrap_or_else(|| panic!("a query: {url}"));
    let (label_issuer, account) = label
        .split_once(':')
        .unwrap_or_else(|| panic!("issuer:account: {url}"));
    for part in [
        label_issuer,
        account,
        query_param(url, "issuer").unwrap_or(""),
    ] {
        assert!(
            part.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "percent-encoded: {part:?} in {url}"
        );
    }
    assert_eq!(percent_decode(label_issuer), issuer, "{url}");
    assert_eq!(percent_decode(account), ANN, "{url}");
    let mut keys: Vec<&str> = query
        .split('&')
        .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k))
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["algorithm", "digits", "issuer", "period", "secret"],
        "{url}"
    );
    assert_eq!(
        query_param(url, "issuer").map(percent_decode).as_deref(),
        Some(issuer),
        "{url}"
    );
    assert_eq!(query_param(url, "algorithm"), Some("SHA1"), "{url}");
    assert_eq!(query_param(url, "digits"), Some("6"), "{url}");
    assert_eq!(query_param(url, "period"), Some("30"), "{url}");
    let secret = query_param(url, "secret").unwrap().to_owned();
    assert_eq!(secret.len(), 32, "160 bits in base32, no padding: {secret}");
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "RFC 4648 base32: {secret}"
    );

    let parsed = pyotp_parse(url);
    assert_eq!(parsed["type"], "TOTP", "{parsed}");
    assert_eq!(parsed["name"], ANN, "{parsed}");
    assert_eq!(parsed["issuer"], issuer, "{parsed}");
    assert_eq!(parsed["digits"], 6, "{parsed}");
    assert_eq!(parsed["interval"], 30, "{parsed}");
    assert_eq!(parsed["digest"], "sha1", "{parsed}");
    assert_eq!(parsed["secret"], secret.as_str(), "{parsed}");
    secret
}

async fn two_factor_totp_setup_returns_an_otpauth_url_that_an_independent_implementation_reads(
    db: Db,
) {
    let (app, id, access) = app_with_ann(db, &[]).await;
    let res = app.totp_setup(&access, "").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        res.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = res.json();
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only url: {body}"
    );
    let url = body["url"].as_str().unwrap().to_owned();
    let first = assert_url_shape(&url, "Example");

    // The secret is stored encrypted: neither the base32 text nor its bytes appear.
    let stored = app
        .query_texts(&format!(
            "SELECT pending_secret_enc AS value FROM totp_secrets WHERE user_id = {id}"
        ))
        .await;
    assert_eq!(stored.len(), 1, "one row: {stored:?}");
    let stored = stored[0].clone().expect("a pending secret is stored");
    assert!(
        !stored.to_uppercase().contains(&first),
        "the secret is not stored in clear"
    );
    let active = app
        .query_texts(&format!(
            "SELECT secret_enc AS value FROM totp_secrets WHERE user_id = {id}"
        ))
        .await;
    assert_eq!(active, vec![None], "nothing is active before enable");

    // Pending is not on: the overview shows no TOTP and 2FA stays off.
    let overview = app.two_factor_overview(&access).await.json();
    assert_eq!(overview["enabled"], false, "{overview}");
    assert!(overview["totp"].is_null(), "{overview}");

    // Each setup makes a new secret; another origin names its own product as issuer.
    let url = app.totp_setup_url(&access).await;
    let second = assert_url_shape(&url, "Example");
    assert_ne!(first, second, "a new secret per setup");
    let res = app.totp_setup(&access, "?origin=acme").await;
    assert_eq!(res.status, 200, "{}", res.text);
    let url = res.json()["url"].as_str().unwrap().to_owned();
    let third = assert_url_shape(&url, "Acme Corp");
    assert_ne!(third, second);
}

async fn two_factor_totp_enable_and_authenticate_accept_the_current_and_previous_step_only_once(
    db: Db,
) {
    let (app, id, access) = app_with_ann(db, &[]).await;

    // Nothing set up yet.
    app.totp_enable(&access, "123456")
        .await
        .assert_error(409, "TOTP_UNINITIALIZED");
    app.totp_authenticate(&access, "123456")
        .await
        .assert_error(409, "TOTP_UNINITIALIZED");
    app.totp_next_guess(&access)
        .await
        .assert_error(409, "TOTP_UNINITIALIZED");

    let s = app.wait_for_room_in_step(8);
    let t = app.now_secs();
    let url = app.totp_setup_url(&access).await;
    assert_eq!(duration_of(&app.totp_next_guess(&access).await), 0);
    // A pending secret is not active.
    app.totp_authenticate(&access, &totp_at(&url, t))
        .await
        .assert_error(409, "TOTP_UNINITIALIZED");

    // Two steps back and one step ahead are refused; the previous step is accepted.
    let [two_back, previous, next] = <[String; 3]>::try_from(totp_codes(
        &url,
        &[t - 2 * STEP_SECS, t - STEP_SECS, t + STEP_SECS],
    ))
    .unwrap();
    assert_ne!(two_back, previous, "the steps give different codes here");
    app.totp_enable(&access, &two_back)
        .await
        .assert_error(401, "TOTP_INVALID");
    app.totp_enable(&access, &next)
        .await
        .assert_error(401, "TOTP_INVALID");
    let codes = assert_ten_recovery_codes(&app.totp_enable(&access, &previous).await);

    // Malformed codes are 400 whatever the state.
    for bad in ["12345", "1234567", "12345a", ""] {
        assert_bad_request(&app.totp_authenticate(&access, bad).await);
    }

    let overview = app.two_factor_overview(&access).await.json();
    assert_eq!(overview["enabled"], true, "{overview}");
    assert!(overview["totp"]["completedAt"].is_string(), "{overview}");

    let notice = app.wait_for_mail_to(ANN, 1).await;
    assert_notice_without_codes(&notice, &codes);

    let login = assert_two_factor_required(&app.login(ANN, PASSWORD).await);
    assert_eq!(login.methods, ["totp", "recoveryCode"]);

    // In the next step, the code of step s is the previous step's: accepted with the partial
    // token from the login, and it gives a full login.
    let s1 = app.wait_for_step_after(s);
    assert_eq!(s1, s + 1);
    let of_s = totp_at(&url, s * STEP_SECS);
    let tokens = assert_full_tokens(&app.totp_authenticate(&login.partial, &of_s).await);
    let refresh = tokens.refresh.unwrap();
    let fresh_access = app.access_token(&refresh).await;
    assert_eq!(
        app.get_with("/auth/accesstoken/validate", &fresh_access)
            .await
            .json(),
        serde_json::json!({ "userId": id })
    );
    assert_eq!(
        app.get_with("/auth/accesstoken/validate", &tokens.access.unwrap())
            .await
            .json(),
        serde_json::json!({ "userId": id })
    );

    // The same code twice is refused, and so is the step accepted at enable.
    app.totp_authenticate(&access, &of_s)
        .await
        .assert_error(401, "TOTP_INVALID");
    app.totp_authenticate(&access, &previous)
        .await
        .assert_error(401, "TOTP_INVALID");
    // The current step works once, with an access token giving only a sudo token.
    let current = totp_at(&url, s1 * STEP_SECS);
    let sudo = assert_sudo_only(&app.totp_authenticate(&access, &current).await);
    assert_eq!(
        authd_tests::two_factor::claims_of(&sudo)["sub"],
        id.to_string()
    );
    app.totp_authenticate(&access, &current)
        .await
        .assert_error(401, "TOTP_INVALID");
}

async fn two_factor_totp_ten_parallel_uses_of_one_code_succeed_exactly_once(db: Db) {
    // The losers must see TOTP_INVALID, not the guessing backoff.
    let (app, _, access) = app_with_ann(
        db,
        &[("AUTHD__LIMITS__TOTP_BACKOFF__FREE_FAILURES", "1000")],
    )
    .await;
    app.wait_for_room_in_step(10);
    let (url, res) = app.turn_on_totp(&access, &access).await;
    assert_ten_recovery_codes(&res);
    let partial = assert_two_factor_required(&app.login(ANN, PASSWORD).await).partial;
    let code = totp_at(&url, app.now_secs());
    // Five with the access token, five with the partial token, all at once.
    let replies = join_all((0..10).map(|i| {
        let token = if i % 2 == 0 { &access } else { &partial };
        app.totp_authenticate(token, &code)
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
        r.assert_error(401, "TOTP_INVALID");
    }
}

async fn two_factor_totp_a_new_setup_replaces_the_pending_secret_and_the_active_one_works_until_enable(
    db: Db,
) {
    let (app, _, access) = app_with_ann(db, &[]).await;
    app.wait_for_room_in_step(10);
    let (url1, res) = app.turn_on_totp(&access, &access).await;
    let s = step_of(app.now_secs());
    let codes = assert_ten_recovery_codes(&res);

    // With TOTP on, setup takes a sudo token only.
    app.totp_setup(&access, "")
        .await
        .assert_error(401, "INVALID_TOKEN");
    let sudo = assert_sudo_only(&app.recovery_authenticate(&access, &codes[0]).await);
    let url2 = app.totp_setup_url(&sudo).await;
    let url3 = app.totp_setup_url(&sudo).await;
    assert_ne!(pyotp_parse(&url2)["secret"], pyotp_parse(&url3)["secret"]);
    let t = s * STEP_SECS;
    // url2 was replaced by url3 before it was enabled.
    app.totp_enable(&access, &totp_at(&url2, t))
        .await
        .assert_error(401, "TOTP_INVALID");
    // The active secret keeps working while a new one is pending, and the pending one does
    // not authenticate.
    app.totp_authenticate(&access, &totp_at(&url3, t))
        .await
        .assert_error(401, "TOTP_INVALID");
    assert_sudo_only(&app.totp_authenticate(&access, &totp_at(&url1, t)).await);

    let s1 = app.wait_for_step_after(s);
    assert_no_recovery_codes(
        &app.totp_enable(&access, &totp_at(&url3, s1 * STEP_SECS))
            .await,
    );
    // The recovery set is kept.
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[1]).await);
    app.totp_enable(&access, &totp_at(&url3, s1 * STEP_SECS))
        .await
        .assert_error(409, "TOTP_UNINITIALIZED");

    // From the next step on, the old secret is gone and the new one is active.
    let s2 = app.wait_for_step_after(s1);
    let t2 = s2 * STEP_SECS;
    app.totp_authenticate(&access, &totp_at(&url1, t2))
        .await
        .assert_error(401, "TOTP_INVALID");
    assert_sudo_only(&app.totp_authenticate(&access, &totp_at(&url3, t2)).await);
}

async fn two_factor_totp_deactivation_needs_sudo_and_turns_two_factor_off(db: Db) {
    let (app, id, access) = app_with_ann(db, &[]).await;
    // Nothing to deactivate yet.
    app.totp_disable(&app.mint(authd_domain::tokens::TokenKind::Sudo, id))
        .await
        .assert_error(409, "TOTP_ALREADY_INACTIVE");
    let (url, res) = app.turn_on_totp(&access, &access).await;
    let codes = assert_ten_recovery_codes(&res);
    app.totp_disable(&access)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let sudo = assert_sudo_only(
        &app.totp_authenticate(&access, &totp_at(&url, app.now_secs()))
            .await,
    );
    let res = app.totp_disable(&sudo).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    app.totp_disable(&sudo)
        .await
        .assert_error(409, "TOTP_ALREADY_INACTIVE");

    app.totp_authenticate(&access, &totp_at(&url, app.now_secs()))
        .await
        .assert_error(409, "TOTP_UNINITIALIZED");
    // It was the last method: 2FA is off, the recovery codes are gone, login is plain again.
    app.recovery_authenticate(&access, &codes[1])
        .await
        .assert_error(409, "RECOVERY_CODES_UNINITIALIZED");
    let overview = app.two_factor_overview(&access).await.json();
    assert_eq!(
        overview,
        serde_json::json!({ "enabled": false, "emailOtp": null, "totp": null, "recoveryCodes": null })
    );
    app.login_ok(ANN, PASSWORD).await;
    // One notice for on, one for off.
    let off = app.wait_for_mail_to(ANN, 2).await;
    assert_notice_without_codes(&off, &codes);
}

async fn two_factor_totp_a_corrupt_secret_answers_500_totp_corrupt_and_nothing_else_breaks(db: Db) {
    // 500s must stay 500s here, whether or not they count as failures.
    let (app, id, access) = app_with_ann(
        db,
        &[("AUTHD__LIMITS__TOTP_BACKOFF__FREE_FAILURES", "1000")],
    )
    .await;
    app.create_user("bob@example.org", PASSWORD).await;
    let (url, res) = app.turn_on_totp(&access, &access).await;
    let codes = assert_ten_recovery_codes(&res);

    // Flip one character in the middle of the stored ciphertext.
    let stored = app
        .query_texts(&format!(
            "SELECT secret_enc AS value FROM totp_secrets WHERE user_id = {id}"
        ))
        .await
        .remove(0)
        .expect("an active secret is stored");
    let mut chars: Vec<char> = stored.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    let flipped: String = chars.into_iter().collect();
    assert_eq!(
        app.execute_sql(&format!(
            "UPDATE totp_secrets SET secret_enc = '{flipped}' WHERE user_id = {id}"
        ))
        .await,
        1
    );
    let res = app
        .totp_authenticate(&access, &totp_at(&url, app.now_secs()))
        .await;
    res.assert_error(500, "TOTP_CORRUPT");

    // Other valid base64, and plain garbage.
    for value in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "not a ciphertext at all %%%",
    ] {
        assert_eq!(
            app.execute_sql(&format!(
                "UPDATE totp_secrets SET secret_enc = '{value}' WHERE user_id = {id}"
            ))
            .await,
            1
        );
        app.totp_authenticate(&access, &totp_at(&url, app.now_secs()))
            .await
            .assert_error(500, "TOTP_CORRUPT");
    }

    // The login still asks for a second factor, TOTP fails the same way with the partial
    // token, and a recovery code gets the user in.
    let login = assert_two_factor_required(&app.login(ANN, PASSWORD).await);
    assert_eq!(login.methods, ["totp", "recoveryCode"]);
    app.totp_authenticate(&login.partial, &totp_at(&url, app.now_secs()))
        .await
        .assert_error(500, "TOTP_CORRUPT");
    let tokens = assert_full_tokens(&app.recovery_authenticate(&login.partial, &codes[0]).await);
    let overview = app.two_factor_overview(&access).await;
    assert_eq!(overview.status, 200, "{}", overview.text);
    assert_eq!(overview.json()["enabled"], true);
    assert_eq!(duration_of(&app.totp_next_guess(&access).await), 0);
    // Other users are not touched.
    let bob = app.login_access("bob@example.org", PASSWORD).await;
    assert_eq!(app.two_factor_overview(&bob).await.status, 200);
    assert_eq!(app.readyz().await.status, 200);

    // A corrupt pending secret fails enable the same way.
    let url2 = app.totp_setup_url(&tokens.sudo).await;
    assert_eq!(
        app.execute_sql(&format!(
            "UPDATE totp_secrets SET pending_secret_enc = 'garbage' WHERE user_id = {id}"
        ))
        .await,
        1
    );
    app.totp_enable(&access, &totp_at(&url2, app.now_secs()))
        .await
        .assert_error(500, "TOTP_CORRUPT");

    // The way out: deactivate with sudo (no decryption needed) and set TOTP up anew.
    let res = app.totp_disable(&tokens.sudo).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let url3 = app.totp_setup_url(&access).await;
    assert_ten_recovery_codes(
        &app.totp_enable(&access, &totp_at(&url3, app.now_secs()))
            .await,
    );
}

async fn two_factor_totp_parallel_enables_with_one_code_make_one_recovery_set(db: Db) {
    let (app, id, access) = app_with_ann(
        db,
        &[("AUTHD__LIMITS__TOTP_BACKOFF__FREE_FAILURES", "1000")],
    )
    .await;
    app.wait_for_room_in_step(5);
    let url = app.totp_setup_url(&access).await;
    let code = totp_at(&url, app.now_secs() - STEP_SECS);
    let replies = join_all((0..6).map(|_| app.totp_enable(&access, &code))).await;
    let winners: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one enable succeeds: {:?}",
        replies
            .iter()
            .map(|r| (r.status.as_u16(), r.text.as_str()))
            .collect::<Vec<_>>()
    );
    let codes = assert_ten_recovery_codes(winners[0]);
    for r in replies.iter().filter(|r| r.status != 200) {
        let message = r.json()["message"].clone();
        assert!(
            (r.status == 401 && message == "TOTP_INVALID")
                || (r.status == 409 && message == "TOTP_UNINITIALIZED"),
            "a losing enable: {} {}",
            r.status,
            r.text
        );
    }
    let stored = app
        .query_texts(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) AS value FROM recovery_codes WHERE user_id = {id}"
        ))
        .await;
    assert_eq!(stored, vec![Some("10".to_owned())], "one set of ten codes");
    assert_sudo_only(&app.recovery_authenticate(&access, &codes[0]).await);
}

/// RFC 4648 base32 (upper case, padding optional), as in `otpauth://` secrets.
fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut acc, mut out) = (0u32, 0u64, Vec::new());
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("base32: {s}"));
        acc = (acc << 5) | v as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A row written before the per-purpose keys were derived with HKDF: the active TOTP secret
/// is replaced by the same secret sealed the old way, and a login with a TOTP code works.
async fn two_factor_totp_a_secret_sealed_by_the_first_releases_still_signs_in(db: Db) {
    let (app, id, access) = app_with_ann(db, &[]).await;
    let (url, res) = app.turn_on_totp(&access, &access).await;
    assert_ten_recovery_codes(&res);
    let stored = app
        .query_texts(&format!(
            "SELECT secret_enc AS value FROM totp_secrets WHERE user_id = {id}"
        ))
        .await
        .remove(0)
        .expect("an active secret is stored");
    assert!(stored.starts_with("v2."), "new rows are marked: {stored}");

    let secret = base32_decode(pyotp_parse(&url)["secret"].as_str().expect("a secret"));
    assert_eq!(secret.len(), 20, "a 160-bit secret");
    let old = seal_like_the_first_releases(
        app.env["AUTHD__SECRETS__TOTP_KEY"].as_bytes(),
        b"authd/totp/v1",
        format!("user:{id}").as_bytes(),
        &secret,
    );
    assert_eq!(
        app.execute_sql(&format!(
            "UPDATE totp_secrets SET secret_enc = '{old}' WHERE user_id = {id}"
        ))
        .await,
        1
    );

    let login = assert_two_factor_required(&app.login(ANN, PASSWORD).await);
    assert_full_tokens(
        &app.totp_authenticate(&login.partial, &totp_at(&url, app.now_secs()))
            .await,
    );

    // The same old-style value does not open for another user: the context still binds it.
    let bob = app.create_user("bob@example.org", PASSWORD).await;
    let bob_access = app.login_access("bob@example.org", PASSWORD).await;
    let (_, res) = app.turn_on_totp(&bob_access, &bob_access).await;
    assert_ten_recovery_codes(&res);
    assert_eq!(
        app.execute_sql(&format!(
            "UPDATE totp_secrets SET secret_enc = '{old}' WHERE user_id = {bob}"
        ))
        .await,
        1
    );
    app.totp_authenticate(&bob_access, &totp_at(&url, app.now_secs()))
        .await
        .assert_error(500, "TOTP_CORRUPT");
}
