//! The token-kind rules of the contract for every 2FA route: a table of route × token kind
//! (none, garbage, refresh, access, sudo, partial), run for a user without 2FA and for a user
//! with 2FA on.

use std::time::Duration;

use authd_domain::tokens::TokenKind;
use authd_tests::two_factor::{
    assert_sudo_only, assert_ten_recovery_codes, assert_two_factor_required, now_secs,
};
use authd_tests::{both_dbs, Db, Reply, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "Correct1horse";
const PLAIN: &str = "plain@example.org";
const SECURED: &str = "secured@example.org";
const SECURED_OTP: &str = "secured.codes@example.net";

both_dbs!(
    two_factor_tokens_every_route_takes_exactly_the_token_kinds_of_the_contract,
    two_factor_tokens_expired_or_foreign_tokens_are_refused,
    two_factor_tokens_a_password_change_needs_sudo_once_two_factor_is_on,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Garbage,
    Refresh,
    Access,
    Sudo,
    Partial,
}

const KINDS: [Kind; 6] = [
    Kind::None,
    Kind::Garbage,
    Kind::Refresh,
    Kind::Access,
    Kind::Sudo,
    Kind::Partial,
];

/// Which tokens a route takes, in the words of the contract.
#[derive(Debug, Clone, Copy)]
enum Takes {
    Access,
    AccessOrPartial,
    /// Sudo, or access while the user has no 2FA method on.
    SudoOrAccessWithout2fa,
    Sudo,
}

impl Takes {
    fn accepts(self, kind: Kind, two_factor_on: bool) -> bool {
        match self {
            Self::Access => kind == Kind::Access,
            Self::AccessOrPartial => matches!(kind, Kind::Access | Kind::Partial),
            Self::SudoOrAccessWithout2fa => {
                kind == Kind::Sudo || (kind == Kind::Access && !two_factor_on)
            }
            Self::Sudo => kind == Kind::Sudo,
        }
    }
}

/// What an accepted token leads to, given the user's state at that row.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// 200.
    Ok,
    /// This exact error.
    Error(u16, &'static str),
}

#[derive(Debug)]
struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    takes: Takes,
    /// For the user without 2FA and for the user with email OTP on.
    plain: Outcome,
    secured: Outcome,
}

fn route(
    method: Method,
    path: &'static str,
    body: Option<Value>,
    takes: Takes,
    plain: Outcome,
    secured: Outcome,
) -> Route {
    Route {
        method,
        path,
        body,
        takes,
        plain,
        secured,
    }
}

/// Every 2FA route, in an order where an accepted call changes nothing that a later row
/// depends on: the calls that set up or turn off come last, deactivating email OTP (which
/// turns 2FA off for the secured user) very last.
fn table() -> Vec<Route> {
    use Outcome::{Error, Ok};
    use Takes::*;
    let otp = || Some(json!({ "otp": "000000" }));
    let totp = || Some(json!({ "totp": "000000" }));
    let recovery = || Some(json!({ "recoveryCode": "2222333344445555" }));
    vec![
        route(Method::GET, "/user/2fa", None, Access, Ok, Ok),
        route(
            Method::POST,
            "/user/2fa/email-otp/enable",
            otp(),
            Access,
            Error(409, "EMAIL_OTP_UNINITIALIZED"),
            Error(401, "OTP_INVALID_EXPIRED"),
        ),
        route(
            Method::POST,
            "/user/2fa/email-otp/challenge",
            Some(json!({})),
            AccessOrPartial,
            Error(409, "EMAIL_OTP_UNINITIALIZED"),
            Ok,
        ),
        route(
            Method::POST,
            "/user/2fa/email-otp/authenticate",
            otp(),
            AccessOrPartial,
            Error(409, "EMAIL_OTP_INACTIVE"),
            Error(401, "OTP_INVALID_EXPIRED"),
        ),
        route(
            Method::GET,
            "/user/2fa/email-otp/next-email",
            None,
            Access,
            Error(409, "EMAIL_OTP_UNINITIALIZED"),
            Ok,
        ),
        route(
            Method::POST,
            "/user/2fa/totp/enable",
            totp(),
            Access,
            Error(409, "TOTP_UNINITIALIZED"),
            Error(409, "TOTP_UNINITIALIZED"),
        ),
        route(
            Method::POST,
            "/user/2fa/totp/authenticate",
            totp(),
            AccessOrPartial,
            Error(409, "TOTP_UNINITIALIZED"),
            Error(409, "TOTP_UNINITIALIZED"),
        ),
        route(
            Method::GET,
            "/user/2fa/totp/next-guess",
            None,
            Access,
            Error(409, "TOTP_UNINITIALIZED"),
            Error(409, "TOTP_UNINITIALIZED"),
        ),
        route(
            Method::DELETE,
            "/user/2fa/totp",
            None,
            Sudo,
            Error(409, "TOTP_ALREADY_INACTIVE"),
            Error(409, "TOTP_ALREADY_INACTIVE"),
        ),
        route(
            Method::POST,
            "/user/2fa/recovery-code/authenticate",
            recovery(),
            AccessOrPartial,
            Error(409, "RECOVERY_CODES_UNINITIALIZED"),
            Error(401, "RECOVERY_CODE_INVALID"),
        ),
        route(
            Method::GET,
            "/user/2fa/recovery-code/next-guess",
            None,
            Access,
            Error(409, "RECOVERY_CODES_UNINITIALIZED"),
            Ok,
        ),
        route(
            Method::POST,
            "/user/2fa/recovery-code/reset",
            Some(json!({})),
            Sudo,
            Error(409, "2FA_IS_DISABLED"),
            Ok,
        ),
        route(
            Method::POST,
            "/user/2fa/email-otp/setup",
            None, // filled in per user: the user's own code address
            SudoOrAccessWithout2fa,
            Ok,
            Ok,
        ),
        route(
            Method::POST,
            "/user/2fa/totp/setup",
            Some(json!({})),
            SudoOrAccessWithout2fa,
            Ok,
            Ok,
        ),
        route(
            Method::DELETE,
            "/user/2fa/email-otp",
            None,
            Sudo,
            // Set up above, but never enabled.
            Error(409, "EMAIL_OTP_ALREADY_INACTIVE"),
            Ok,
        ),
    ]
}

/// One user's token of each kind.
struct Tokens {
    refresh: String,
    access: String,
    sudo: String,
    partial: String,
}

impl Tokens {
    fn of(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::None => None,
            Kind::Garbage => Some("not-a-token"),
            Kind::Refresh => Some(&self.refresh),
            Kind::Access => Some(&self.access),
            Kind::Sudo => Some(&self.sudo),
            Kind::Partial => Some(&self.partial),
        }
    }
}

fn check(reply: &Reply, expected: Outcome, what: &str) {
    match expected {
        Outcome::Ok => assert_eq!(reply.status, 200, "{what}: {}", reply.text),
        Outcome::Error(status, message) => {
            assert!(
                reply.status.as_u16() == status && reply.json()["message"] == message,
                "{what}: expected {status} {message}, got {} {}",
                reply.status,
                reply.text
            );
            reply.assert_error(status, message);
        }
    }
}

async fn run_table(app: &TestApp, tokens: &Tokens, two_factor_on: bool, code_address: &str) {
    let who = if two_factor_on { "2FA on" } else { "2FA off" };
    for r in table() {
        let body = if r.path == "/user/2fa/email-otp/setup" {
            Some(json!({ "email": code_address }))
        } else {
            r.body.clone()
        };
        for kind in KINDS {
            let reply = app
                .call(r.method.clone(), r.path, tokens.of(kind), body.as_ref())
                .await;
            let what = format!("{} {} with {kind:?} ({who})", r.method, r.path);
            let expected = if kind == Kind::None {
                Outcome::Error(401, "NO_TOKEN_PROVIDED")
            } else if !r.takes.accepts(kind, two_factor_on) {
                Outcome::Error(401, "INVALID_TOKEN")
            } else if two_factor_on {
                r.secured
            } else {
                r.plain
            };
            check(&reply, expected, &what);
        }
    }
}

async fn two_factor_tokens_every_route_takes_exactly_the_token_kinds_of_the_contract(db: Db) {
    // Wrong codes in the table must meet their own errors, never a guessing backoff or a mail
    // throttle.
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTHD__LIMITS__OTP_MAIL__MAX", "100"),
            ("AUTHD__LIMITS__TOTP_BACKOFF__FREE_FAILURES", "1000"),
            (
                "AUTHD__LIMITS__RECOVERY_CODE_BACKOFF__FREE_FAILURES",
                "1000",
            ),
        ],
    )
    .await;

    // A user without 2FA: nothing set up. There is no login that yields a partial or a sudo
    // token for such a user, so those are minted with the server's key.
    let plain_id = app.create_user(PLAIN, PASSWORD).await;
    let refresh = app.login_ok(PLAIN, PASSWORD).await;
    let plain = Tokens {
        access: app.access_token(&refresh).await,
        refresh,
        sudo: app.mint(TokenKind::Sudo, plain_id),
        partial: app.mint(TokenKind::Partial, plain_id),
    };

    // A user with email OTP on; every token from the real flows.
    app.create_user(SECURED, PASSWORD).await;
    let access = app.login_access(SECURED, PASSWORD).await;
    assert_ten_recovery_codes(&app.turn_on_email_otp(&access, SECURED_OTP, 1).await);
    let partial = assert_two_factor_required(&app.login(SECURED, PASSWORD).await).partial;
    assert_eq!(app.email_otp_challenge(&partial, "").await.status, 200);
    let code = app.wait_for_mail_to(SECURED_OTP, 2).await.code();
    let res = app.email_otp_authenticate(&partial, &code).await;
    let full = authd_tests::two_factor::assert_full_tokens(&res);
    assert_eq!(app.email_otp_challenge(&access, "").await.status, 200);
    let code = app.wait_for_mail_to(SECURED_OTP, 3).await.code();
    let sudo = assert_sudo_only(&app.email_otp_authenticate(&access, &code).await);
    let secured = Tokens {
        refresh: full.refresh.unwrap(),
        access,
        sudo,
        partial,
    };

    run_table(&app, &plain, false, "plain.codes@example.net").await;
    run_table(&app, &secured, true, SECURED_OTP).await;
}

async fn two_factor_tokens_expired_or_foreign_tokens_are_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    let id = app.create_user(PLAIN, PASSWORD).await;
    let signer = app.signer();
    // Expired a minute ago.
    let expired = |kind| {
        signer
            .sign(kind, id, None, Duration::from_secs(60), now_secs() - 120)
            .unwrap()
    };
    let foreign = authd_domain::tokens::TokenSigner::new(
        "authd",
        &authd_domain::tokens::TokenSigner::generate_pem().unwrap(),
        &[],
    )
    .unwrap();
    let forged = |kind| {
        foreign
            .sign(kind, id, None, Duration::from_secs(300), now_secs())
            .unwrap()
    };
    for (what, token) in [
        ("expired access", expired(TokenKind::Access)),
        ("expired partial", expired(TokenKind::Partial)),
        ("forged access", forged(TokenKind::Access)),
        ("forged partial", forged(TokenKind::Partial)),
    ] {
        let res = app.recovery_authenticate(&token, "2222333344445555").await;
        assert_eq!(res.status, 401, "{what}: {}", res.text);
        res.assert_error(401, "INVALID_TOKEN");
    }
    for (what, token) in [
        ("expired sudo", expired(TokenKind::Sudo)),
        ("forged sudo", forged(TokenKind::Sudo)),
    ] {
        let res = app.totp_setup(&token, "").await;
        assert_eq!(res.status, 401, "{what}: {}", res.text);
        res.assert_error(401, "INVALID_TOKEN");
        app.recovery_reset(&token)
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
    // A malformed header is no token at all.
    let res = app
        .send(
            app.client
                .get(app.url("/user/2fa"))
                .header("authorization", "Basic abc"),
        )
        .await;
    res.assert_error(401, "NO_TOKEN_PROVIDED");
    // The same tokens, fresh and from this server, work.
    let now = now_secs();
    let fresh = app
        .signer()
        .sign(TokenKind::Access, id, None, Duration::from_secs(300), now)
        .unwrap();
    assert_eq!(app.two_factor_overview(&fresh).await.status, 200);
}

async fn two_factor_tokens_a_password_change_needs_sudo_once_two_factor_is_on(db: Db) {
    let app = TestApp::spawn_with(db, &[("AUTHD__LIMITS__OTP_MAIL__MAX", "100")]).await;
    app.create_user(SECURED, PASSWORD).await;
    let access = app.login_access(SECURED, PASSWORD).await;
    let codes = assert_ten_recovery_codes(&app.turn_on_email_otp(&access, SECURED_OTP, 1).await);
    app.change_password(&access, PASSWORD, "Brand2newpass")
        .await
        .assert_error(401, "INVALID_TOKEN");
    let partial = assert_two_factor_required(&app.login(SECURED, PASSWORD).await).partial;
    app.change_password(&partial, PASSWORD, "Brand2newpass")
        .await
        .assert_error(401, "INVALID_TOKEN");
    let sudo = assert_sudo_only(&app.recovery_authenticate(&access, &codes[0]).await);
    let res = app.change_password(&sudo, PASSWORD, "Brand2newpass").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(app.password_verifies(SECURED, "Brand2newpass").await);
    // 2FA stays on across the password change.
    assert_two_factor_required(&app.login(SECURED, "Brand2newpass").await);
}
