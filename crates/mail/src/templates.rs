//! The catalog in use, shared by the Mailer and the development mailbox, and its reload in
//! development: a changed template under `mail.templates_dir` is used by the next mail,
//! without a restart.
//!
//! A reload makes the same checks as the start (every template compiles). A broken edit
//! keeps the last good catalog: the error goes to the log, to
//! `auth_mail_template_failures_total{reason="reload"}` and to [`Templates::last_error`],
//! which the mailbox page shows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use authd_telemetry::names;
use notify::{RecursiveMode, Watcher};

use crate::catalog::Catalog;
use crate::MailKind;

/// The catalog in use. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct Templates {
    current: Arc<RwLock<Arc<Catalog>>>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Templates {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(catalog))),
            last_error: Arc::new(Mutex::new(None)),
        }
    }

    /// The catalog to render with now.
    pub fn current(&self) -> Arc<Catalog> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why the last reload was refused, while the templates on disk are still broken.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, catalog: Catalog) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn refuse(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}

/// How long a burst of file events (an editor writes, renames and touches) may last before
/// the folder is read again.
const SETTLE: Duration = Duration::from_millis(150);

/// Watches `dir` and reloads the catalog after every change, on a thread of its own for the
/// life of the process. `origins` are the enabled origins (labels of the failure counter).
pub fn watch(
    templates: Templates,
    dir: PathBuf,
    default_language: String,
    origins: Vec<String>,
) -> Result<(), notify::Error> {
    // Events name absolute paths: the folder's own must be absolute too, to name the files
    // relative to it (their kind and origin).
    let dir = dir.canonicalize().unwrap_or(dir);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx)?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    metrics::counter!(names::MAIL_TEMPLATE_RELOADS_TOTAL).absolute(0);
    for origin in &origins {
        for kind in MailKind::ALL {
            metrics::counter!(names::MAIL_TEMPLATE_FAILURES_TOTAL, "origin" => origin.clone(), "kind" => kind.as_str(), "reason" => "reload")
                .absolute(0);
        }
    }
    std::thread::Builder::new()
        .name("authd-template-reload".into())
        .spawn(move || {
            // The watcher lives as long as this thread, which lives as long as the process.
            let _watcher = watcher;
            while let Ok(first) = rx.recv() {
                let mut changed = BTreeSet::new();
                let mut note = |event: notify::Result<notify::Event>| match event {
                    // Reading a file is no change (and a reload reads them all).
                    Ok(e) if changes_content(&e.kind) => changed.extend(e.paths),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(cause = %e, "watching the mail templates failed"),
                };
                note(first);
                while let Ok(more) = rx.recv_timeout(SETTLE) {
                    note(more);
                }
                if !changed.is_empty() {
                    reload(&templates, &dir, &default_language, &origins, &changed);
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(())
}

/// Whether an event can change what a template says: files written, created, renamed or
/// removed. Opening, reading and closing without writing (`Access`) cannot; a reload itself
/// causes those for every file, so counting them would reload forever.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

fn reload(
    templates: &Templates,
    dir: &Path,
    default_language: &str,
    origins: &[String],
    changed: &BTreeSet<PathBuf>,
) {
    let files: Vec<String> = changed
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
        .collect();
    match Catalog::load(dir, default_language) {
        Ok(catalog) => {
            templates.replace(catalog);
            metrics::counter!(names::MAIL_TEMPLATE_RELOADS_TOTAL).increment(1);
            tracing::info!(files = %summary(&files), "mail templates reloaded");
        }
        Err(e) => {
            count_failure(origins, &files);
            tracing::error!(cause = %e, files = %summary(&files), "mail templates not reloaded: the last good ones stay in use");
            templates.refuse(e.to_string());
        }
    }
}

/// The changed files for a log line: the first three, and how many more.
fn summary(files: &[String]) -> String {
    let shown = files.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    match files.len() {
        0..=3 => shown,
        n => format!("{shown} and {} more", n - 3),
    }
}

/// Counts a refused reload under every (origin, kind) whose templates changed: a file under
/// `<kind>/` or `origins/<origin>/<kind>/` names them; any other file (a layout) may be used
/// by every kind.
fn count_failure(origins: &[String], files: &[String]) {
    let mut hit: BTreeSet<(String, &'static str)> = BTreeSet::new();
    for file in files {
        let parts: Vec<&str> = file.split('/').collect();
        let (only_origin, kind) = match parts.as_slice() {
            ["origins", origin, kind, ..] => (Some(*origin), MailKind::parse(kind)),
            [kind, ..] => (None, MailKind::parse(kind)),
            [] => (None, None),
        };
        for origin in origins
            .iter()
            .filter(|o| only_origin.is_none_or(|only| only == o.as_str()))
        {
            match kind {
                Some(k) => {
                    hit.insert((origin.clone(), k.as_str()));
                }
                None => hit.extend(MailKind::ALL.iter().map(|k| (origin.clone(), k.as_str()))),
            }
        }
    }
    for (origin, kind) in hit {
        metrics::counter!(names::MAIL_TEMPLATE_FAILURES_TOTAL, "origin" => origin, "kind" => kind, "reason" => "reload")
            .increment(1);
    }
}
