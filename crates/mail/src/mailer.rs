//! The Mailer actor. It owns the template catalog, the per-origin backends and the delivery
//! loop of this process.
//!
//! - `Render` turns (origin, kind, language, recipient, variables) into a sealed message ready
//!   for the outbox, or a template error (counted in `auth_mail_template_failures_total`).
//! - `Wake` starts a delivery round now (callers send it after committing a mail).
//! - `Drain` stops the loop after the round in flight, for a clean shutdown.
//!
//! A round claims due outbox rows (leased, so other processes skip them), sends them with
//! bounded concurrency, and marks each sent, retry-at (exponential backoff with jitter) or dead.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use authd_domain::{Clock, Email};
use authd_settings::{MailSettings, OriginSettings};
use authd_store::{outbox, Store};
use authd_telemetry::names;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::oneshot;

use crate::backend::{self, Delivered, FailureReason, MailBackend, Outgoing};
use crate::catalog::{Catalog, TemplateError};
use crate::compose::{check_addresses, compose, ComposeError};
use crate::seal::Sealer;
use crate::templates::Templates;
use crate::{Mail, MailKind, Origin};

#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("origin {origin}: {cause}")]
    Origin { origin: String, cause: String },
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

struct OriginRuntime {
    settings: OriginSettings,
    backend: Arc<dyn MailBackend>,
}

struct Shared {
    templates: Templates,
    origins: BTreeMap<String, OriginRuntime>,
    sealer: Sealer,
    store: Store,
    cfg: MailSettings,
    /// Identifies this process's leases in the outbox.
    worker: String,
    /// Origins whose backend is failing right now, so a failing relay is logged once when the
    /// failures begin and once when they end, not once per mail.
    streaks: Mutex<HashMap<String, Streak>>,
    clock: Clock,
}

/// A run of backend failures (auth, connect, timeout, local) of one origin.
#[derive(Debug)]
struct Streak {
    failures: u64,
    since_ms: i64,
}

pub struct Mailer {
    shared: Arc<Shared>,
    running: bool,
    again: bool,
    draining: bool,
    waiting: Vec<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("worker", &self.shared.worker)
            .field("running", &self.running)
            .finish()
    }
}

impl Mailer {
    /// Builds the backends of every enabled origin and checks their addresses; any problem
    /// stops the start.
    pub fn new(
        cfg: &MailSettings,
        origins: &BTreeMap<String, OriginSettings>,
        templates: Templates,
        sealer: Sealer,
        store: Store,
        clock: Clock,
    ) -> Result<Self, MailerError> {
        let mut built = BTreeMap::new();
        for (name, o) in origins.iter().filter(|(_, o)| o.enabled) {
            let err = |cause: String| MailerError::Origin {
                origin: name.clone(),
                cause,
            };
            check_addresses(&o.from, &o.reply_to).map_err(|e| err(e.to_string()))?;
            let settings = o
                .backend()
                .ok_or_else(|| err("its backend has no settings table".into()))?;
            let backend = backend::build(settings).map_err(|e| err(e.to_string()))?;
            built.insert(
                name.clone(),
                OriginRuntime {
                    settings: o.clone(),
                    backend,
                },
            );
        }
        let shared = Shared {
            templates,
            origins: built,
            sealer,
            store,
            cfg: cfg.clone(),
            worker: uuid::Uuid::new_v4().simple().to_string(),
            streaks: Mutex::new(HashMap::new()),
            clock,
        };
        Ok(Self {
            shared: Arc::new(shared),
            running: false,
            again: false,
            draining: false,
            waiting: Vec::new(),
        })
    }

    /// Every mail metric exists from the start, at zero, for each origin and kind, so alerts
    /// can be written before the first failure.
    fn register_metrics(&self) {
        for (origin, rt) in &self.shared.origins {
            let backend = rt.backend.name();
            for reason in FailureReason::ALL {
                metrics::counter!(names::MAIL_BACKEND_FAILURES_TOTAL, "origin" => origin.clone(), "reason" => reason.as_str())
                    .absolute(0);
            }
            for kind in MailKind::ALL {
                let (o, k) = (origin.clone(), kind.as_str());
                metrics::counter!(names::MAIL_SENT_TOTAL, "origin" => o.clone(), "backend" => backend, "kind" => k).absolute(0);
                for permanent in ["true", "false"] {
                    metrics::counter!(names::MAIL_FAILURES_TOTAL, "origin" => o.clone(), "backend" => backend, "kind" => k, "permanent" => permanent)
                        .absolute(0);
                }
                for reason in ["missing", "render"] {
                    metrics::counter!(names::MAIL_TEMPLATE_FAILURES_TOTAL, "origin" => o.clone(), "kind" => k, "reason" => reason)
                        .absolute(0);
                }
            }
        }
        metrics::gauge!(names::MAIL_OUTBOX_PENDING).set(0.0);
        metrics::gauge!(names::MAIL_OUTBOX_DEAD).set(0.0);
    }

    fn start_round(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        let shared = self.shared.clone();
        ctx.spawn(
            async move { deliver_round(&shared).await }
                .into_actor(self)
                .map(|full, act, ctx| {
                    act.running = false;
                    for w in act.waiting.drain(..) {
                        let _ = w.send(());
                    }
                    if (act.again || full) && !act.draining {
                        act.again = false;
                        act.start_round(ctx);
                    }
                }),
        );
    }
}

impl Actor for Mailer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.register_metrics();
        let every = Duration::from_millis(self.shared.cfg.poll_interval_ms.max(10));
        ctx.run_interval(every, |act, ctx| {
            act.start_round(ctx);
            let shared = act.shared.clone();
            ctx.spawn(async move { update_gauges(&shared).await }.into_actor(act));
        });
        self.start_round(ctx);
    }
}

/// Renders a mail for the outbox.
#[derive(Debug, Message)]
#[rtype(result = "Result<PreparedMail, RenderError>")]
pub struct Render {
    /// A configured origin: the Mailer trusts it.
    pub origin: Origin,
    /// The kind and its variables (`product_name` and `email` are added when rendered).
    pub mail: Mail,
    /// The requested language; `None` means the origin's default.
    pub language: Option<String>,
    pub to: Email,
}

/// A rendered, sealed mail: what `store::outbox::enqueue` needs.
#[derive(Debug, Clone)]
pub struct PreparedMail {
    pub origin: String,
    pub kind: MailKind,
    pub backend: &'static str,
    pub recipient_masked: String,
    pub payload: String,
    /// The language actually used.
    pub language: String,
}

impl PreparedMail {
    pub fn as_new_mail(&self, now_ms: i64) -> outbox::NewMail<'_> {
        outbox::NewMail {
            origin: &self.origin,
            kind: self.kind.as_str(),
            backend: self.backend,
            recipient_masked: &self.recipient_masked,
            payload: &self.payload,
            now_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The Mailer has no backend for an `Origin`: it was checked against other settings (a
    /// bug, not a caller's mistake).
    #[error("the Mailer has no backend for this origin")]
    UnknownOrigin,
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
}

/// Renders and composes one mail for an origin: the work shared by the Mailer and the CLI's
/// `mail preview`. Returns the envelope and the language actually used.
pub fn render_mail(
    catalog: &Catalog,
    origin_name: &str,
    origin: &OriginSettings,
    mail: &Mail,
    language: Option<&str>,
    to: &Email,
) -> Result<(crate::Envelope, String), RenderError> {
    let kind = mail.kind();
    let mut vars = match mail.vars() {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    vars.insert("product_name".into(), origin.product_name.clone().into());
    vars.insert("email".into(), to.as_str().into());
    let language = language.unwrap_or(&origin.default_language);
    let parts = catalog.render(origin_name, kind, language, &origin.default_language, &vars).inspect_err(|e| {
        metrics::counter!(names::MAIL_TEMPLATE_FAILURES_TOTAL, "origin" => origin_name.to_owned(), "kind" => kind.as_str(), "reason" => e.reason())
            .increment(1);
        tracing::error!(origin = origin_name, kind = kind.as_str(), language, cause = %e, "mail template failure");
    })?;
    let envelope = compose(
        &origin.from,
        &origin.reply_to,
        to.as_str(),
        kind.as_str(),
        &parts,
    )?;
    Ok((envelope, parts.language))
}

/// The operator's test mail for an origin (`authd mail test`), in the origin's default
/// language.
pub fn render_delivery_test(
    catalog: &Catalog,
    origin_name: &str,
    origin: &OriginSettings,
    to: &Email,
) -> Result<crate::Envelope, RenderError> {
    let vars = serde_json::json!({
        "product_name": origin.product_name,
        "email": to.as_str(),
    });
    let parts = catalog.render_delivery_test(
        origin_name,
        &origin.default_language,
        &origin.default_language,
        &vars,
    )?;
    Ok(compose(
        &origin.from,
        &origin.reply_to,
        to.as_str(),
        crate::catalog::DELIVERY_TEST,
        &parts,
    )?)
}

impl Handler<Render> for Mailer {
    type Result = Result<PreparedMail, RenderError>;

    fn handle(&mut self, msg: Render, _: &mut Self::Context) -> Self::Result {
        // An Origin is checked against the same settings the Mailer was built from, so this
        // finds it; a miss would be a bug, answered as a failure, never as the caller's fault.
        let rt = self
            .shared
            .origins
            .get(msg.origin.as_str())
            .ok_or(RenderError::UnknownOrigin)?;
        prepare_mail(
            &self.shared.templates.current(),
            &self.shared.sealer,
            msg.origin.as_str(),
            &rt.settings,
            &msg.mail,
            msg.language.as_deref(),
            &msg.to,
        )
    }
}

/// Renders, composes and seals one mail for the outbox: what the Mailer answers to [`Render`],
/// for callers that have no Mailer running (the CLI's `user set-password`).
pub fn prepare_mail(
    catalog: &Catalog,
    sealer: &Sealer,
    origin_name: &str,
    origin: &OriginSettings,
    mail: &Mail,
    language: Option<&str>,
    to: &Email,
) -> Result<PreparedMail, RenderError> {
    let (envelope, language) = render_mail(catalog, origin_name, origin, mail, language, to)?;
    Ok(PreparedMail {
        origin: origin_name.to_owned(),
        kind: mail.kind(),
        backend: origin.backend.name(),
        recipient_masked: to.masked(),
        payload: sealer.seal(&envelope),
        language,
    })
}

/// Starts a delivery round now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Wake;

impl Handler<Wake> for Mailer {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.start_round(ctx);
    }
}

/// Stops the delivery loop; resolves when the round in flight has finished.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for Mailer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        self.draining = true;
        if !self.running {
            return Box::pin(async {});
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Backoff before attempt `attempts + 1`: doubling from the initial delay up to the cap, with
/// "equal jitter" (a random point in the upper half) so retries from many mails spread out.
fn backoff(cfg: &MailSettings, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = cfg.backoff_initial_ms.saturating_mul(1u64 << exp);
    let capped = base.min(cfg.backoff_max_secs.saturating_mul(1000)).max(1);
    let half = capped / 2;
    Duration::from_millis(half + rand::thread_rng().gen_range(0..=capped - half))
}

/// One round: claim, send, record. Returns true when the batch was full (more may be due).
async fn deliver_round(shared: &Arc<Shared>) -> bool {
    let now = shared.clock.now_ms();
    let (worker, lease, batch) = (
        shared.worker.clone(),
        i64::try_from(shared.cfg.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        // Only as many as are sent at once: every claimed mail is on the wire right away, so
        // its lease (at least twice the send timeout) cannot run out while it waits its turn.
        i64::try_from(shared.cfg.concurrency).unwrap_or(1),
    );
    let claimed = match shared
        .store
        .run(move |c| outbox::claim(c, &worker, now, lease, batch))
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(cause = %e, "outbox: cannot claim mails; will retry");
            return false;
        }
    };
    let full = claimed.len() as i64 >= batch;
    let mut outcomes: Vec<Outcome> = futures_util::stream::iter(claimed)
        .map(|row| deliver_one(shared, row))
        .buffer_unordered(shared.cfg.concurrency.max(1))
        .collect()
        .await;
    flush(shared, &mut outcomes).await;
    record(shared, outcomes).await;
    full
}

/// Refreshes the outbox gauges (two counts; run on the poll interval, not per round).
async fn update_gauges(shared: &Arc<Shared>) {
    let counts = shared
        .store
        .read(|c| {
            Ok((
                outbox::count_by_status(c, outbox::PENDING)?,
                outbox::count_by_status(c, outbox::DEAD)?,
            ))
        })
        .await;
    if let Ok((pending, dead)) = counts {
        metrics::gauge!(names::MAIL_OUTBOX_PENDING).set(pending as f64);
        metrics::gauge!(names::MAIL_OUTBOX_DEAD).set(dead as f64);
    }
}

/// What happened to one claimed mail.
struct Outcome {
    row: outbox::Claimed,
    backend: &'static str,
    result: Result<Delivered, crate::SendError>,
}

async fn deliver_one(shared: &Arc<Shared>, row: outbox::Claimed) -> Outcome {
    let Some(rt) = shared.origins.get(&row.origin) else {
        let result = Err(crate::SendError::permanent(
            FailureReason::Local,
            "origin is no longer configured",
        ));
        return Outcome {
            row,
            backend: "unknown",
            result,
        };
    };
    let backend = rt.backend.name();
    let opened = row
        .payload
        .as_deref()
        .ok_or_else(|| crate::SendError::permanent(FailureReason::Local, "payload missing"))
        .and_then(|p| {
            shared
                .sealer
                .open(p)
                .map_err(|e| crate::SendError::permanent(FailureReason::Local, e.to_string()))
        });
    let result = match opened {
        Ok(envelope) => {
            let mail = Outgoing {
                id: row.id,
                created_at_ms: row.created_at_ms,
                envelope,
            };
            send_with_timeout(rt.backend.as_ref(), &mail, shared.cfg.send_timeout_secs).await
        }
        Err(e) => Err(e),
    };
    Outcome {
        row,
        backend,
        result,
    }
}

/// One send, bounded by `mail.send_timeout_secs`: a send that hangs counts as a timeout.
pub async fn send_with_timeout(
    backend: &dyn MailBackend,
    mail: &Outgoing,
    timeout_secs: u64,
) -> Result<Delivered, crate::SendError> {
    match tokio::time::timeout(Duration::from_secs(timeout_secs), backend.send(mail)).await {
        Ok(r) => r,
        Err(_) => Err(crate::SendError::transient(
            FailureReason::Timeout,
            format!("send timed out after {timeout_secs} s (mail.send_timeout_secs)"),
        )),
    }
}

/// Makes the round's deliveries durable where a backend needs it (see `MailBackend::flush`),
/// once per origin that delivered something; a failed flush makes them transient failures,
/// so they are retried rather than marked sent.
async fn flush(shared: &Shared, outcomes: &mut [Outcome]) {
    let mut origins: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.row.origin.as_str())
        .collect();
    origins.sort_unstable();
    origins.dedup();
    let mut failed = Vec::new();
    for origin in origins {
        let Some(rt) = shared.origins.get(origin) else {
            continue;
        };
        let timeout = Duration::from_secs(shared.cfg.send_timeout_secs);
        let flushed = match tokio::time::timeout(timeout, rt.backend.flush()).await {
            Ok(r) => r,
            Err(_) => Err(crate::SendError::transient(
                FailureReason::Timeout,
                "flush timed out (mail.send_timeout_secs)",
            )),
        };
        if let Err(e) = flushed {
            failed.push((origin.to_owned(), e));
        }
    }
    for (origin, e) in failed {
        for o in outcomes
            .iter_mut()
            .filter(|o| o.row.origin == origin && o.result.is_ok())
        {
            o.result = Err(e.clone());
        }
    }
}

/// Logs the start and the end of a run of backend failures of an origin, once each.
fn track_streak(
    shared: &Shared,
    origin: &str,
    backend: &str,
    result: &Result<Delivered, crate::SendError>,
    now: i64,
) {
    let Ok(mut streaks) = shared.streaks.lock() else {
        return;
    };
    match result {
        // A permanent local fault (an unreadable queued mail) concerns that mail only.
        Err(e) if e.reason.is_backend_fault() && !e.permanent => match streaks.get_mut(origin) {
            Some(streak) => streak.failures += 1,
            None => {
                tracing::warn!(
                    origin,
                    backend,
                    reason = e.reason.as_str(),
                    cause = %e.message,
                    "mail backend is failing; its mails stay queued and are retried (logged once until it recovers)"
                );
                streaks.insert(
                    origin.to_owned(),
                    Streak {
                        failures: 1,
                        since_ms: now,
                    },
                );
            }
        },
        // The backend answered (a delivery, or a verdict on one mail): it works again.
        _ => {
            if let Some(streak) = streaks.remove(origin) {
                tracing::info!(
                    origin,
                    backend,
                    failures = streak.failures,
                    failing_for_ms = (now - streak.since_ms).max(0),
                    "mail backend recovered"
                );
            }
        }
    }
}

/// What to write for one outcome.
enum Mark {
    Sent,
    Retry { next_at_ms: i64, error: String },
    Dead { error: String },
}

/// Counts and logs each outcome, then records all of a round's results in one transaction
/// (one write instead of one per mail: SQLite has a single writer, and the request path
/// needs it more).
async fn record(shared: &Arc<Shared>, outcomes: Vec<Outcome>) {
    let now = shared.clock.now_ms();
    let max_attempts = i32::try_from(shared.cfg.max_attempts).unwrap_or(i32::MAX);
    let mut marks = Vec::with_capacity(outcomes.len());
    for Outcome {
        row,
        backend,
        result,
    } in outcomes
    {
        let id = row.id;
        let kind = MailKind::parse(&row.kind).map_or("unknown", MailKind::as_str);
        let origin = row.origin.clone();
        track_streak(shared, &origin, backend, &result, now);
        let mark = match result {
            Ok(_) => {
                metrics::counter!(names::MAIL_SENT_TOTAL, "origin" => origin, "backend" => backend, "kind" => kind)
                    .increment(1);
                metrics::histogram!(names::MAIL_DELIVERY_SECONDS)
                    .record((now - row.created_at_ms).max(0) as f64 / 1000.0);
                tracing::info!(outbox_id = id, kind, to = %row.recipient_masked, attempts = row.attempts, "mail delivered");
                Mark::Sent
            }
            Err(e) => {
                let permanent = if e.permanent { "true" } else { "false" };
                metrics::counter!(names::MAIL_BACKEND_FAILURES_TOTAL, "origin" => origin.clone(), "reason" => e.reason.as_str())
                    .increment(1);
                metrics::counter!(names::MAIL_FAILURES_TOTAL, "origin" => origin, "backend" => backend, "kind" => kind, "permanent" => permanent)
                    .increment(1);
                if e.permanent || row.attempts >= max_attempts {
                    tracing::error!(outbox_id = id, kind, to = %row.recipient_masked, attempts = row.attempts, cause = %e.message, "mail is dead: giving up");
                    Mark::Dead { error: e.message }
                } else {
                    let wait = backoff(&shared.cfg, row.attempts);
                    if e.reason.is_backend_fault() {
                        // Logged once per streak by track_streak.
                        tracing::debug!(outbox_id = id, kind, to = %row.recipient_masked, attempts = row.attempts, reason = e.reason.as_str(), retry_in_ms = wait.as_millis() as u64, cause = %e.message, "mail delivery failed; will retry");
                    } else {
                        tracing::warn!(outbox_id = id, kind, to = %row.recipient_masked, attempts = row.attempts, reason = e.reason.as_str(), retry_in_ms = wait.as_millis() as u64, cause = %e.message, "mail delivery failed; will retry");
                    }
                    let next_at_ms = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                    Mark::Retry {
                        next_at_ms,
                        error: e.message,
                    }
                }
            }
        };
        marks.push((id, mark));
    }
    let worker = shared.worker.clone();
    let recorded = shared
        .store
        // All marks or none: one job of the store is one savepoint of the writer's batch.
        .run(move |c| {
            // The delivered ones, the common case, in one statement; failures one by one.
            let sent: Vec<i64> = marks
                .iter()
                .filter(|(_, mark)| matches!(mark, Mark::Sent))
                .map(|(id, _)| *id)
                .collect();
            let mut lost = outbox::mark_sent(c, &sent, &worker, now)?;
            for (id, mark) in &marks {
                let mine = match mark {
                    Mark::Sent => continue,
                    Mark::Retry { next_at_ms, error } => {
                        outbox::mark_retry(c, *id, &worker, *next_at_ms, error)?
                    }
                    Mark::Dead { error } => outbox::mark_dead(c, *id, &worker, error)?,
                };
                if !mine {
                    lost.push(*id);
                }
            }
            Ok(lost)
        })
        .await;
    match recorded {
        Ok(lost) => {
            for id in lost {
                tracing::warn!(
                    outbox_id = id,
                    "outbox: lease was taken over before the result was recorded"
                );
            }
        }
        Err(e) => {
            tracing::error!(cause = %e, "outbox: cannot record delivery results; the leases will expire and the mails be retried")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MailSettings {
        MailSettings {
            default_origin: "default".into(),
            default_language: "en".into(),
            templates_dir: "t".into(),
            forbidden_domains: vec![],
            allowed_domains: vec![],
            poll_interval_ms: 1000,
            concurrency: 1,
            max_attempts: 8,
            backoff_initial_ms: 2000,
            backoff_max_secs: 900,
            lease_secs: 60,
            send_timeout_secs: 5,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        let c = cfg();
        for _ in 0..100 {
            let first = backoff(&c, 1).as_millis();
            assert!((1000..=2000).contains(&first), "{first}");
            let third = backoff(&c, 3).as_millis();
            assert!((4000..=8000).contains(&third), "{third}");
            let late = backoff(&c, 30).as_millis();
            assert!((450_000..=900_000).contains(&late), "{late}");
        }
    }
}
