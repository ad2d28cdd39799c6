//! Login and tokens: the life cycle, kinds, expiry, signatures, JWKS, password backoff,
//! password change and revocation.

use std::time::{Duration, Instant};

use authd_domain::tokens::TokenKind;
use authd_tests::{both_dbs, Db, TestApp};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const PASSWORD: &str = "Correct1horse";

both_dbs!(
    the_token_life_cycle_from_login_to_logout,
    presenting_a_rotated_refresh_token_revokes_the_whole_login,
    expired_tokens_are_refused,
    each_token_kind_is_refused_where_another_is_expected,
    a_token_signed_by_another_key_or_tampered_with_is_refused,
    unknown_users_and_wrong_passwords_get_the_same_answer_in_the_same_time,
    the_password_backoff_waits_after_three_failures_doubles_to_its_cap_and_resets_on_success,
    a_password_change_ends_the_other_logins_and_keeps_the_callers,
    a_password_reset_ends_every_login,
    a_disabled_account_cannot_log_in_or_refresh,
    a_flood_of_parallel_wrong_passwords_gets_no_more_tries_than_a_sequence,
);

/// Attempts are counted when admitted: 24 wrong passwords sent at once get exactly the 3 free
/// failures checked, every other one waits, for a known and for an unknown account alike.
async fn a_flood_of_parallel_wrong_passwords_gets_no_more_tries_than_a_sequence(db: Db) {
    let (app, _) = app_with_user(db, &[]).await;
    for username in ["ann@example.org", "nobody@example.org"] {
        let replies =
            futures_util::future::join_all((0..24).map(|_| app.login(username, "Wrong1password")))
                .await;
        let checked = replies.iter().filter(|r| r.status == 401).count();
        let waited = replies.iter().filter(|r| r.status == 429).count();
        assert_eq!((checked, waited), (3, 21), "{username}");
        for r in &replies {
            if r.status == 401 {
                r.assert_error(401, "PASSWORD_INCORRECT");
            } else {
                r.assert_error(429, "TOO_MANY_FAILED_PASSWORD_CHECKS");
            }
        }
    }
}

async fn app_with_user(db: Db, overrides: &[(&str, &str)]) -> (TestApp, i64) {
    let app = TestApp::spawn_with(db, overrides).await;
    let id = app.create_user("ann@example.org", PASSWORD).await;
    (app, id)
}

async fn the_token_life_cycle_from_login_to_logout(db: Db) {
    let (app, id) = app_with_user(db, &[]).await;
    let refresh = app.login_ok("Ann@Example.org", PASSWORD).await;
    assert!(refresh.len() >= 43, "256-bit token: {refresh}");
    let res = app.get_with("/auth/refreshtoken/validate", &refresh).await;
    assert_eq!(res.json(), serde_json::json!({ "userId": id }));

    let access = app.access_token(&refresh).await;
    let res = app.get_with("/auth/accesstoken/validate", &access).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), serde_json::json!({ "userId": id }));

    let rotated = app.get_with("/auth/refreshtoken", &refresh).await;
    assert_eq!(rotated.status, 200);
    assert_eq!(
        rotated.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let rotated = rotated.text;
    assert_ne!(rotated, refresh);
    app.get_with("/auth/accesstoken", &refresh)
        .await
        .assert_error(401, "INVALID_TOKEN");
    assert_eq!(
        app.get_with("/auth/refreshtoken/validate", &rotated)
            .await
            .status,
        200
    );

    let res = app
        .send(
            app.client
                .post(app.url("/auth/logout"))
                .bearer_auth(&rotated),
        )
        .await;
    assert_eq!(res.status, 204);
    assert!(res.text.is_empty());
    app.get_with("/auth/accesstoken", &rotated)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.send(
        app.client
            .post(app.url("/auth/logout"))
            .bearer_auth(&rotated),
    )
    .await
    .assert_error(401, "INVALID_TOKEN");

    app.get("/auth/accesstoken")
        .await
        .assert_error(401, "NO_TOKEN_PROVIDED");
    let res = app
        .send(
            app.client
                .get(app.url("/auth/accesstoken"))
                .header("authorization", "Basic abc"),
        )
        .await;
    res.assert_error(401, "NO_TOKEN_PROVIDED");
    app.get_with("/auth/accesstoken", "not-a-token")
        .await
        .assert_error(401, "INVALID_TOKEN");
}

async fn presenting_a_rotated_refresh_token_revokes_the_whole_login(db: Db) {
    let (app, _) = app_with_user(db, &[]).await;
    let first = app.login_ok("ann@example.org", PASSWORD).await;
    let other_login = app.login_ok("ann@example.org", PASSWORD).await;
    let second = app.get_with("/auth/refreshtoken", &first).await.text;
    // A thief replays the old token: the login it belongs to ends, the thief gets nothing.
    app.get_with("/auth/refreshtoken", &first)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.get_with("/auth/accesstoken", &second)
        .await
        .assert_error(401, "INVALID_TOKEN");
    // Another login of the same user is not touched.
    assert_eq!(
        app.get_with("/auth/accesstoken", &other_login).await.status,
        200
    );
}

async fn expired_tokens_are_refused(db: Db) {
    let (app, _) = app_with_user(
        db,
        &[
            ("AUTHD__TOKENS__ACCESS_LIFETIME_SECS", "1"),
            ("AUTHD__TOKENS__REFRESH_LIFETIME_SECS", "2"),
        ],
    )
    .await;
    let refresh = app.login_ok("ann@example.org", PASSWORD).await;
    let access = app.access_token(&refresh).await;
    assert_eq!(
        app.get_with("/auth/accesstoken/validate", &access)
            .await
            .status,
        200
    );
    app.advance_ms(1100);
    app.get_with("/auth/accesstoken/validate", &access)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.advance_ms(1000);
    app.get_with("/auth/accesstoken", &refresh)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.get_with("/auth/refreshtoken", &refresh)
        .await
        .assert_error(401, "INVALID_TOKEN");
}

async fn each_token_kind_is_refused_where_another_is_expected(db: Db) {
    let (app, id) = app_with_user(db, &[]).await;
    let signer = app.signer();
    let now = chrono::Utc::now().timestamp();
    let mint = |kind| {
        signer
            .sign(kind, id, None, Duration::from_secs(300), now)
            .unwrap()
    };
    let (sudo, partial) = (mint(TokenKind::Sudo), mint(TokenKind::Partial));
    let refresh = app.login_ok("ann@example.org", PASSWORD).await;
    let access = app.access_token(&refresh).await;

    // Access-only: sudo, partial and refresh tokens are refused.
    for wrong in [&sudo, &partial, &refresh] {
        app.get_with("/auth/accesstoken/validate", wrong)
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    // Refresh-only: signed tokens are refused.
    for wrong in [&access, &sudo, &partial] {
        app.get_with("/auth/accesstoken", wrong)
            .await
            .assert_error(401, "INVALID_TOKEN");
        app.get_with("/auth/refreshtoken/validate", wrong)
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    // Sudo, or access while 2FA is off: partial and refresh are refused, both others work.
    for wrong in [&partial, &refresh] {
        app.change_password(wrong, PASSWORD, "Brand2newpass")
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    assert_eq!(
        app.change_password(&sudo, PASSWORD, "Brand2newpass")
            .await
            .status,
        200
    );
    assert_eq!(
        app.change_password(&access, "Brand2newpass", "Third3pass")
            .await
            .status,
        200
    );
}

async fn a_token_signed_by_another_key_or_tampered_with_is_refused(db: Db) {
    let (app, id) = app_with_user(db, &[]).await;
    let foreign = authd_domain::tokens::TokenSigner::new(
        "authd",
        &authd_domain::tokens::TokenSigner::generate_pem().unwrap(),
        &[],
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let forged = foreign
        .sign(TokenKind::Access, id, None, Duration::from_secs(300), now)
        .unwrap();
    app.get_with("/auth/accesstoken/validate", &forged)
        .await
        .assert_error(401, "INVALID_TOKEN");

    let refresh = app.login_ok("ann@example.org", PASSWORD).await;
    let access = app.access_token(&refresh).await;
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = serde_json::json!((id + 1).to_string());
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    app.get_with("/auth/accesstoken/validate", &parts.join("."))
        .await
        .assert_error(401, "INVALID_TOKEN");
}

/// Verifies an access token with the published JWKS and a different Ed25519 implementation
/// than the one that signed it (ed25519-dalek directly, not jsonwebtoken).
#[actix_web::test]
async fn the_jwks_verifies_an_access_token_independently() {
    let (app, id) = app_with_user(Db::Sqlite, &[]).await;
    let refresh = app.login_ok("ann@example.org", PASSWORD).await;
    let access = app.access_token(&refresh).await;
    let jwks = app.get("/.well-known/jwks.json").await.json();
    let (header_b64, rest) = access.split_once('.').unwrap();
    let (claims_b64, sig_b64) = rest.split_once('.').unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid in JWKS");
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(key["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
    let sig =
        ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig_b64).unwrap()).unwrap();
    public
        .verify_strict(format!("{header_b64}.{claims_b64}").as_bytes(), &sig)
        .expect("signature verifies");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims_b64).unwrap()).unwrap();
    assert_eq!(claims["sub"], id.to_string());
    assert_eq!(claims["typ"], "access");
    assert_eq!(claims["iss"], "authd");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 300);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn unknown_users_and_wrong_passwords_get_the_same_answer_in_the_same_time(db: Db) {
    // A high free-failure count keeps the backoff out of the measurement.
    let (app, _) = app_with_user(
        db,
        &[("AUTHD__LIMITS__PASSWORD_BACKOFF__FREE_FAILURES", "1000")],
    )
    .await;
    let wrong = app.login("ann@example.org", "Wrong1password").await;
    let unknown = app.login("nobody@example.org", "Wrong1password").await;
    wrong.assert_error(401, "PASSWORD_INCORRECT");
    unknown.assert_error(401, "PASSWORD_INCORRECT");
    assert_eq!(wrong.json(), unknown.json());
    // Paired, back-to-back measurements in alternating order: the median of the differences
    // cancels out load that drifts during the test (other tests run in parallel).
    let (mut diffs, mut times) = (Vec::new(), Vec::new());
    for i in 0..31 {
        let order = if i % 2 == 0 {
            ["ann", "nobody"]
        } else {
            ["nobody", "ann"]
        };
        let mut took = [0.0; 2];
        for (slot, who) in order.iter().enumerate() {
            let t = Instant::now();
            app.login(&format!("{who}@example.org"), "Wrong1password")
                .await;
            took[slot] = t.elapsed().as_secs_f64() * 1000.0;
        }
        let (ann, nobody) = if i % 2 == 0 {
            (took[0], took[1])
        } else {
            (took[1], took[0])
        };
        diffs.push(ann - nobody);
        times.extend([ann, nobody]);
    }
    let d = median(diffs);
    // An unknown user answered without hashing would differ by a whole argon2 verification,
    // nearly all of a login's time; scheduling noise on a loaded machine is a few ms or a
    // small share of it. The bound is 5 ms or 15 % of the median login, whichever is larger.
    let typical = median(times);
    let bound = (0.15 * typical).max(5.0);
    assert!(
        d.abs() < bound,
        "median of (wrong password - unknown user) = {d:.2} ms, over {bound:.2} ms \
         (a login takes {typical:.2} ms)"
    );
}

async fn the_password_backoff_waits_after_three_failures_doubles_to_its_cap_and_resets_on_success(
    db: Db,
) {
    let (app, _) = app_with_user(
        db,
        &[
            ("AUTHD__LIMITS__PASSWORD_BACKOFF__INITIAL_WAIT_SECS", "1"),
            ("AUTHD__LIMITS__PASSWORD_BACKOFF__MAX_WAIT_SECS", "2"),
        ],
    )
    .await;
    for _ in 0..3 {
        app.login("ann@example.org", "Wrong1password")
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    // Even the right password waits now.
    let res = app.login("ann@example.org", PASSWORD).await;
    res.assert_error(429, "TOO_MANY_FAILED_PASSWORD_CHECKS");
    assert_eq!(res.json()["retryAfter"], 1);
    assert_eq!(res.header("retry-after"), Some("1"));
    app.advance_ms(1050);
    app.login("ann@example.org", "Wrong1password")
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    let res = app.login("ann@example.org", PASSWORD).await;
    res.assert_error(429, "TOO_MANY_FAILED_PASSWORD_CHECKS");
    assert_eq!(res.json()["retryAfter"], 2, "doubled");
    app.advance_ms(2050);
    app.login("ann@example.org", "Wrong1password")
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    let res = app.login("ann@example.org", PASSWORD).await;
    assert_eq!(res.json()["retryAfter"], 2, "capped");
    app.advance_ms(2050);
    app.login_ok("ann@example.org", PASSWORD).await;
    // The success ended the streak: three failures are free again.
    for _ in 0..3 {
        app.login("ann@example.org", "Wrong1password")
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    // Unknown accounts are throttled the same way.
    for _ in 0..3 {
        app.login("nobody@example.org", "Wrong1password")
            .await
            .assert_error(401, "PASSWORD_INCORRECT");
    }
    app.login("nobody@example.org", "Wrong1password")
        .await
        .assert_error(429, "TOO_MANY_FAILED_PASSWORD_CHECKS");
}

async fn a_password_change_ends_the_other_logins_and_keeps_the_callers(db: Db) {
    let (app, _) = app_with_user(db, &[]).await;
    let mine = app.login_ok("ann@example.org", PASSWORD).await;
    let other = app.login_ok("ann@example.org", PASSWORD).await;
    let access = app.access_token(&mine).await;
    app.change_password(&access, "Wrong1password", "Brand2newpass")
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    app.change_password(&access, PASSWORD, "weak")
        .await
        .assert_error(400, "Password must be at least 8 characters long");
    let res = app
        .change_password(&access, PASSWORD, "Brand2newpass")
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.text, "null");
    assert_eq!(
        app.get_with("/auth/accesstoken", &mine).await.status,
        200,
        "the caller's login stays"
    );
    app.get_with("/auth/accesstoken", &other)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.login("ann@example.org", PASSWORD)
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    app.login_ok("ann@example.org", "Brand2newpass").await;
    let notice = app.wait_for_mails(1).await.remove(0);
    assert_eq!(notice.to, "ann@example.org");
}

async fn a_password_reset_ends_every_login(db: Db) {
    let (app, _) = app_with_user(db, &[]).await;
    let a = app.login_ok("ann@example.org", PASSWORD).await;
    let b = app.login_ok("ann@example.org", PASSWORD).await;
    assert_eq!(app.reset_send("ann@example.org", "").await.status, 200);
    let code = app.wait_for_mails(1).await[0].code();
    assert_eq!(
        app.reset_password("ann@example.org", &code, "Brand2newpass")
            .await
            .status,
        200
    );
    for t in [&a, &b] {
        app.get_with("/auth/accesstoken", t)
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    app.login_ok("ann@example.org", "Brand2newpass").await;
}

async fn a_disabled_account_cannot_log_in_or_refresh(db: Db) {
    let (app, _) = app_with_user(db, &[]).await;
    let refresh = app.login_ok("ann@example.org", PASSWORD).await;
    let email = authd_domain::Email::parse("ann@example.org").unwrap();
    app.store()
        .run(move |c| authd_store::users::set_disabled(c, &email, true))
        .await
        .unwrap();
    app.login("ann@example.org", PASSWORD)
        .await
        .assert_error(401, "PASSWORD_INCORRECT");
    app.get_with("/auth/accesstoken", &refresh)
        .await
        .assert_error(401, "INVALID_TOKEN");
}

/// The same check with PyJWT (PyPI), a JWT library that shares no code with the server's.
#[actix_web::test]
async fn pyjwt_verifies_an_access_token_with_the_published_jwks() {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is missing: run scripts/ensure-services (it installs PyJWT into ./.venv)"
    );
    let (app, id) = app_with_user(Db::Sqlite, &[]).await;
    let refresh = app.login_ok("ann@example.org", PASSWORD).await;
    let access = app.access_token(&refresh).await;
    let jwks = app.get("/.well-known/jwks.json").await.text;
    let script = r#"
import json, sys, jwt
token, jwks = sys.argv[1], json.loads(sys.argv[2])
kid = jwt.get_unverified_header(token)["kid"]
key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
claims = jwt.decode(token, key=key, algorithms=["EdDSA"], issuer="authd")
print(claims["sub"], claims["typ"])
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, &access, &jwks])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{id} access")
    );

    // And PyJWT refuses the token once its signature is broken.
    let broken = format!("{}AAAA", &access[..access.len() - 4]);
    let out = std::process::Command::new(python)
        .args(["-c", script, &broken, &jwks])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken signature must not verify");
}
