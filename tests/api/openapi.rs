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
    for path in ["/healthz", "/readyz"] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert!(doc["paths"]["/readyz"]["get"]["responses"]["503"].is_object());
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
