//! The template catalog: every Tera template under the templates folder, compiled once at
//! start, and the fallback chain that picks one for (origin, kind, language).

use std::path::Path;

use serde::Serialize;
use tera::{Context, Tera};

use crate::MailKind;

/// Why a mail could not be rendered; the reason is a metric label.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("no template for {kind} in any language of the fallback chain (asked for {language})")]
    Missing {
        kind: &'static str,
        language: String,
    },
    #[error("template {name} failed to render: {cause}")]
    Render { name: String, cause: String },
}

impl TemplateError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "missing",
            Self::Render { .. } => "render",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot load mail templates from {dir}: {cause}")]
pub struct CatalogError {
    dir: String,
    cause: String,
}

/// The three rendered parts of a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedParts {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The language actually used after the fallback chain.
    pub language: String,
}

/// The template folder of the operator's test mail.
pub(crate) const DELIVERY_TEST: &str = "delivery_test";

#[derive(Debug)]
pub struct Catalog {
    tera: Tera,
    default_language: String,
}

/// Full error text of a Tera error, whose useful part sits in its `source()` chain.
fn tera_cause(e: &tera::Error) -> String {
    let mut out = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

impl Catalog {
    /// Loads and compiles every `*.tera` file under `dir`. A syntax error in any template stops
    /// the start (it would otherwise surface as a 500 at the first request).
    pub fn load(dir: &Path, default_language: &str) -> Result<Self, CatalogError> {
        let err = |cause: String| CatalogError {
            dir: dir.display().to_string(),
            cause,
        };
        if !dir.is_dir() {
            return Err(err("not a folder".into()));
        }
        let glob = format!("{}/**/*.tera", dir.display());
        let mut tera = Tera::new(&glob).map_err(|e| err(tera_cause(&e)))?;
        // HTML parts are escaped; subjects and text parts are not HTML.
        tera.autoescape_on(vec![".html.tera"]);
        Ok(Self {
            tera,
            default_language: default_language.to_owned(),
        })
    }

    fn has_set(&self, prefix: &str) -> bool {
        ["subject", "txt", "html"].iter().all(|part| {
            self.tera
                .get_template(&format!("{prefix}.{part}.tera"))
                .is_ok()
        })
    }

    /// The template set for a request: origin override in the language → shared in the
    /// language → the same for the origin's default language → for the global default language.
    /// A set counts only when all three parts exist.
    pub fn resolve(
        &self,
        origin: &str,
        kind: MailKind,
        language: &str,
        origin_default: &str,
    ) -> Option<(String, String)> {
        self.resolve_folder(origin, kind.as_str(), language, origin_default)
    }

    /// [`Self::resolve`] for a template folder by name.
    fn resolve_folder(
        &self,
        origin: &str,
        folder: &str,
        language: &str,
        origin_default: &str,
    ) -> Option<(String, String)> {
        let mut langs = vec![language, origin_default, self.default_language.as_str()];
        langs.dedup();
        for lang in langs {
            for prefix in [
                format!("origins/{origin}/{folder}/{lang}"),
                format!("{folder}/{lang}"),
            ] {
                if self.has_set(&prefix) {
                    return Some((prefix, lang.to_owned()));
                }
            }
        }
        None
    }

    /// Renders the three parts with `vars`.
    pub fn render<T: Serialize>(
        &self,
        origin: &str,
        kind: MailKind,
        language: &str,
        origin_default: &str,
        vars: &T,
    ) -> Result<RenderedParts, TemplateError> {
        self.render_folder(origin, kind.as_str(), language, origin_default, vars)
    }

    /// The operator's test mail (`authd mail test`): the `delivery_test` folder, which is no
    /// [`MailKind`] (it is never queued) and may exist in one language only.
    pub fn render_delivery_test<T: Serialize>(
        &self,
        origin: &str,
        language: &str,
        origin_default: &str,
        vars: &T,
    ) -> Result<RenderedParts, TemplateError> {
        self.render_folder(origin, DELIVERY_TEST, language, origin_default, vars)
    }

    fn render_folder<T: Serialize>(
        &self,
        origin: &str,
        folder: &'static str,
        language: &str,
        origin_default: &str,
        vars: &T,
    ) -> Result<RenderedParts, TemplateError> {
        let (prefix, lang) = self
            .resolve_folder(origin, folder, language, origin_default)
            .ok_or_else(|| TemplateError::Missing {
                kind: folder,
                language: language.to_owned(),
            })?;
        let mut ctx = Context::from_serialize(vars).map_err(|e| TemplateError::Render {
            name: prefix.clone(),
            cause: tera_cause(&e),
        })?;
        ctx.insert("language", &lang);
        ctx.insert("origin", origin);
        let part = |p: &str| {
            let name = format!("{prefix}.{p}.tera");
            self.tera
                .render(&name, &ctx)
                .map_err(|e| TemplateError::Render {
                    name: name.clone(),
                    cause: tera_cause(&e),
                })
        };
        let subject = part("subject")?.trim().replace(['\r', '\n'], " ");
        if subject.is_empty() {
            return Err(TemplateError::Render {
                name: format!("{prefix}.subject.tera"),
                cause: "empty subject".into(),
            });
        }
        Ok(RenderedParts {
            subject,
            text: part("txt")?,
            html: part("html")?,
            language: lang,
        })
    }

    /// Whether a set exists for exactly this (origin, kind, language), without fallback: the
    /// question `authd templates check` asks.
    pub fn has_exact(&self, origin: &str, kind: MailKind, language: &str) -> bool {
        self.has_set(&format!("origins/{origin}/{}/{language}", kind.as_str()))
            || self.has_set(&format!("{}/{language}", kind.as_str()))
    }
}
