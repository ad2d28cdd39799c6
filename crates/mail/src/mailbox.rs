//! A read-only view of the file backend's folders for the development mailbox page: lists,
//! reads and deletes the `.eml` files any process wrote (this one, other replicas, the CLI),
//! so it reads the folders each time instead of remembering what it sent.
//!
//! Nothing outside the configured folders is ever opened: a mail is named by its origin and
//! its file name, and both must match an entry of the folder's own listing (a regular `.eml`
//! file, not a symbolic link, not hidden), so `..`, slashes and absolute paths name nothing.
//! Mail contents hold one-time codes: nothing here logs them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDateTime, Utc};
use mail_parser::MessageParser;

use crate::compose::{KIND_HEADER, LANGUAGE_HEADER};

/// Larger files are shown as malformed rather than read (the file backend writes a few KiB).
const MAX_MAIL_BYTES: u64 = 4 * 1024 * 1024;

/// One mail folder and the origins writing into it (usually one).
#[derive(Debug, Clone)]
struct Folder {
    /// The first origin's name: the folder's name in ids and URLs.
    name: String,
    /// Every enabled origin whose file backend writes here.
    origins: Vec<String>,
    dir: PathBuf,
}

/// What the list shows of one mail. `error` is set (and the other fields may be empty) when
/// the file cannot be read or is not a mail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The folder's name (an origin).
    pub origin: String,
    /// Every origin writing into that folder, joined with ", ".
    pub origins: String,
    /// The file name, e.g. `20261207T155837.123Z-0000000042.eml`.
    pub file: String,
    /// When the mail was queued (from the file name), else the file's modification time.
    pub time: DateTime<Utc>,
    pub to: String,
    pub subject: String,
    pub kind: String,
    pub language: String,
    pub error: Option<String>,
}

/// A whole mail, parsed for the mail page.
#[derive(Debug, Clone)]
pub struct Opened {
    pub summary: Summary,
    pub raw: Vec<u8>,
    pub from: String,
    /// The header block as written (folded lines kept).
    pub headers: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// The mailbox over the configured folders, with a cache of parsed summaries keyed by file
/// name, size and modification time (a folder may hold thousands of mails).
#[derive(Debug)]
pub struct Mailbox {
    folders: Vec<Folder>,
    cache: Mutex<HashMap<(usize, String), (Stamp, Summary)>>,
}

impl Mailbox {
    /// `folders` are `(origin, dir)` pairs; origins sharing a folder show it once.
    pub fn new(folders: Vec<(String, PathBuf)>) -> Self {
        let mut merged: Vec<Folder> = Vec::new();
        for (origin, dir) in folders {
            let same = |f: &Folder| {
                f.dir == dir
                    || matches!((f.dir.canonicalize(), dir.canonicalize()), (Ok(a), Ok(b)) if a == b)
            };
            match merged.iter_mut().find(|f| same(f)) {
                Some(f) => f.origins.push(origin),
                None => merged.push(Folder {
                    name: origin.clone(),
                    origins: vec![origin],
                    dir,
                }),
            }
        }
        Self {
            folders: merged,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The folders' names (origins) and paths.
    pub fn folders(&self) -> Vec<(String, PathBuf)> {
        self.folders
            .iter()
            .map(|f| (f.name.clone(), f.dir.clone()))
            .collect()
    }

    /// The mail files of one folder: regular files named `*.eml`, not hidden (the file
    /// backend's temporary files start with a dot), with their size and time. A folder that
    /// does not exist yet is empty.
    fn entries(dir: &Path) -> Vec<(String, Stamp)> {
        let Ok(read) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        read.filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if !is_mail_name(&name) {
                    return None;
                }
                // DirEntry::metadata does not follow symbolic links.
                let meta = entry.metadata().ok()?;
                meta.is_file().then(|| {
                    (
                        name,
                        Stamp {
                            len: meta.len(),
                            modified: meta.modified().ok(),
                        },
                    )
                })
            })
            .collect()
    }

    /// Every mail of every folder, newest first; the cache keeps only what still exists.
    pub fn list(&self) -> Vec<Summary> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (index, folder) in self.folders.iter().enumerate() {
            for (name, stamp) in Self::entries(&folder.dir) {
                let key = (index, name.clone());
                let cached = self
                    .cache
                    .lock()
                    .ok()
                    .and_then(|c| c.get(&key).filter(|(s, _)| *s == stamp).cloned());
                let summary = match cached {
                    Some((_, summary)) => summary,
                    None => {
                        let summary = match read_mail(&folder.dir, &name) {
                            Some(raw) => summarize(folder, &name, &stamp, &raw).0,
                            None => failed(folder, &name, &stamp, "cannot be read"),
                        };
                        if let Ok(mut c) = self.cache.lock() {
                            c.insert(key.clone(), (stamp, summary.clone()));
                        }
                        summary
                    }
                };
                seen.push(key);
                out.push(summary);
            }
        }
        if let Ok(mut c) = self.cache.lock() {
            let seen: std::collections::HashSet<_> = seen.into_iter().collect();
            c.retain(|k, _| seen.contains(k));
        }
        out.sort_by(|a, b| {
            b.time
                .cmp(&a.time)
                .then_with(|| b.file.cmp(&a.file))
                .then_with(|| a.origin.cmp(&b.origin))
        });
        out
    }

    /// The folder and file a mail id names, when the folder's listing has that file.
    fn find(&self, origin: &str, file: &str) -> Option<(&Folder, Stamp)> {
        if !is_mail_name(file) {
            return None;
        }
        let folder = self.folders.iter().find(|f| f.name == origin)?;
        let (_, stamp) = Self::entries(&folder.dir)
            .into_iter()
            .find(|(name, _)| name == file)?;
        Some((folder, stamp))
    }

    /// One mail, parsed; `None` when the id names no mail of the folders.
    pub fn open(&self, origin: &str, file: &str) -> Option<Opened> {
        let (folder, stamp) = self.find(origin, file)?;
        let raw = read_mail(&folder.dir, file)?;
        let (summary, parsed) = summarize(folder, file, &stamp, &raw);
        let parsed = parsed.unwrap_or_default();
        Some(Opened {
            summary,
            headers: header_block(&raw),
            from: parsed.from,
            text: parsed.text,
            html: parsed.html,
            raw,
        })
    }

    /// The file as written; `None` when the id names no mail of the folders.
    pub fn raw(&self, origin: &str, file: &str) -> Option<Vec<u8>> {
        let (folder, _) = self.find(origin, file)?;
        read_mail(&folder.dir, file)
    }

    /// Deletes one mail; false when the id names none.
    pub fn delete(&self, origin: &str, file: &str) -> bool {
        match self.find(origin, file) {
            Some((folder, _)) => std::fs::remove_file(folder.dir.join(file)).is_ok(),
            None => false,
        }
    }

    /// Deletes these mails (as listed); returns how many went. Each folder is listed once,
    /// however many mails go.
    pub fn delete_many<'a>(&self, ids: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
        let mut wanted: HashMap<&str, Vec<&str>> = HashMap::new();
        for (origin, file) in ids {
            wanted.entry(origin).or_default().push(file);
        }
        let mut deleted = 0;
        for folder in &self.folders {
            let Some(files) = wanted.get(folder.name.as_str()) else {
                continue;
            };
            let listed: std::collections::HashSet<String> = Self::entries(&folder.dir)
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            for file in files {
                if listed.contains(*file) && std::fs::remove_file(folder.dir.join(file)).is_ok() {
                    deleted += 1;
                }
            }
        }
        deleted
    }
}

/// A name the file backend could have written, and nothing that leaves the folder.
fn is_mail_name(name: &str) -> bool {
    name.len() <= 255
        && name.ends_with(".eml")
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && !name.contains("..")
}

/// Reads a listed mail file, refusing one that is (or became) a symbolic link or is too
/// large: the opened file must be the regular file the listing saw.
fn read_mail(dir: &Path, name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let path = dir.join(name);
    let listed = std::fs::symlink_metadata(&path).ok()?;
    if !listed.is_file() || listed.len() > MAX_MAIL_BYTES {
        return None;
    }
    let file = std::fs::File::open(&path).ok()?;
    let opened = file.metadata().ok()?;
    if !same_file(&listed, &opened) {
        return None;
    }
    let mut raw = Vec::new();
    file.take(MAX_MAIL_BYTES).read_to_end(&mut raw).ok()?;
    Some(raw)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    b.is_file()
}

/// `20261207T155837.123Z-0000000042.eml` → its time.
fn time_of_name(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.get(..20)?;
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ")
        .ok()
        .map(|t| t.and_utc())
}

fn time_of(name: &str, stamp: &Stamp) -> DateTime<Utc> {
    time_of_name(name)
        .or_else(|| stamp.modified.map(DateTime::<Utc>::from))
        .unwrap_or_default()
}

fn failed(folder: &Folder, name: &str, stamp: &Stamp, why: &str) -> Summary {
    Summary {
        origin: folder.name.clone(),
        origins: folder.origins.join(", "),
        file: name.to_owned(),
        time: time_of(name, stamp),
        to: String::new(),
        subject: String::new(),
        kind: String::new(),
        language: String::new(),
        error: Some(why.to_owned()),
    }
}

#[derive(Debug, Default)]
struct Parsed {
    from: String,
    text: Option<String>,
    html: Option<String>,
}

/// The summary of a mail, and its parts when it parses as one.
fn summarize(folder: &Folder, name: &str, stamp: &Stamp, raw: &[u8]) -> (Summary, Option<Parsed>) {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return (failed(folder, name, stamp, "not an RFC 5322 message"), None);
    };
    let first = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned()
    };
    let to = first(msg.to());
    let from = first(msg.from());
    if to.is_empty() || from.is_empty() {
        let mut summary = failed(
            folder,
            name,
            stamp,
            "not a mail: it has no From or no To address",
        );
        summary.subject = msg.subject().unwrap_or_default().to_owned();
        return (summary, None);
    }
    let text_header = |h: &str| {
        msg.header_raw(h)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let summary = Summary {
        origin: folder.name.clone(),
        origins: folder.origins.join(", "),
        file: name.to_owned(),
        time: time_of(name, stamp),
        to,
        subject: msg.subject().unwrap_or_default().to_owned(),
        kind: text_header(KIND_HEADER),
        language: text_header(LANGUAGE_HEADER),
        error: None,
    };
    // A mail without an HTML part has its text part in html_body too: only a real one counts.
    let has_html = matches!(
        msg.html_part(0).map(|p| &p.body),
        Some(mail_parser::PartType::Html(_))
    );
    let parsed = Parsed {
        from,
        text: msg.body_text(0).map(|t| t.into_owned()),
        html: if has_html {
            msg.body_html(0).map(|t| t.into_owned())
        } else {
            None
        },
    };
    (summary, Some(parsed))
}

/// The header block: everything before the first empty line.
fn header_block(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let end = text
        .find("\r\n\r\n")
        .or_else(|| text.find("\n\n"))
        .unwrap_or(text.len());
    text[..end].replace("\r\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_mail_names_are_names() {
        for good in ["20231114T221320.000Z-0000000009.eml", "x.eml"] {
            assert!(is_mail_name(good), "{good}");
        }
        for bad in [
            "../x.eml",
            "..eml",
            "a/b.eml",
            "/etc/x.eml",
            "a\\b.eml",
            ".hidden.eml",
            ".x.eml.tmp",
            "x.txt",
            "x.eml\0",
        ] {
            assert!(!is_mail_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_file_name_gives_the_time() {
        let t = time_of_name("20231114T221320.000Z-0000000009.eml").unwrap();
        assert_eq!(t.timestamp_millis(), 1_700_000_000_000);
        assert!(time_of_name("mail.eml").is_none());
    }
}
