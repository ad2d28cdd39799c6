//! The development mailbox at `/dev/mail`: every mail the file backend wrote, in every folder
//! of every file-backend origin, newest first, live; one mail with its code, links, text and
//! HTML parts (the HTML in a sandboxed frame with its own Content-Security-Policy), headers
//! and raw file; delete one or all.
//!
//! Registered only when `dev.mailbox` turns it on (never in production). It reads the folders
//! at each request through [`authd_mail::mailbox::Mailbox`], which opens nothing outside them.
//! Pages are server-rendered (Tera templates compiled into the binary) under a strict CSP:
//! the only script is `mailbox.js`, served from here. Deleting takes a POST from this page
//! (a same-origin `Origin`, or the `X-Mailbox-Request` header the script sends). Mails carry
//! one-time codes: nothing here logs their contents.
//!
//! Every page answers only when the request names this server as `localhost` (or a
//! `*.localhost` name) or by an IP address ([`LocalName`]). A site that rebinds its own DNS
//! name to 127.0.0.1 would otherwise read the codes with the browser of the developer who
//! visits it: its requests carry its own name in `Host`, and the same name in `Origin`.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use authd_mail::mailbox::{Mailbox, Summary};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::ErrorCode;

/// The page's policy: scripts and styles from this server only, frames from this server only
/// (the HTML part), no plugins, no foreign forms, not framed by anyone.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The HTML part's policy: a sandbox (no script, an opaque origin) even when the part is
/// opened on its own, nothing fetched from anywhere, inline styles as mails use them, framed
/// only by the mailbox page.
pub const PART_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; \
     img-src data:; font-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'self'";

/// The header `mailbox.js` sends with its requests; a page of another site cannot send it
/// without a CORS preflight, which this server never grants.
pub const REQUEST_HEADER: &str = "x-mailbox-request";

/// Rows shown at most; the count says how many there are.
const MAX_ROWS: usize = 500;

const BASE: &str = include_str!("../../../../templates/dev/base.html.tera");
const LIST: &str = include_str!("../../../../templates/dev/list.html.tera");
const MAIL: &str = include_str!("../../../../templates/dev/mail.html.tera");
const SCRIPT: &str = include_str!("../../../../templates/dev/mailbox.js");
const STYLE: &str = include_str!("../../../../templates/dev/mailbox.css");

/// Path segments: letters, digits and `-_.` stay readable, everything else is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// The mailbox and its compiled pages, shared by all workers.
#[derive(Debug, Clone)]
pub struct DevMail {
    mailbox: Arc<Mailbox>,
    pages: Arc<tera::Tera>,
    /// The mail templates in use, when they are reloaded on change: the list page shows why
    /// the last reload was refused.
    templates: Option<authd_mail::Templates>,
}

impl DevMail {
    /// The mailbox over these `(origin, folder)` pairs.
    pub fn new(
        folders: Vec<(String, PathBuf)>,
        templates: Option<authd_mail::Templates>,
    ) -> Result<Self, tera::Error> {
        Ok(Self {
            mailbox: Arc::new(Mailbox::new(folders)),
            pages: Arc::new(pages()?),
            templates,
        })
    }

    /// The folders it reads.
    pub fn folders(&self) -> Vec<(String, PathBuf)> {
        self.mailbox.folders()
    }
}

/// The templates; names ending in `.html` are autoescaped.
fn pages() -> Result<tera::Tera, tera::Error> {
    let mut tera = tera::Tera::default();
    // Tera's own escaping also writes `/` as `&#x2F;`, which makes every URL unreadable in
    // the page source for no gain inside quoted attributes and text.
    tera.set_escape_fn(escape_html);
    tera.add_raw_templates([
        ("base.html", BASE),
        ("list.html", LIST),
        ("mail.html", MAIL),
    ])?;
    Ok(tera)
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Proof that the request reached this server as `localhost`, a `*.localhost` name or an IP
/// address; anything else is 403 `MAILBOX_HOST_NOT_ALLOWED` (see the module's text).
#[derive(Debug)]
pub struct LocalName;

/// Whether `host` (a `Host` header: a name or address, maybe with a port) is a name only
/// this machine resolves, or an address, which no DNS answer can rebind.
pub fn local_name(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split_once(']').is_some_and(|(addr, port)| {
            addr.parse::<std::net::Ipv6Addr>().is_ok()
                && (port.is_empty()
                    || port
                        .strip_prefix(':')
                        .is_some_and(|p| p.parse::<u16>().is_ok()))
        });
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
}

impl actix_web::FromRequest for LocalName {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        std::future::ready(if local_name(host) {
            Ok(Self)
        } else {
            Err(ErrorCode::MailboxHostNotAllowed.into())
        })
    }
}

/// Registers the mailbox's routes on an app.
pub fn configure(cfg: &mut web::ServiceConfig, dev: web::Data<DevMail>) {
    use super::resource;
    cfg.app_data(dev)
        .service(resource("/dev/mail", "GET").route(web::get().to(list_page)))
        .service(resource("/dev/mail/mails.json", "GET").route(web::get().to(list_json)))
        .service(resource("/dev/mail/delete", "POST").route(web::post().to(delete_all)))
        .service(resource("/dev/mail/assets/mailbox.js", "GET").route(
            web::get().to(|_: LocalName| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        ))
        .service(
            resource("/dev/mail/assets/mailbox.css", "GET").route(
                web::get().to(|_: LocalName| async { asset("text/css; charset=utf-8", STYLE) }),
            ),
        )
        .service(resource("/dev/mail/m/{origin}/{file}", "GET").route(web::get().to(mail_page)))
        .service(
            resource("/dev/mail/m/{origin}/{file}/html", "GET").route(web::get().to(html_part)),
        )
        .service(resource("/dev/mail/m/{origin}/{file}/raw", "GET").route(web::get().to(raw_file)))
        .service(
            resource("/dev/mail/m/{origin}/{file}/delete", "POST")
                .route(web::post().to(delete_one)),
        );
}

/// `?to=`: shows the mails whose recipient contains this text (any case).
#[derive(Debug, Deserialize)]
struct Filter {
    to: Option<String>,
}

impl Filter {
    fn needle(&self) -> Result<String, ApiError> {
        let to = self.to.as_deref().unwrap_or("").trim();
        if to.chars().count() > 256 {
            return Err(ApiError::bad_request("to must be at most 256 characters"));
        }
        Ok(to.to_owned())
    }
}

#[derive(Debug, Deserialize)]
struct MailId {
    origin: String,
    file: String,
}

/// One row of the list, as the page and the JSON feed show it.
#[derive(Debug, Serialize)]
struct Row {
    origin: String,
    origins: String,
    file: String,
    /// The mail's page; `/html`, `/raw` and `/delete` hang below it.
    url: String,
    time: String,
    time_text: String,
    to: String,
    subject: String,
    kind: String,
    kind_text: String,
    language: String,
    language_text: String,
    error: Option<String>,
}

fn mail_url(origin: &str, file: &str) -> String {
    format!(
        "/dev/mail/m/{}/{}",
        utf8_percent_encode(origin, SEGMENT),
        utf8_percent_encode(file, SEGMENT)
    )
}

fn row(s: Summary) -> Row {
    let or_dash = |v: &str| {
        if v.is_empty() {
            "—".to_owned()
        } else {
            v.to_owned()
        }
    };
    Row {
        url: mail_url(&s.origin, &s.file),
        time: s.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        time_text: s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
        kind_text: or_dash(&s.kind),
        language_text: or_dash(&s.language),
        origin: s.origin,
        origins: s.origins,
        file: s.file,
        to: s.to,
        subject: s.subject,
        kind: s.kind,
        language: s.language,
        error: s.error,
    }
}

/// The listed mails whose recipient contains `needle` (any case). A malformed mail has no
/// recipient: it shows only while nothing is filtered.
async fn listed(dev: &DevMail, needle: String) -> Result<Vec<Summary>, ApiError> {
    let mailbox = dev.mailbox.clone();
    web::block(move || {
        let needle = needle.to_lowercase();
        mailbox
            .list()
            .into_iter()
            .filter(|m| needle.is_empty() || m.to.to_lowercase().contains(&needle))
            .collect()
    })
    .await
    .map_err(ApiError::internal)
}

/// Changes whenever the set of listed mails does (a mail arrives, goes, or is rewritten).
fn version(mails: &[Summary]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in mails {
        (&m.origin, &m.file, &m.to, &m.subject, &m.error).hash(&mut h);
    }
    format!("{}-{:016x}", mails.len(), h.finish())
}

fn to_query(needle: &str) -> String {
    if needle.is_empty() {
        String::new()
    } else {
        format!("?to={}", utf8_percent_encode(needle, NON_ALPHANUMERIC))
    }
}

fn with_headers(mut res: HttpResponse, csp: &'static str, frame: &'static str) -> HttpResponse {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static(frame));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Same-origin requests keep their Origin (the delete guard reads it); links to other
    // sites (a reset link) carry no Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

fn html_page(body: String) -> HttpResponse {
    with_headers(
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(body),
        PAGE_CSP,
        "DENY",
    )
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    with_headers(
        HttpResponse::Ok().content_type(content_type).body(body),
        PAGE_CSP,
        "DENY",
    )
}

fn render(dev: &DevMail, name: &str, ctx: &tera::Context) -> Result<HttpResponse, ApiError> {
    dev.pages
        .render(name, ctx)
        .map(html_page)
        .map_err(ApiError::internal)
}

async fn list_page(
    _: LocalName,
    dev: web::Data<DevMail>,
    filter: web::Query<Filter>,
) -> Result<HttpResponse, ApiError> {
    let needle = filter.needle()?;
    let mails = listed(&dev, needle.clone()).await?;
    let mut ctx = tera::Context::new();
    ctx.insert("version", &version(&mails));
    ctx.insert("total", &mails.len());
    ctx.insert("to", &needle);
    ctx.insert("to_query", &to_query(&needle));
    ctx.insert("folders", &dev.mailbox.folders());
    ctx.insert(
        "template_error",
        &dev.templates
            .as_ref()
            .and_then(authd_mail::Templates::last_error),
    );
    let rows: Vec<Row> = mails.into_iter().take(MAX_ROWS).map(row).collect();
    ctx.insert("shown", &rows.len());
    ctx.insert("mails", &rows);
    render(&dev, "list.html", &ctx)
}

#[derive(Debug, Serialize)]
struct Feed {
    version: String,
    total: usize,
    mails: Vec<Row>,
}

async fn list_json(
    _: LocalName,
    dev: web::Data<DevMail>,
    filter: web::Query<Filter>,
) -> Result<HttpResponse, ApiError> {
    let mails = listed(&dev, filter.needle()?).await?;
    let feed = Feed {
        version: version(&mails),
        total: mails.len(),
        mails: mails.into_iter().take(MAX_ROWS).map(row).collect(),
    };
    let res = crate::json_ok(&feed);
    Ok(with_headers(res, PAGE_CSP, "DENY"))
}

/// The code a mail carries: a line of exactly six digits in its text part.
fn code_of(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

/// The web links of the text part, each once, in order.
fn links_of(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let Some(start) = word.find("http://").or_else(|| word.find("https://")) else {
            continue;
        };
        let link = word[start..].trim_end_matches(|c: char| ".,;:!?)]}>\"'".contains(c));
        if link.len() > "https://".len() && !out.iter().any(|l| l == link) {
            out.push(link.to_owned());
        }
    }
    out
}

async fn open(dev: &DevMail, id: MailId) -> Result<authd_mail::mailbox::Opened, ApiError> {
    let mailbox = dev.mailbox.clone();
    web::block(move || mailbox.open(&id.origin, &id.file))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)
}

async fn mail_page(
    _: LocalName,
    dev: web::Data<DevMail>,
    id: web::Path<MailId>,
) -> Result<HttpResponse, ApiError> {
    let mail = open(&dev, id.into_inner()).await?;
    let text = mail.text.clone().unwrap_or_default();
    let mut ctx = tera::Context::new();
    ctx.insert("from", &mail.from);
    ctx.insert("headers", &mail.headers);
    ctx.insert("text", &text);
    ctx.insert("has_html", &mail.html.is_some());
    ctx.insert("code", &code_of(&text));
    ctx.insert("links", &links_of(&text));
    ctx.insert("m", &row(mail.summary));
    render(&dev, "mail.html", &ctx)
}

async fn html_part(
    _: LocalName,
    dev: web::Data<DevMail>,
    id: web::Path<MailId>,
) -> Result<HttpResponse, ApiError> {
    let mail = open(&dev, id.into_inner()).await?;
    let html = mail.html.ok_or_else(ApiError::not_found)?;
    let res = HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html);
    let mut res = with_headers(res, PART_CSP, "SAMEORIGIN");
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(res)
}

async fn raw_file(
    _: LocalName,
    dev: web::Data<DevMail>,
    id: web::Path<MailId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let mailbox = dev.mailbox.clone();
    let file = id.file.clone();
    let raw = web::block(move || mailbox.raw(&id.origin, &id.file))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)?;
    // The name is one the folder listing had: a plain `.eml` name without quotes or slashes.
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file.replace(|c: char| !c.is_ascii_graphic() || c == '"', "_")
    );
    let res = HttpResponse::Ok()
        .content_type("message/rfc822")
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .body(raw);
    Ok(with_headers(res, PART_CSP, "DENY"))
}

/// Refuses a POST that did not come from a page of this server: it must carry the header
/// `mailbox.js` sends, or an `Origin` naming this server's host (browsers send one with
/// every form POST).
fn same_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let headers = req.headers();
    if headers.contains_key(REQUEST_HEADER) {
        return Ok(());
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let matches = match (origin, host) {
        (Some(origin), Some(host)) => origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host)),
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(ApiError::from(ErrorCode::CrossOriginRequest))
    }
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

async fn delete_one(
    _: LocalName,
    req: HttpRequest,
    dev: web::Data<DevMail>,
    id: web::Path<MailId>,
) -> Result<HttpResponse, ApiError> {
    same_origin(&req)?;
    let id = id.into_inner();
    let mailbox = dev.mailbox.clone();
    let deleted = web::block(move || mailbox.delete(&id.origin, &id.file))
        .await
        .map_err(ApiError::internal)?;
    if !deleted {
        return Err(ApiError::not_found());
    }
    Ok(see_other("/dev/mail".to_owned()))
}

/// Deletes every mail the list shows (with `?to=`, the filtered ones).
async fn delete_all(
    _: LocalName,
    req: HttpRequest,
    dev: web::Data<DevMail>,
    filter: web::Query<Filter>,
) -> Result<HttpResponse, ApiError> {
    same_origin(&req)?;
    let needle = filter.needle()?;
    let mails = listed(&dev, needle.clone()).await?;
    let mailbox = dev.mailbox.clone();
    web::block(move || {
        mailbox.delete_many(mails.iter().map(|m| (m.origin.as_str(), m.file.as_str())))
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(see_other(format!("/dev/mail{}", to_query(&needle))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_names_and_addresses_reach_the_mailbox() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.:8080",
            "app.localhost:3000",
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.0.0.7:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(local_name(ok), "{ok}");
        }
        for refused in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8080",
            "localhost:http",
            "[::1]x",
            "[evil.example]:80",
            "::1",
        ] {
            assert!(!local_name(refused), "{refused}");
        }
    }

    #[test]
    fn the_templates_compile() {
        pages().expect("the mailbox templates compile");
    }

    #[test]
    fn the_code_and_links_come_from_the_text_part() {
        let text = "Hello,\n\n    123456\n\nOpen https://app.example.org/reset?email=a%40b&otp=123456.\n(http://x.example/y)\n";
        assert_eq!(code_of(text).as_deref(), Some("123456"));
        assert_eq!(
            links_of(text),
            [
                "https://app.example.org/reset?email=a%40b&otp=123456",
                "http://x.example/y"
            ]
        );
        assert_eq!(code_of("no code 1234567\n"), None);
    }
}
