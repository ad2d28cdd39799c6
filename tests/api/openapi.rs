use authd_tests::{Db, TestApp};

#[actix_web::test]
async fn openapi_document_is_3_1_and_lists_every_route_with_its_errors() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = app.openapi().await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/healthz",
        "/readyz",
        "/user/password/reset/send",
        "/v1/auth/forgot-password",
        "/user/password/reset/validate",
        "/user/password/otp",
        "/user/password/old-password",
        "/auth/login",
        "/auth/accesstoken",
        "/auth/accesstoken/validate",
        "/auth/refreshtoken",
        "/auth/refreshtoken/validate",
        "/auth/logout",
        "/.well-known/jwks.json",
        "/user/email/initiate",
        "/user/email",
        "/user/2fa",
        "/user/2fa/email-otp/setup",
        "/user/2fa/email-otp/enable",
        "/user/2fa/email-otp/challenge",
        "/user/2fa/email-otp/authenticate",
        "/user/2fa/email-otp/next-email",
        "/user/2fa/email-otp",
        "/user/2fa/totp/setup",
        "/user/2fa/totp/enable",
        "/user/2fa/totp/authenticate",
        "/user/2fa/totp/next-guess",
        "/user/2fa/totp",
        "/user/2fa/recovery-code/authenticate",
        "/user/2fa/recovery-code/reset",
        "/user/2fa/recovery-code/next-guess",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert!(doc["paths"]["/readyz"]["get"]["responses"]["503"].is_object());
    let send = &doc["paths"]["/user/password/reset/send"]["post"];
    for status in ["200", "400", "403", "413", "415", "429", "500"] {
        assert!(
            send["responses"][status].is_object(),
            "reset/send lacks {status}"
        );
    }
    assert!(send["responses"]["429"]["headers"]["Retry-After"].is_object());
    let params: Vec<&str> = send["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["origin", "language"]);
    assert!(doc["paths"]["/user/password/otp"]["put"]["responses"]["401"].is_object());
    let login = &doc["paths"]["/auth/login"]["post"]["responses"];
    assert!(
        login["200"]["content"]["text/plain"].is_object(),
        "login answers text/plain"
    );
    assert!(doc["paths"]["/auth/logout"]["post"]["responses"]["204"].is_object());
    let required = doc["components"]["schemas"]["TwoFactorRequiredBody"]["properties"]
        .as_object()
        .map(|p| p.contains_key("partialToken") && p.contains_key("methods"));
    assert_eq!(
        required,
        Some(true),
        "the login's 401 documents partialToken and methods"
    );
    let totp = &doc["paths"]["/user/2fa/totp/authenticate"]["post"];
    for status in ["200", "401", "409", "429", "500"] {
        assert!(
            totp["responses"][status].is_object(),
            "totp/authenticate lacks {status}"
        );
    }
    assert_eq!(
        totp["security"],
        serde_json::json!([{"access": []}, {"partial": []}])
    );
    for scheme in ["refresh", "access", "sudo", "partial"] {
        assert_eq!(
            doc["components"]["securitySchemes"][scheme]["scheme"], "bearer",
            "{scheme}"
        );
    }
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    for field in ["statusCode", "error", "message", "retryAfter"] {
        assert!(
            error[field].is_object(),
            "ErrorBody.{field} missing: {error}"
        );
    }
}

#[actix_web::test]
async fn the_docs_page_works_without_internet_access() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let res = app.get("/docs").await;
    assert_eq!(res.status, 302);
    assert_eq!(res.header("location"), Some("/docs/"));
    let page = app.get("/docs/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("swagger"), "{}", page.text);
    assert!(
        !page.text.contains("https://"),
        "the page must not load assets from the internet"
    );
    // Every script and stylesheet it names is served by the binary itself.
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        assert!(page.text.contains(asset), "{asset} not referenced");
        let res = app.get(&format!("/docs/{asset}")).await;
        assert_eq!(res.status, 200, "{asset}");
        assert!(!res.text.contains("cdn."), "{asset} loads from a CDN");
    }
}

/// Client generators name methods after `operationId`s and refuse or mangle duplicates: every
/// operation has one, unique, in lowerCamelCase, named after what it does.
#[actix_web::test]
async fn every_operation_has_a_unique_camel_case_operation_id() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = app.openapi().await;
    let mut ids = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{method} {path}: {id} is not lowerCamelCase"
            );
            if let Some(other) = ids.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("{id} names both {other} and {method} {path}");
            }
        }
    }
    assert_eq!(ids.len(), 32, "{ids:?}");
    for (id, op) in [
        ("sendPasswordReset", "post /user/password/reset/send"),
        (
            "checkPasswordResetOtp",
            "post /user/password/reset/validate",
        ),
        ("updatePasswordViaOtp", "put /user/password/otp"),
        ("activateTotp", "post /user/2fa/totp/enable"),
        ("login", "post /auth/login"),
        ("refreshtoken", "get /auth/refreshtoken"),
        ("accesstoken", "get /auth/accesstoken"),
        ("logout", "post /auth/logout"),
    ] {
        assert_eq!(ids.get(id).map(String::as_str), Some(op), "{id}");
    }
}

/// Per operation and status, the error answer's `message` is an enum of the codes its
/// description names, each a code of that status in `authd_api::ErrorCode` (400s stay free
/// text: sentences). Every code a handler can answer is named by some operation.
#[actix_web::test]
async fn every_error_answer_lists_its_message_codes_as_an_enum_of_that_status() {
    use authd_api::ErrorCode;
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = app.openapi().await;
    let mut named = std::collections::BTreeSet::new();
    let mut enums = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().unwrap_or_default();
            for (status, res) in op["responses"].as_object().expect("responses") {
                let description = res["description"].as_str().unwrap_or_default();
                let codes = authd_api::openapi::backticked_codes(description);
                for code in &codes {
                    let parsed = ErrorCode::parse(code)
                        .unwrap_or_else(|| panic!("{id} {status}: {code} is no ErrorCode"));
                    assert_eq!(
                        parsed.status().as_str(),
                        status,
                        "{id}: {code} is documented under the wrong status"
                    );
                    named.insert(parsed);
                }
                if codes.is_empty() || status == "400" {
                    continue;
                }
                let schema = &res["content"]["application/json"]["schema"];
                let listed: Vec<&str> = schema["allOf"][1]["properties"]["message"]["enum"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} {status}: no enum in {schema}"))
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                let mut expected: Vec<&str> = codes.iter().map(String::as_str).collect();
                if status == "500" && !expected.contains(&"INTERNAL_SERVER_ERROR") {
                    expected.push("INTERNAL_SERVER_ERROR");
                }
                assert_eq!(listed, expected, "{id} {status}");
                enums += 1;
            }
        }
    }
    assert!(enums > 80, "only {enums} enums");
    // Codes the framework or the mailbox page answer, not an operation of the contract.
    let generic = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::UriTooLong,
        ErrorCode::RequestHeaderFieldsTooLarge,
        ErrorCode::InternalServerError,
        ErrorCode::ServiceUnavailable,
        ErrorCode::CrossOriginRequest,
        ErrorCode::MailboxHostNotAllowed,
        ErrorCode::CorsMethodNotAllowed,
        ErrorCode::CorsHeadersNotAllowed,
        ErrorCode::CorsRequestNotAllowed,
    ];
    let missing: Vec<&str> = ErrorCode::ALL
        .iter()
        .filter(|c| !named.contains(c) && !generic.contains(c))
        .map(|c| c.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "codes no operation documents: {missing:?}"
    );
}

/// Every request body has an example, on the body or on each of its fields, so the docs page
/// and generated clients show a call that works.
#[actix_web::test]
async fn every_request_body_has_an_example() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = app.openapi().await;
    let schemas = &doc["components"]["schemas"];
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Some(content) = op["requestBody"]["content"].as_object() else {
                continue;
            };
            for (media, c) in content {
                bodies += 1;
                let schema = match c["schema"]["$ref"].as_str() {
                    Some(r) => &schemas[r.rsplit('/').next().unwrap()],
                    None => &c["schema"],
                };
                let whole = !c["example"].is_null() || !schema["example"].is_null();
                let props = schema["properties"].as_object();
                let each = props
                    .is_some_and(|p| !p.is_empty() && p.values().all(|f| !f["example"].is_null()));
                assert!(
                    whole || each,
                    "{method} {path} ({media}): no example for its body {schema}"
                );
            }
        }
    }
    assert!(bodies >= 18, "only {bodies} request bodies found");
}

/// Cookie mode is documented where a client generator and a reader look for it: the `cookie`
/// parameter, the `Set-Cookie` header, the cookie security scheme and the 403.
#[actix_web::test]
async fn the_document_describes_cookie_mode() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = app.openapi().await;
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    for (path, method) in [
        ("/auth/login", "post"),
        ("/auth/refreshtoken", "get"),
        ("/user/2fa/email-otp/authenticate", "post"),
        ("/user/2fa/totp/authenticate", "post"),
        ("/user/2fa/recovery-code/authenticate", "post"),
    ] {
        let op = op(path, method);
        let cookie = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "cookie")
            .unwrap_or_else(|| panic!("{path} has no cookie parameter"))
            .clone();
        assert_eq!(cookie["in"], "query", "{path}");
        assert_eq!(cookie["required"], false, "{path}");
        let set_cookie = &op["responses"]["200"]["headers"]["Set-Cookie"];
        let text = set_cookie["description"].as_str().unwrap_or_default();
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/auth",
            "Max-Age",
        ] {
            assert!(
                text.contains(part),
                "{path}: Set-Cookie names {part}: {text}"
            );
        }
        assert!(
            op["responses"]["400"].is_object(),
            "{path} documents the 400"
        );
    }
    for path in ["/auth/login", "/auth/refreshtoken"] {
        let content = &op(path, if path == "/auth/login" { "post" } else { "get" })["responses"]
            ["200"]["content"];
        assert!(
            content["text/plain"].is_object() && content["application/json"].is_object(),
            "{path} answers text/plain, or JSON null in cookie mode: {content}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["refreshCookie"],
        serde_json::json!({
            "type": "apiKey",
            "in": "cookie",
            "name": "authd_refresh",
            "description": doc["components"]["securitySchemes"]["refreshCookie"]["description"],
        })
    );
    for (path, method) in [
        ("/auth/accesstoken", "get"),
        ("/auth/refreshtoken", "get"),
        ("/auth/refreshtoken/validate", "get"),
        ("/auth/logout", "post"),
    ] {
        let op = op(path, method);
        assert_eq!(
            op["security"],
            serde_json::json!([{"refresh": []}, {"refreshCookie": []}]),
            "{path}"
        );
        let forbidden = op["responses"]["403"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            forbidden.contains("ORIGIN_NOT_ALLOWED") && forbidden.contains("without `Origin`"),
            "{path}: {forbidden}"
        );
    }
    assert!(
        op("/auth/logout", "post")["responses"]["204"]["headers"]["Set-Cookie"].is_object(),
        "logout documents the clearing cookie"
    );
}

/// The older clients' alias documents the texts it answers with.
#[actix_web::test]
async fn the_legacy_alias_documents_its_own_texts() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let doc = app.openapi().await;
    let legacy = &doc["paths"]["/v1/auth/forgot-password"]["post"];
    for (status, text) in [
        ("400", "Missing or misformatted query parameter or body"),
        ("403", "Forbidden email provider"),
        ("429", "Last password forgot call was too recent"),
        ("500", "UNABLE_TO_FIND_MAIL_TEMPLATE"),
    ] {
        let description = legacy["responses"][status]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(description.contains(text), "{status}: {description}");
    }
    assert!(legacy["responses"]["429"]["headers"]["Retry-After"].is_object());
}
