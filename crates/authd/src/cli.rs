//! The command line. Operator commands print plain text to stdout and a one-line reason to
//! stderr with a non-zero exit code on failure.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::Clock;
use anyhow::{anyhow, bail, Context};
use authd_domain::{Argon2Params, Email, Password, PasswordHash};
use authd_settings::{Loaded, Settings, Sources};
use authd_store::{outbox, refresh_tokens, users, AnyConnection, Connection, StoreError};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "authd",
    version,
    about = "Password reset, two-factor authentication, login and tokens."
)]
pub struct Cli {
    /// A configuration file layered over config/default.toml and config/$AUTHD_ENV.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API and the metrics endpoint (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check the mail templates.
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Work with mails.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Ask the running server on `http.bind` whether it is ready (`GET /readyz`); exits 0 when
    /// it answers 200, 1 otherwise. For container health checks: needs no curl, opens no
    /// database and reads the same configuration as `serve`.
    Healthcheck,
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Render every origin × kind × language with example values; list gaps and failures.
    /// Exits non-zero when a configured language has no template or a template fails.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Print one rendered mail (RFC 5322) with example values.
    Preview {
        #[arg(long, default_value = "default")]
        origin: String,
        /// password_reset, password_changed, ...
        #[arg(long)]
        kind: String,
        /// Two letters; the origin's default when absent.
        #[arg(long)]
        language: Option<String>,
        #[arg(long, default_value = "ann@example.org")]
        to: String,
    },
    /// Put dead mails back in the queue (after fixing what killed them).
    RequeueDead,
    /// Send a test mail through an origin's backend now (not through the outbox) and print
    /// what happened: the SMTP server's final answer, the file written, or the sendmail
    /// program's exit status. Exits non-zero when the mail could not be handed on.
    Test {
        /// The origin whose sender and backend to use.
        #[arg(long)]
        origin: String,
        /// The recipient.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from stdin unless --password-file is given.
    Create(EmailAndPassword),
    /// List accounts.
    List,
    /// Disable an account: it can no longer log in or reset its password.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[arg(long)]
        email: String,
    },
    /// Replace an account's password. The password is read from stdin unless --password-file
    /// is given.
    SetPassword(EmailAndPassword),
    /// Turn two-factor authentication off for an account that lost every second factor and its
    /// recovery codes (after verifying the owner out of band): removes email OTP, TOTP and the
    /// recovery codes. The account logs in with its password alone afterwards.
    ResetTwoFactor {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Args)]
pub struct EmailAndPassword {
    #[arg(long)]
    pub email: String,
    /// Read the password from this file (first line) instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration, then print a summary without secrets.
    Check,
}

impl Cli {
    pub fn load_settings(&self) -> anyhow::Result<Loaded> {
        Ok(Sources {
            file: self.config.clone(),
            ..Sources::default()
        }
        .load()?)
    }
}

fn argon2(settings: &Settings) -> anyhow::Result<Argon2Params> {
    let p = Argon2Params {
        memory_kib: settings.password.argon2_memory_kib,
        iterations: settings.password.argon2_iterations,
        parallelism: settings.password.argon2_parallelism,
    };
    p.validate().context("password settings")?;
    Ok(p)
}

fn read_password(file: Option<&PathBuf>) -> anyhow::Result<Password> {
    let mut raw = String::new();
    match file {
        Some(path) => {
            raw = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut raw)
                .context("cannot read the password from stdin")?;
        }
    }
    let first = raw.lines().next().unwrap_or("");
    Password::parse(first).map_err(|e| anyhow!("{e}"))
}

fn email(raw: &str) -> anyhow::Result<Email> {
    Email::parse(raw).map_err(|e| anyhow!("{e}: {raw:?}"))
}

/// Runs an operator command against the database (the store's connection is synchronous;
/// no server is running).
pub fn run_user(settings: &Settings, cmd: &UserCommand) -> anyhow::Result<String> {
    let store = authd_store::Store::open(&authd_store::StoreOptions::for_command(settings));
    store.migrate().context("cannot prepare the database")?;
    let mut conn = store.conn()?;
    match cmd {
        UserCommand::Create(args) => {
            let email = email(&args.email)?;
            let password = read_password(args.password_file.as_ref())?;
            let hash = PasswordHash::create(&password, &argon2(settings)?)?;
            match users::create(&mut conn, &email, Some(&hash)) {
                Ok(user) => Ok(format!("created user {} <{}>", user.id, user.email)),
                Err(StoreError::Duplicate) => {
                    bail!("a user with the email {} already exists", email.as_str())
                }
                Err(e) => Err(e.into()),
            }
        }
        UserCommand::List => {
            let mut out = format!(
                "{:>8}  {:<40}  {:<8}  {}\n",
                "ID", "EMAIL", "STATUS", "CREATED (UTC)"
            );
            for u in users::list(&mut conn)? {
                out.push_str(&format!(
                    "{:>8}  {:<40}  {:<8}  {}\n",
                    u.id,
                    u.email,
                    if u.disabled { "disabled" } else { "active" },
                    u.created_at.format("%Y-%m-%d %H:%M:%S")
                ));
            }
            Ok(out.trim_end().to_owned())
        }
        UserCommand::Disable { email: raw } | UserCommand::Enable { email: raw } => {
            let disable = matches!(cmd, UserCommand::Disable { .. });
            let email = email(raw)?;
            if !users::set_disabled(&mut conn, &email, disable)? {
                bail!("no user has the email {}", email.as_str());
            }
            Ok(format!(
                "{} {}",
                if disable { "disabled" } else { "enabled" },
                email.as_str()
            ))
        }
        UserCommand::SetPassword(args) => {
            let email = email(&args.email)?;
            let user = users::find_by_email(&mut conn, &email)?
                .ok_or_else(|| anyhow!("no user has the email {}", email.as_str()))?;
            let password = read_password(args.password_file.as_ref())?;
            let hash = PasswordHash::create(&password, &argon2(settings)?)?;
            // Rendered before anything changes: a configuration that cannot render the
            // notice stops the command with the password untouched.
            let notice = password_changed_notice(settings, &mut conn, &user, &email)?;
            let user_id = user.id;
            let now = chrono::Utc::now().timestamp_millis();
            // As a reset does: whoever knew the old password may hold a login, so all of them
            // end, and the owner hears of it; the three commit together.
            let ended = conn.transaction(|c| {
                users::set_password(c, user_id, &hash)?;
                let ended = refresh_tokens::revoke_all_for_user(c, user_id, None, now)?;
                outbox::enqueue(c, &notice.as_new_mail(now))?;
                Ok::<_, StoreError>(ended)
            })?;
            tracing::warn!(
                user_id,
                ended,
                "password replaced by an operator; every login ended"
            );
            Ok(format!(
                "password replaced for {}; {ended} login(s) ended; a \"password changed\" notice is queued",
                email.as_str()
            ))
        }
        UserCommand::ResetTwoFactor { email: raw } => {
            let email = email(raw)?;
            let user = users::find_by_email(&mut conn, &email)?
                .ok_or_else(|| anyhow!("no user has the email {}", email.as_str()))?;
            let removed = authd_store::two_factor::remove_all(&mut conn, user.id)?;
            tracing::warn!(
                user_id = user.id,
                removed,
                "two-factor authentication turned off by an operator"
            );
            Ok(format!(
                "two-factor authentication is off for {} ({removed} rows removed)",
                email.as_str()
            ))
        }
    }
}

/// The "password changed" notice for the outbox, in the origin and language the user last
/// asked a mail in (else the default origin's default language), as the API picks them.
fn password_changed_notice(
    settings: &Settings,
    conn: &mut AnyConnection,
    user: &users::User,
    to: &Email,
) -> anyhow::Result<authd_mail::PreparedMail> {
    let (origin_name, language) = match user
        .last_origin
        .as_deref()
        .filter(|o| settings.origin(o).is_some())
    {
        Some(o) => (o.to_owned(), user.last_language.clone()),
        None => (settings.mail.default_origin.clone(), None),
    };
    let origin = settings
        .origin(&origin_name)
        .ok_or_else(|| anyhow!("mail.default_origin names no enabled origin: {origin_name:?}"))?;
    let catalog = crate::load_catalog(settings)
        .context("cannot load the mail templates for the \"password changed\" notice")?;
    let sealer = authd_mail::Sealer::new(&crate::keys::otp_key_for_command(settings, conn)?);
    let mail = authd_mail::Mail::PasswordChanged(authd_mail::Changed::now(&Clock::system()));
    authd_mail::prepare_mail(
        &catalog,
        &sealer,
        &origin_name,
        origin,
        &mail,
        language.as_deref(),
        to,
    )
    .context("cannot render the \"password changed\" notice; the password is unchanged")
}

pub fn config_summary(loaded: &Loaded) -> String {
    let s = &loaded.settings;
    format!(
        "configuration OK\nenvironment: {}\ndatabase: {}\nhttp.bind: {}\nmetrics: {}\ndev.mailbox: {}\n\
         dev.reload_templates: {}",
        loaded.environment.name(),
        s.database_url().backend_name(),
        s.http.bind,
        if s.metrics.enabled {
            s.metrics.bind.as_str()
        } else {
            "disabled"
        },
        if s.dev_mailbox(&loaded.environment).is_some() {
            "on, at /dev/mail"
        } else {
            "off"
        },
        if s.reload_templates(&loaded.environment) {
            "on"
        } else {
            "off"
        },
    )
}

/// `authd templates check`: one line per origin × kind × language; `Err` lists the problems.
pub fn templates_check(settings: &Settings) -> anyhow::Result<String> {
    use authd_mail::MailKind;
    let catalog = crate::load_catalog(settings)?;
    let mut out = String::new();
    let mut problems = Vec::new();
    for (name, origin) in settings.origins.iter().filter(|(_, o)| o.enabled) {
        for kind in MailKind::ALL {
            for lang in &origin.languages {
                let line = if !catalog.has_exact(name, *kind, lang) {
                    problems.push(format!("{name} {} {lang}: no template", kind.as_str()));
                    "MISSING"
                } else {
                    let to = Email::parse("ann@example.org").map_err(|e| anyhow!("{e}"))?;
                    match authd_mail::render_mail(
                        &catalog,
                        name,
                        origin,
                        &authd_mail::Mail::sample(*kind),
                        Some(lang),
                        &to,
                    ) {
                        Ok(_) => "ok",
                        Err(e) => {
                            problems.push(format!("{name} {} {lang}: {e}", kind.as_str()));
                            "FAILED"
                        }
                    }
                };
                out.push_str(&format!("{line:<8} {name} {} {lang}\n", kind.as_str()));
            }
        }
    }
    if problems.is_empty() {
        Ok(out.trim_end().to_owned())
    } else {
        bail!(
            "{}\n{} problem(s):\n  {}",
            out.trim_end(),
            problems.len(),
            problems.join("\n  ")
        )
    }
}

/// `authd mail preview`: the whole message as it would be queued.
pub fn mail_preview(
    settings: &Settings,
    origin: &str,
    kind: &str,
    language: Option<&str>,
    to: &str,
) -> anyhow::Result<String> {
    let catalog = crate::load_catalog(settings)?;
    let o = settings
        .origin(origin)
        .ok_or_else(|| anyhow!("no enabled origin named {origin:?}"))?;
    let kind = authd_mail::MailKind::parse(kind).ok_or_else(|| {
        let known: Vec<&str> = authd_mail::MailKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        anyhow!(
            "unknown mail kind {kind:?}; known kinds: {}",
            known.join(", ")
        )
    })?;
    let to = email(to)?;
    let (envelope, _) = authd_mail::render_mail(
        &catalog,
        origin,
        o,
        &authd_mail::Mail::sample(kind),
        language,
        &to,
    )?;
    Ok(envelope.message)
}

/// `authd mail requeue-dead`.
pub fn mail_requeue_dead(settings: &Settings) -> anyhow::Result<String> {
    let store = authd_store::Store::open(&authd_store::StoreOptions::for_command(settings));
    store.migrate().context("cannot prepare the database")?;
    let mut conn = store.conn()?;
    let n = authd_store::outbox::requeue_dead(&mut conn, chrono::Utc::now().timestamp_millis())?;
    Ok(format!("requeued {n} dead mail(s)"))
}

/// `authd mail test`: renders the `delivery_test` mail and hands it to the origin's backend at
/// once, bounded by `mail.send_timeout_secs`. On failure the error names the reason
/// (auth, connect, timeout, ...) and the server's answer.
pub fn mail_test(settings: &Settings, origin: &str, to: &str) -> anyhow::Result<String> {
    let Some(o) = settings.origin(origin) else {
        let known: Vec<&str> = settings
            .origins
            .iter()
            .filter(|(_, o)| o.enabled)
            .map(|(n, _)| n.as_str())
            .collect();
        bail!(
            "no enabled origin named {origin:?}; configured: {}",
            known.join(", ")
        );
    };
    let to = email(to)?;
    let catalog = crate::load_catalog(settings)?;
    let envelope = authd_mail::render_delivery_test(&catalog, origin, o, &to)?;
    let backend_settings = o
        .backend()
        .ok_or_else(|| anyhow!("origin {origin:?}: its backend has no settings table"))?;
    let mail = authd_mail::Outgoing {
        id: 0,
        created_at_ms: chrono::Utc::now().timestamp_millis(),
        envelope,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The backend lives and dies inside the runtime: an SMTP pool closes its connections
    // from a task it spawns when dropped.
    let (name, sent) = runtime.block_on(async {
        let backend = authd_mail::backend::build(backend_settings)?;
        let sent =
            authd_mail::send_with_timeout(backend.as_ref(), &mail, settings.mail.send_timeout_secs)
                .await;
        let name = backend.name();
        drop(backend);
        tokio::task::yield_now().await;
        Ok::<_, anyhow::Error>((name, sent))
    })?;
    match sent {
        Ok(delivered) => Ok(format!(
            "origin {origin}: test mail to {} handed to the {name} backend\n{}",
            to.masked(),
            delivered.detail
        )),
        Err(e) => bail!(
            "origin {origin}: the {name} backend failed ({}, {}): {}",
            e.reason.as_str(),
            if e.permanent {
                "permanent: a queued mail would be given up"
            } else {
                "transient: a queued mail would be retried"
            },
            e.message
        ),
    }
}

/// Where `authd healthcheck` connects for `http.bind`: an unspecified address (`0.0.0.0`,
/// `[::]`) listens on loopback too, so the check asks loopback of the same family.
pub fn healthcheck_addr(bind: &str) -> anyhow::Result<SocketAddr> {
    let mut addr: SocketAddr = bind
        .parse()
        .with_context(|| format!("http.bind is not IP:PORT: {bind:?}"))?;
    if addr.port() == 0 {
        bail!(
            "http.bind has port 0 (a port chosen at start-up); a health check needs a fixed port"
        );
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// `authd healthcheck`: one plain HTTP/1.1 `GET /readyz` to the server on `http.bind`, with
/// the whole exchange bounded by the server's own readiness budget plus three seconds. `Ok` is
/// the line to print when the answer is 200; `Err` says what happened instead.
pub fn healthcheck(settings: &Settings) -> anyhow::Result<String> {
    let addr = healthcheck_addr(&settings.http.bind)?;
    let url = format!("http://{addr}/readyz");
    let budget = Duration::from_millis(settings.http.readiness_timeout_ms)
        .saturating_add(Duration::from_secs(3));
    let started = Instant::now();
    let status_line =
        readyz_status_line(addr, budget).with_context(|| format!("not ready: GET {url} failed"))?;
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    let ms = started.elapsed().as_millis();
    if code == "200" {
        Ok(format!("ready: GET {url} answered 200 in {ms} ms"))
    } else {
        bail!("not ready: GET {url} answered {status_line:?} in {ms} ms")
    }
}

/// Sends the request and returns the response's status line (`HTTP/1.1 200 OK`).
fn readyz_status_line(addr: SocketAddr, budget: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + budget;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow!("no answer within {} ms", budget.as_millis()))
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?).context("cannot connect")?;
    stream.set_write_timeout(Some(left()?))?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: authd-healthcheck\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n"
    )
    .context("cannot send the request")?;
    // Only the status line matters; it ends at the first CRLF.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        stream.set_read_timeout(Some(left()?))?;
        let n = stream.read(&mut buf).context("no answer")?;
        if n == 0 {
            bail!("the connection closed before a status line");
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 4096 {
            bail!("no HTTP status line in the first 4 KiB of the answer");
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.split("\r\n").next().unwrap_or("").to_owned();
    if !line.starts_with("HTTP/") {
        bail!("the answer is not HTTP: {line:?}");
    }
    Ok(line)
}
