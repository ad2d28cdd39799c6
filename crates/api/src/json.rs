//! `JsonBody<T>`: the request body extractor. It enforces the contract's rules in one place:
//! `Content-Type: application/json` (415), the body cap (413), and 400 sentences that name the
//! field at fault.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::ErrorCode;

/// The largest body accepted, shared by every route.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON request body parsed into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<BodyLimit>>()
            .map_or(16 * 1024, |l| l.0);
        let json = is_json(req.headers());
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > limit) {
                return Err(ApiError::from(ErrorCode::PayloadTooLarge));
            }
            if !json {
                return Err(ApiError::from(ErrorCode::UnsupportedMediaType));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| ApiError::bad_request("body could not be read"))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::from(ErrorCode::PayloadTooLarge));
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(JsonBody)
        })
    }
}

/// Parses a body, turning serde's messages into one sentence that names the field.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every body of the contract is an object; serde would also accept an array for a struct.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ApiError::bad_request(sentence(&path, &inner))
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(sentence(".", &e)))?;
    Ok(value)
}

fn sentence(path: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let msg = e.to_string();
    // serde appends " at line L column C"; the field path says more.
    let msg = msg
        .rsplit_once(" at line ")
        .map_or(msg.as_str(), |(m, _)| m)
        .to_owned();
    let field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        format!("body/{}", path.replace('.', "/"))
    };
    match e.classify() {
        Category::Syntax | Category::Eof => format!("body is not valid JSON: {msg}"),
        Category::Io => "body could not be read".to_owned(),
        Category::Data => {
            if let Some(name) = msg
                .strip_prefix("missing field `")
                .and_then(|r| r.strip_suffix('`'))
            {
                format!("{field} must have required property '{name}'")
            } else if let Some(rest) = msg.strip_prefix("invalid type: ") {
                format!("{field} has the wrong type: {rest}")
            } else {
                format!("{field}: {msg}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        nested: Option<Nested>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        count: u32,
    }

    fn msg(body: &str) -> String {
        parse::<Body>(body.as_bytes())
            .unwrap_err()
            .message()
            .to_owned()
    }

    #[test]
    fn sentences_name_the_field_at_fault() {
        assert_eq!(msg("{}"), "body must have required property 'email'");
        assert_eq!(
            msg(r#"{"email": 5}"#),
            "body/email has the wrong type: integer `5`, expected a string"
        );
        assert_eq!(
            msg(r#"{"email": "a", "nested": {"count": "x"}}"#),
            "body/nested/count has the wrong type: string \"x\", expected u32"
        );
        assert_eq!(msg("[]"), "body must be a JSON object");
        assert_eq!(msg("null"), "body must be a JSON object");
        assert!(msg("{\"email\": ").starts_with("body is not valid JSON"));
        assert!(msg("{nope}").starts_with("body is not valid JSON"));
        assert!(msg(r#"{"email": "a"} trailing"#).starts_with("body is not valid JSON"));
        assert_eq!(msg(""), "body must be a JSON object");
    }
}
