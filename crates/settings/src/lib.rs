#![doc = include_str!("../README.md")]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The documented defaults, compiled in so the binary runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Environment variable that names the deployment environment: `development` or
/// `production`, nothing else (unset is refused too, so a deployment that forgot it never runs
/// as development).
pub const ENV_VAR: &str = "AUTHD_ENV";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub metrics: MetricsSettings,
    pub database: DatabaseSettings,
    pub password: PasswordSettings,
    pub secrets: SecretSettings,
    pub limits: LimitsSettings,
    pub security: SecuritySettings,
    pub tokens: TokenSettings,
    pub otp: OtpSettings,
    pub mail: MailSettings,
    pub origins: BTreeMap<String, OriginSettings>,
    pub log: LogSettings,
    pub dev: DevSettings,
}

/// Development aids, never for production.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSettings {
    /// The mailbox page at `/dev/mail`: every mail the file backend wrote.
    pub mailbox: DevSwitch,
    /// A changed template under `mail.templates_dir` is used by the next mail.
    pub reload_templates: DevSwitch,
}

/// A development aid's switch (`dev.mailbox`, `dev.reload_templates`): `"auto"`, `true` or
/// `false`, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SwitchValue")]
pub enum DevSwitch {
    /// On in development (the mailbox: when an enabled origin also uses the file backend).
    Auto,
    On,
    Off,
}

/// What a configuration layer may hold for a switch: TOML and `AUTHD__…=true` give a boolean,
/// `"auto"` a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SwitchValue {
    Bool(bool),
    Text(String),
}

impl TryFrom<SwitchValue> for DevSwitch {
    type Error = String;

    fn try_from(value: SwitchValue) -> Result<Self, String> {
        match value {
            SwitchValue::Bool(true) => Ok(Self::On),
            SwitchValue::Bool(false) => Ok(Self::Off),
            SwitchValue::Text(t) if t == "auto" => Ok(Self::Auto),
            SwitchValue::Text(t) => Err(format!(
                "a dev switch (dev.mailbox, dev.reload_templates) is {t:?}; it must be \"auto\", \
                 true or false"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    pub denied_cache_size: usize,
    pub replica_heartbeat_secs: u64,
    pub reset_mail: WindowLimit,
    pub otp_mail: WindowLimit,
    pub transfer_mail: WindowLimit,
    pub ip_login: IpBudget,
    pub ip_reset: IpBudget,
    pub password_backoff: BackoffSettings,
    pub totp_backoff: BackoffSettings,
    pub recovery_code_backoff: BackoffSettings,
    pub emailed_code_backoff: BackoffSettings,
    pub account_ceiling: CeilingSettings,
}

/// Across every client network together, an account admits `max_failures` consecutive
/// failures of one kind; then the whole account waits `initial_wait_secs`, doubling per
/// further failure up to `max_wait_secs`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeilingSettings {
    pub max_failures: u32,
    pub initial_wait_secs: u64,
    pub max_wait_secs: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Every call marked "sudo (or access when 2FA is off)" takes a sudo token only.
    pub strict_sudo: bool,
}

/// After `free_failures` consecutive failures, attempts wait `initial_wait_secs`, doubling up
/// to `max_wait_secs`; a success ends the streak.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSettings {
    pub free_failures: u32,
    pub initial_wait_secs: u64,
    pub max_wait_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub issuer: String,
    pub refresh_lifetime_secs: u64,
    pub access_lifetime_secs: u64,
    pub sudo_lifetime_secs: u64,
    pub partial_lifetime_secs: u64,
    pub retired_signing_key_files: Vec<PathBuf>,
}

/// A per-client-IP token bucket.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBudget {
    pub capacity: u32,
    pub refill_per_minute: u32,
}

/// At most `max` per key per `window_secs`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowLimit {
    pub max: u32,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtpSettings {
    pub lifetime_secs: u64,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    pub default_origin: String,
    pub default_language: String,
    pub templates_dir: PathBuf,
    pub forbidden_domains: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub poll_interval_ms: u64,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    pub lease_secs: u64,
    pub send_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSettings {
    pub enabled: bool,
    pub from: String,
    pub reply_to: String,
    pub product_name: String,
    pub default_language: String,
    pub languages: Vec<String>,
    pub reset_url: String,
    /// Which of the backend tables below is used. The others may stay (a configuration layer
    /// cannot remove keys of the layers below it), and are ignored.
    pub backend: BackendKind,
    pub file: Option<FileSettings>,
    pub smtp: Option<SmtpSettings>,
    pub sendmail: Option<SendmailSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    File,
    Smtp,
    Sendmail,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Smtp => "smtp",
            Self::Sendmail => "sendmail",
        }
    }
}

/// One `.eml` file per mail in `dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub dir: PathBuf,
}

/// A sendmail-compatible program, run as `program -i -f FROM -- TO` with the message on stdin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendmailSettings {
    pub program: PathBuf,
}

/// The backend an origin uses, with its settings.
#[derive(Debug, Clone, Copy)]
pub enum Backend<'a> {
    File(&'a FileSettings),
    Smtp(&'a SmtpSettings),
    Sendmail(&'a SendmailSettings),
}

impl OriginSettings {
    /// The chosen backend; `None` when its table is missing (refused at load).
    pub fn backend(&self) -> Option<Backend<'_>> {
        match self.backend {
            BackendKind::File => self.file.as_ref().map(Backend::File),
            BackendKind::Smtp => self.smtp.as_ref().map(Backend::Smtp),
            BackendKind::Sendmail => self.sendmail.as_ref().map(Backend::Sendmail),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: String,
    #[serde(default = "empty_secret")]
    pub password: SecretString,
    #[serde(default)]
    pub password_file: String,
    #[serde(default = "smtp_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "smtp_pool_size")]
    pub pool_size: u32,
}

// Defaults for keys of an smtp backend, which config/default.toml (whose origins use the file
// backend) cannot show; they are documented there and in config/production.example.toml.
fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}
fn smtp_timeout_secs() -> u64 {
    10
}
fn smtp_pool_size() -> u32 {
    4
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a relay on localhost or a private network only).
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: String,
    pub workers: usize,
    pub body_limit_bytes: usize,
    pub shutdown_timeout_secs: u64,
    pub keep_alive_secs: u64,
    pub client_request_timeout_ms: u64,
    pub readiness_timeout_ms: u64,
    pub trusted_proxies: Vec<String>,
    pub client_ip_header: ClientIpHeader,
    pub cors: CorsSettings,
}

/// Cross-origin calls from browser apps. No origins (the default) means CORS is off: no
/// `Access-Control-*` headers, preflights unanswered, and no call authenticated by the refresh
/// cookie passes the origin check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`) as browsers send them in `Origin`.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight's answer (`Access-Control-Max-Age`).
    pub max_age_secs: u64,
}

/// Browsers cache a preflight for at most a day (Firefox; Chromium caps it at 2 hours).
pub const CORS_MAX_AGE_LIMIT_SECS: u64 = 86_400;

/// Why `origin` is not a bare origin written the way a browser sends it in `Origin`
/// (`scheme://host[:port]`, lower case, no default port, no path), or `None` when it is one.
/// A browser's `Origin` is compared byte for byte, so any other spelling would never match.
pub fn origin_problem(origin: &str) -> Option<String> {
    if origin.contains('*') {
        return Some(format!(
            "{origin:?}: wildcards are not allowed; list each origin (credentials are allowed, \
             so a wildcard would let any site act for a signed-in user)"
        ));
    }
    let (scheme, rest) = if let Some(rest) = origin.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = origin.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Some(format!(
            "{origin:?} is not an origin: it must start with https:// or http://"
        ));
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Some(format!(
            "{origin:?} is not a bare origin: write scheme://host[:port], without path, trailing \
             slash, query or user"
        ));
    }
    let (host, port) = if rest.starts_with('[') {
        // An IPv6 literal, compressed and lower case as browsers write it.
        let end = rest.find(']').unwrap_or(rest.len());
        let addr = rest.get(1..end).unwrap_or_default();
        let canonical = addr
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|a| a.to_string() == addr);
        let port = match rest.get(end + 1..) {
            Some("") => None,
            Some(tail) if canonical && tail.starts_with(':') => Some(&tail[1..]),
            _ => {
                return Some(format!(
                "{origin:?}: write an IPv6 host compressed and in brackets, e.g. http://[::1]:8080"
            ))
            }
        };
        if !canonical {
            return Some(format!(
                "{origin:?}: write an IPv6 host compressed and in brackets, e.g. http://[::1]:8080"
            ));
        }
        (&rest[..=end], port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && !host.starts_with(['.', '-'])
            && !host.ends_with(['.', '-'])
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b)));
    if !host_ok {
        return Some(format!(
            "{origin:?}: the host must be a lower-case name or address, as browsers send it"
        ));
    }
    if let Some(port) = port {
        let number = port.parse::<u16>().ok().filter(|n| {
            *n > 0 && !port.starts_with('0') && port.bytes().all(|b| b.is_ascii_digit())
        });
        let Some(number) = number else {
            return Some(format!(
                "{origin:?}: the port must be a number from 1 to 65535"
            ));
        };
        if (scheme, number) == ("https", 443) || (scheme, number) == ("http", 80) {
            return Some(format!(
                "{origin:?}: leave out the default port; browsers send {scheme}://{host}"
            ));
        }
    }
    None
}

/// The header a trusted proxy writes the client address into. Only that one is read: a
/// client could send the other one itself, and the proxy would pass it on untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl TryFrom<String> for ClientIpHeader {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            other => Err(format!(
                "http.client_ip_header is {other:?}; it must be \"x-forwarded-for\" or \"forwarded\""
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
    pub bind: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub url_file: String,
    pub pool_max_size: u32,
    pub writers: u32,
    pub connect_timeout_secs: u64,
    pub sqlite_busy_timeout_ms: u64,
    pub housekeeping_interval_secs: u64,
    pub keep_sent_mail_days: u64,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hashing_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    pub otp_key: SecretString,
    pub otp_key_file: String,
    pub totp_key: SecretString,
    pub totp_key_file: String,
    pub signing_key: SecretString,
    pub signing_key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The deployment environment from `AUTHD_ENV`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Environment {
    /// A laptop: keys generated and kept in the database, the file mail backend allowed.
    Development,
    /// Every secret configured, no file mail backend.
    Production,
}

impl Environment {
    /// The documented names, exactly (case matters: `Production` is refused like `prod`).
    pub const NAMES: &'static [&'static str] = &["development", "production"];

    pub fn from_name(name: Option<&str>) -> Result<Self, SettingsError> {
        match name {
            Some("development") => Ok(Self::Development),
            Some("production") => Ok(Self::Production),
            other => Err(SettingsError::UnknownEnvironment(other.map(str::to_owned))),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error(
        "configuration: {} is {}; set it to one of: development (a laptop: generated keys, \
         file mail allowed), production",
        ENV_VAR,
        match .0 { Some(v) => format!("{v:?}, which is not a known environment"), None => "not set".to_owned() }
    )]
    UnknownEnvironment(Option<String>),
    #[error("configuration: the file given with --config does not exist: {0}")]
    MissingFile(PathBuf),
    #[error("configuration: cannot read {key} from {path}: {source}")]
    SecretFile {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration: {key} and {key}_file are both set; give one of them")]
    SecretTwice { key: String },
    #[error("configuration: invalid value for {key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error(
        "configuration: AUTHD_ENV=production needs these secrets, which are not set: {}. \
         Give each inline or as a path in its *_file key (or AUTHD__SECRETS__<KEY>).",
        .0.join(", ")
    )]
    MissingSecrets(Vec<String>),
}

/// Where the layers come from. `Default` reads the process environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Directory holding `<env>.toml`; `./config` when unset.
    pub config_dir: Option<PathBuf>,
    /// The `--config FILE`, if any.
    pub file: Option<PathBuf>,
    /// Environment to read instead of the process's (tests); `None` reads the process's.
    pub env: Option<HashMap<String, String>>,
}

/// The loaded settings plus the environment they were loaded for.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub environment: Environment,
    pub settings: Settings,
}

impl Sources {
    fn env_value(&self, key: &str) -> Option<String> {
        match &self.env {
            Some(map) => map.get(key).cloned(),
            None => std::env::var(key).ok(),
        }
    }

    /// Loads every layer, resolves `*_file` secrets and validates the result.
    pub fn load(&self) -> Result<Loaded, SettingsError> {
        let environment = Environment::from_name(self.env_value(ENV_VAR).as_deref())?;
        let dir = self
            .config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("config"));
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(
                config::File::from(dir.join(format!("{}.toml", environment.name())))
                    .format(config::FileFormat::Toml)
                    .required(false),
            );
        if let Some(file) = &self.file {
            if !file.exists() {
                return Err(SettingsError::MissingFile(file.clone()));
            }
            builder = builder
                .add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml));
        }
        let mut env_source = config::Environment::with_prefix("AUTHD")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("http.trusted_proxies")
            .with_list_parse_key("http.cors.allowed_origins")
            .with_list_parse_key("mail.forbidden_domains")
            .with_list_parse_key("mail.allowed_domains")
            .with_list_parse_key("tokens.retired_signing_key_files");
        if let Some(map) = &self.env {
            env_source = env_source.source(Some(map.clone()));
        }
        let raw = builder.add_source(env_source).build()?;
        let mut settings: Settings = raw.try_deserialize()?;
        settings.resolve_files()?;
        settings.validate(&environment)?;
        Ok(Loaded {
            environment,
            settings,
        })
    }
}

/// `database.url` as `config/default.toml` gives it.
fn default_database_url() -> String {
    config::Config::builder()
        .add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ))
        .build()
        .and_then(|c| c.get_string("database.url"))
        .unwrap_or_default()
}

fn read_secret_file(key: &str, path: &str) -> Result<SecretString, SettingsError> {
    let text =
        std::fs::read_to_string(Path::new(path)).map_err(|source| SettingsError::SecretFile {
            key: key.to_owned(),
            path: PathBuf::from(path),
            source,
        })?;
    // A trailing newline from `echo > file` is never part of a secret.
    Ok(SecretString::from(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Folds a `<key>_file` into `<key>`; both set is an error, because which one wins would
/// be a guess.
fn fold_file(key: &str, inline: &mut SecretString, file: &str) -> Result<(), SettingsError> {
    if file.is_empty() {
        return Ok(());
    }
    if !inline.expose_secret().is_empty() {
        return Err(SettingsError::SecretTwice {
            key: key.to_owned(),
        });
    }
    *inline = read_secret_file(&format!("{key}_file"), file)?;
    Ok(())
}

impl Settings {
    fn resolve_files(&mut self) -> Result<(), SettingsError> {
        let db = &mut self.database;
        // The embedded default URL is no choice of the operator's: a url_file replaces it
        // (otherwise url_file could never be used without also emptying url).
        if !db.url_file.is_empty() && db.url.expose_secret() == default_database_url() {
            db.url = SecretString::from(String::new());
        }
        fold_file("database.url", &mut db.url, &db.url_file.clone())?;
        let s = &mut self.secrets;
        fold_file("secrets.otp_key", &mut s.otp_key, &s.otp_key_file.clone())?;
        fold_file(
            "secrets.totp_key",
            &mut s.totp_key,
            &s.totp_key_file.clone(),
        )?;
        fold_file(
            "secrets.signing_key",
            &mut s.signing_key,
            &s.signing_key_file.clone(),
        )?;
        // The SMTP password of each origin that sends through SMTP (a table a layer left
        // behind under another backend is ignored, like the rest of it).
        for (name, o) in self.origins.iter_mut() {
            if !o.enabled || o.backend != BackendKind::Smtp {
                continue;
            }
            if let Some(smtp) = o.smtp.as_mut() {
                let file = smtp.password_file.clone();
                fold_file(
                    &format!("origins.{name}.smtp.password"),
                    &mut smtp.password,
                    &file,
                )?;
            }
        }
        Ok(())
    }

    fn validate(&self, environment: &Environment) -> Result<(), SettingsError> {
        let invalid = |key: &str, reason: &str| SettingsError::Invalid {
            key: key.into(),
            reason: reason.into(),
        };
        DatabaseUrl::parse(self.database.url.expose_secret())
            .map_err(|reason| invalid("database.url", &reason))?;
        for p in &self.http.trusted_proxies {
            if p.parse::<std::net::IpAddr>().is_err() && p.parse::<ipnet::IpNet>().is_err() {
                return Err(invalid(
                    "http.trusted_proxies",
                    &format!("{p:?} is not an IP address or CIDR"),
                ));
            }
        }
        for o in &self.http.cors.allowed_origins {
            if let Some(reason) = origin_problem(o) {
                return Err(invalid("http.cors.allowed_origins", &reason));
            }
        }
        if self.http.cors.max_age_secs > CORS_MAX_AGE_LIMIT_SECS {
            return Err(invalid(
                "http.cors.max_age_secs",
                "must be at most 86400 (browsers cache a preflight for a day at most)",
            ));
        }
        if self.database.pool_max_size == 0 {
            return Err(invalid("database.pool_max_size", "must be at least 1"));
        }
        if self.database.writers == 0 {
            return Err(invalid("database.writers", "must be at least 1"));
        }
        if self.http.body_limit_bytes == 0 {
            return Err(invalid("http.body_limit_bytes", "must be at least 1"));
        }
        for (key, addr) in [
            ("http.bind", &self.http.bind),
            ("metrics.bind", &self.metrics.bind),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(key, "must be IP:PORT, e.g. 127.0.0.1:8080"));
            }
        }
        for (key, limit) in [
            ("limits.reset_mail", self.limits.reset_mail),
            ("limits.otp_mail", self.limits.otp_mail),
            ("limits.transfer_mail", self.limits.transfer_mail),
        ] {
            if limit.max == 0 || limit.window_secs == 0 {
                return Err(invalid(key, "max and window_secs must be at least 1"));
            }
        }
        if self.otp.max_attempts == 0 || self.otp.lifetime_secs == 0 {
            return Err(invalid(
                "otp",
                "lifetime_secs and max_attempts must be at least 1",
            ));
        }
        if *environment == Environment::Production {
            let missing: Vec<String> = [
                ("secrets.otp_key", &self.secrets.otp_key),
                ("secrets.totp_key", &self.secrets.totp_key),
                ("secrets.signing_key", &self.secrets.signing_key),
            ]
            .into_iter()
            .filter(|(_, v)| v.expose_secret().trim().is_empty())
            .map(|(k, _)| k.to_owned())
            .collect();
            if !missing.is_empty() {
                return Err(SettingsError::MissingSecrets(missing));
            }
        }
        if *environment == Environment::Production && self.dev.mailbox == DevSwitch::On {
            return Err(invalid(
                "dev.mailbox",
                "the mailbox page shows every mail with its one-time codes to anyone who can \
                 reach the server; production needs false or \"auto\" (which is off there)",
            ));
        }
        if *environment == Environment::Production && self.dev.reload_templates == DevSwitch::On {
            return Err(invalid(
                "dev.reload_templates",
                "production loads the mail templates once, at start, as checked before the \
                 release; it needs false or \"auto\" (which is off there)",
            ));
        }
        self.validate_mail(environment)?;
        Ok(())
    }

    fn validate_mail(&self, environment: &Environment) -> Result<(), SettingsError> {
        let invalid = |key: String, reason: &str| SettingsError::Invalid {
            key,
            reason: reason.into(),
        };
        let is_lang = |l: &str| l.len() == 2 && l.bytes().all(|b| b.is_ascii_lowercase());
        if !self
            .origins
            .get(&self.mail.default_origin)
            .is_some_and(|o| o.enabled)
        {
            return Err(invalid(
                "mail.default_origin".into(),
                "names no enabled origin",
            ));
        }
        if !is_lang(&self.mail.default_language) {
            return Err(invalid(
                "mail.default_language".into(),
                "must be two lower-case letters",
            ));
        }
        if self.mail.lease_secs < self.mail.send_timeout_secs.saturating_mul(2) {
            return Err(invalid(
                "mail.lease_secs".into(),
                "must be at least twice mail.send_timeout_secs, or another process could take over a mail being sent",
            ));
        }
        if self.mail.concurrency == 0 || self.mail.max_attempts == 0 {
            return Err(invalid(
                "mail".into(),
                "concurrency and max_attempts must be at least 1",
            ));
        }
        for (name, o) in self.origins.iter().filter(|(_, o)| o.enabled) {
            let key = |k: &str| format!("origins.{name}.{k}");
            if name.len() > 256 {
                return Err(invalid(
                    format!("origins.{}", &name[..32]),
                    "names are at most 256 characters",
                ));
            }
            if !is_lang(&o.default_language) || !o.languages.iter().all(|l| is_lang(l)) {
                return Err(invalid(
                    key("languages"),
                    "languages are two lower-case letters",
                ));
            }
            if !o.languages.contains(&o.default_language) {
                return Err(invalid(
                    key("default_language"),
                    "must be one of the origin's languages",
                ));
            }
            if !o.reset_url.contains("{otp}") {
                return Err(invalid(key("reset_url"), "must contain {otp}"));
            }
            if o.from.trim().is_empty() {
                return Err(invalid(key("from"), "must be set"));
            }
            if o.backend().is_none() {
                return Err(invalid(
                    key(o.backend.name()),
                    "the chosen backend needs this table",
                ));
            }
            if let Some(Backend::Smtp(smtp)) = o.backend() {
                // Credentials are all or nothing: a username with an empty password only
                // shows up as 535 answers at the first mail, long after the start.
                let has_password = !smtp.password.expose_secret().is_empty();
                if !smtp.username.is_empty() && !has_password {
                    return Err(invalid(
                        key("smtp.password"),
                        "smtp.username is set but no password; give password or password_file",
                    ));
                }
                if smtp.username.is_empty() && has_password {
                    return Err(invalid(
                        key("smtp.username"),
                        "a password is set but no username; authd authenticates only with both",
                    ));
                }
            }
            if *environment == Environment::Production && o.backend == BackendKind::File {
                return Err(invalid(
                    key("backend"),
                    "the file backend only writes mails to disk; production needs smtp or sendmail \
                     (or enabled = false for an origin you do not use)",
                ));
            }
        }
        Ok(())
    }

    /// The folders of the mailbox page (`dev.mailbox`), by origin name, when the page is on:
    /// `"auto"` is on in development when an enabled origin uses the file backend; `true` is
    /// on (refused in production at load); `false` is off.
    pub fn dev_mailbox(&self, environment: &Environment) -> Option<Vec<(String, PathBuf)>> {
        let folders: Vec<(String, PathBuf)> = self
            .origins
            .iter()
            .filter(|(_, o)| o.enabled)
            .filter_map(|(name, o)| match o.backend() {
                Some(Backend::File(f)) => Some((name.clone(), f.dir.clone())),
                _ => None,
            })
            .collect();
        let on = match self.dev.mailbox {
            DevSwitch::On => true,
            DevSwitch::Off => false,
            DevSwitch::Auto => *environment == Environment::Development && !folders.is_empty(),
        };
        on.then_some(folders)
    }

    /// Whether a changed template is used without a restart (`dev.reload_templates`):
    /// `"auto"` is on in development; `true` is on (refused in production at load).
    pub fn reload_templates(&self, environment: &Environment) -> bool {
        match self.dev.reload_templates {
            DevSwitch::On => true,
            DevSwitch::Off => false,
            DevSwitch::Auto => *environment == Environment::Development,
        }
    }

    /// The enabled origin of that name.
    pub fn origin(&self, name: &str) -> Option<&OriginSettings> {
        self.origins.get(name).filter(|o| o.enabled)
    }

    pub fn database_url(&self) -> DatabaseUrl {
        // Validated in `load`.
        DatabaseUrl::parse(self.database.url.expose_secret())
            .unwrap_or(DatabaseUrl::Sqlite(PathBuf::from(":memory:")))
    }
}

/// The database chosen by `database.url`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            Self::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://./var/authd.db".into());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

#[cfg(test)]
mod tests;
