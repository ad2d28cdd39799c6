#![doc = include_str!("../README.md")]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use authd_api::{ApiError, AppState, BodyLimit};
pub use authd_domain::Clock;
use authd_settings::{Loaded, Settings};
use authd_store::{Store, StoreOptions};
use metrics_exporter_prometheus::PrometheusHandle;

pub mod cli;
pub mod entry;
pub mod keys;

/// A built, bound, not yet running authd: the public API server and, when enabled, the
/// metrics server.
pub struct Application {
    mailer: actix::Addr<authd_mail::Mailer>,
    port: u16,
    metrics_port: Option<u16>,
    server: Server,
    metrics_server: Option<Server>,
}

/// Opens the store and applies migrations when the settings ask for it.
pub async fn open_store(settings: &Settings, migrate: bool) -> anyhow::Result<Store> {
    let store = Store::open(&StoreOptions::from_settings(settings));
    if migrate {
        let s = store.clone();
        let applied = tokio::task::spawn_blocking(move || s.migrate())
            .await?
            .with_context(|| {
                format!(
                    "cannot prepare the {} database",
                    settings.database_url().backend_name()
                )
            })?;
        if !applied.is_empty() {
            tracing::info!(count = applied.len(), "applied database migrations");
        }
    }
    Ok(store)
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("metrics_port", &self.metrics_port)
            .finish()
    }
}

impl Application {
    /// Binds both listeners and prepares the servers. Must be called inside an actix system.
    pub async fn build(loaded: Loaded) -> anyhow::Result<Self> {
        Self::build_with_clock(loaded, Clock::system()).await
    }

    /// [`Application::build`] with the clock every instant is read from: the system clock in
    /// the service, an adjustable one in tests that cross windows and expiries without
    /// sleeping.
    pub async fn build_with_clock(loaded: Loaded, clock: Clock) -> anyhow::Result<Self> {
        let environment = loaded.environment;
        let settings = Arc::new(loaded.settings);
        let store = open_store(&settings, settings.database.migrate_on_start).await?;
        let prometheus = authd_telemetry::prometheus().map_err(anyhow::Error::msg)?;

        let keys = keys::Keys::resolve(&settings, &store).await?;
        spawn_housekeeping(&settings, store.clone(), clock.clone());
        let templates = templates(&settings, &environment)?;
        let actors = start_actors(&settings, &store, &keys, &clock, templates.clone())?;
        let mailer = actors.mailer.clone();
        let state = web::Data::new(AppState {
            store: store.clone(),
            settings: settings.clone(),
            environment: environment.clone(),
            readiness_timeout: Duration::from_millis(settings.http.readiness_timeout_ms),
            limiter: actors.limiter,
            gate: actors.gate,
            otp: actors.otp,
            mailer: actors.mailer,
            forbidden: authd_mail::ForbiddenDomains::new(
                &settings.mail.forbidden_domains,
                &settings.mail.allowed_domains,
            ),
            hasher: authd_api::Hasher::new(
                argon2_params(&settings)?,
                settings.password.hashing_concurrency,
            )?,
            trusted_proxies: authd_api::client_ip::TrustedProxies::parse(
                &settings.http.trusted_proxies,
                settings.http.client_ip_header,
            ),
            two_factor: authd_api::services::two_factor::TwoFactorKeys::new(&keys.totp, &keys.otp),
            clock,
            signer: std::sync::Arc::new(
                authd_domain::tokens::TokenSigner::new(
                    &settings.tokens.issuer,
                    &keys.signing_pem,
                    &keys.retired_pems,
                )
                .context("configuration: secrets.signing_key")?,
            ),
        });
        let limit = web::Data::new(BodyLimit(settings.http.body_limit_bytes));
        let dev_mail = dev_mailbox(&settings, &environment, templates)?;
        let listener = TcpListener::bind(&settings.http.bind)
            .with_context(|| format!("cannot listen on http.bind = {}", settings.http.bind))?;
        let port = listener.local_addr()?.port();

        let cors = settings.http.cors.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(limit.clone())
                .app_data(web::QueryConfig::default().error_handler(|err, _| {
                    ApiError::bad_request(format!("query string is invalid: {err}")).into()
                }))
                .app_data(web::PathConfig::default().error_handler(|err, _| {
                    ApiError::bad_request(format!("path is invalid: {err}")).into()
                }))
                // Inside `observe`, so preflights are counted and logged like any request.
                .wrap(Condition::new(
                    !cors.allowed_origins.is_empty(),
                    authd_api::browser::cors(&cors),
                ))
                .wrap(from_fn(authd_api::browser::cors_refusals))
                .wrap(from_fn(authd_api::middleware::observe))
                .configure(authd_api::configure)
                .configure(|cfg| {
                    if let Some(dev) = &dev_mail {
                        authd_api::routes::dev_mail::configure(cfg, dev.clone());
                    }
                })
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::not_found())
                }))
        })
        .shutdown_timeout(settings.http.shutdown_timeout_secs)
        .keep_alive(Duration::from_secs(settings.http.keep_alive_secs))
        .client_request_timeout(Duration::from_millis(
            settings.http.client_request_timeout_ms,
        ));
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        let server = server.listen(listener)?.run();

        let (metrics_port, metrics_server) = if settings.metrics.enabled {
            let listener = TcpListener::bind(&settings.metrics.bind).with_context(|| {
                format!("cannot listen on metrics.bind = {}", settings.metrics.bind)
            })?;
            let port = listener.local_addr()?.port();
            let data = web::Data::new(MetricsState { prometheus, store });
            let srv = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .wrap(from_fn(authd_api::middleware::observe))
                    .service(web::resource("/metrics").route(web::get().to(metrics)))
                    .default_service(web::to(|| async {
                        Err::<HttpResponse, _>(ApiError::not_found())
                    }))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)?
            .run();
            (Some(port), Some(srv))
        } else {
            (None, None)
        };

        Ok(Self {
            mailer,
            port,
            metrics_port,
            server,
            metrics_server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Serves until SIGTERM or SIGINT, then stops accepting and lets in-flight requests finish
    /// (up to `http.shutdown_timeout_secs`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics_handle = self.metrics_server.as_ref().map(Server::handle);
        if let Some(m) = self.metrics_server {
            actix_web::rt::spawn(m);
        }
        let result = self.server.await;
        // Requests are finished; let the delivery round in flight record its results so no
        // mail is sent twice after a restart.
        let _ = self.mailer.send(authd_mail::Drain).await;
        if let Some(h) = metrics_handle {
            h.stop(true).await;
        }
        result
    }
}

/// The argon2 parameters from the settings, refused when weaker than OWASP's minimum.
pub fn argon2_params(settings: &Settings) -> anyhow::Result<authd_domain::Argon2Params> {
    let p = authd_domain::Argon2Params {
        memory_kib: settings.password.argon2_memory_kib,
        iterations: settings.password.argon2_iterations,
        parallelism: settings.password.argon2_parallelism,
    };
    p.validate().context("password settings")?;
    Ok(p)
}

/// The mail template catalog, as `serve`, `templates check` and `mail preview` load it.
pub fn load_catalog(settings: &Settings) -> anyhow::Result<authd_mail::Catalog> {
    Ok(authd_mail::Catalog::load(
        &settings.mail.templates_dir,
        &settings.mail.default_language,
    )?)
}

/// The mail templates in use; with `dev.reload_templates` on, watched and reloaded when a
/// file under `mail.templates_dir` changes.
fn templates(
    settings: &Settings,
    environment: &authd_settings::Environment,
) -> anyhow::Result<authd_mail::Templates> {
    let templates = authd_mail::Templates::new(load_catalog(settings)?);
    if settings.reload_templates(environment) {
        let origins = settings
            .origins
            .iter()
            .filter(|(_, o)| o.enabled)
            .map(|(name, _)| name.clone())
            .collect();
        let watching = authd_mail::watch_templates(
            templates.clone(),
            settings.mail.templates_dir.clone(),
            settings.mail.default_language.clone(),
            origins,
        );
        let dir = settings.mail.templates_dir.display();
        match watching {
            Ok(()) => {
                tracing::info!(%dir, "mail templates reload on change (dev.reload_templates)")
            }
            // Asked for by name: a start without it would hide that edits are not picked up.
            Err(e) if settings.dev.reload_templates == authd_settings::DevSwitch::On => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot watch mail.templates_dir = {dir} for dev.reload_templates = true"
                )));
            }
            // "auto" is a convenience: serve without it, and say so.
            Err(e) => {
                tracing::warn!(%dir, cause = %e, "mail templates will not reload on change: the folder cannot be watched (dev.reload_templates = \"auto\")")
            }
        }
    }
    Ok(templates)
}

/// The development mailbox at `/dev/mail`, when `dev.mailbox` turns it on for this
/// environment (see `Settings::dev_mailbox`).
fn dev_mailbox(
    settings: &Settings,
    environment: &authd_settings::Environment,
    templates: authd_mail::Templates,
) -> anyhow::Result<Option<web::Data<authd_api::routes::dev_mail::DevMail>>> {
    let Some(folders) = settings.dev_mailbox(environment) else {
        return Ok(None);
    };
    let dev = authd_api::routes::dev_mail::DevMail::new(folders, Some(templates))
        .context("the development mailbox's templates")?;
    let folders: Vec<String> = dev
        .folders()
        .iter()
        .map(|(origin, dir)| format!("{origin}: {}", dir.display()))
        .collect();
    tracing::info!(
        path = "/dev/mail",
        folders = %folders.join(", "),
        "development mailbox on (dev.mailbox); it shows every mail with its codes"
    );
    Ok(Some(web::Data::new(dev)))
}

/// Sweeps expired rows every `database.housekeeping_interval_secs` on this arbiter.
fn spawn_housekeeping(settings: &Settings, store: Store, clock: Clock) {
    let every = Duration::from_secs(settings.database.housekeeping_interval_secs.max(1));
    let longest_window = Duration::from_secs(
        settings
            .limits
            .reset_mail
            .window_secs
            .max(settings.limits.otp_mail.window_secs)
            .max(settings.limits.transfer_mail.window_secs),
    );
    let keep_sent =
        Duration::from_secs(settings.database.keep_sent_mail_days.saturating_mul(86_400));
    actix_web::rt::spawn(async move {
        let mut ticks = actix_web::rt::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = clock.now_ms();
            let (w, k) = (ms(longest_window), ms(keep_sent));
            match store
                .run(move |c| authd_store::housekeeping::sweep(c, now, w, k))
                .await
            {
                Ok(swept) => tracing::debug!(?swept, "housekeeping"),
                Err(e) => tracing::warn!(cause = %e, "housekeeping failed; will retry"),
            }
        }
    });
}

/// Counts the live replicas through heartbeats in the database and tells the RateLimiter,
/// which shares per-IP budgets out among them.
fn spawn_heartbeat(
    settings: &Settings,
    store: Store,
    limiter: actix::Addr<authd_ratelimit::RateLimiter>,
    clock: Clock,
) {
    let every = Duration::from_secs(settings.limits.replica_heartbeat_secs.max(1));
    let id = uuid::Uuid::new_v4().simple().to_string();
    actix_web::rt::spawn(async move {
        let mut ticks = actix_web::rt::time::interval(every);
        loop {
            ticks.tick().await;
            let now = clock.now_ms();
            let since = now - 3 * ms(every);
            let id = id.clone();
            let live = store
                .run(move |c| {
                    authd_store::replicas::heartbeat(c, &id, now)?;
                    authd_store::replicas::remove(c, "", now - 10 * ms(every))?;
                    authd_store::replicas::count_live(c, since)
                })
                .await;
            match live {
                Ok(n) => {
                    limiter.do_send(authd_ratelimit::SetReplicas(u32::try_from(n).unwrap_or(1)))
                }
                Err(e) => tracing::warn!(cause = %e, "replica heartbeat failed; will retry"),
            }
        }
    });
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

struct Actors {
    limiter: actix::Addr<authd_ratelimit::RateLimiter>,
    gate: authd_ratelimit::Gate,
    otp: actix::Addr<authd_otp::OtpIssuer>,
    mailer: actix::Addr<authd_mail::Mailer>,
}

/// Starts the three actors on the current arbiter.
fn start_actors(
    settings: &Settings,
    store: &Store,
    keys: &keys::Keys,
    clock: &Clock,
    templates: authd_mail::Templates,
) -> anyhow::Result<Actors> {
    use actix::Actor;
    let mailer = authd_mail::Mailer::new(
        &settings.mail,
        &settings.origins,
        templates,
        authd_mail::Sealer::new(&keys.otp),
        store.clone(),
        clock.clone(),
    )?
    .start();
    let limits = &settings.limits;
    let window = |w: authd_settings::WindowLimit| authd_ratelimit::Policy {
        max: w.max,
        window: Duration::from_secs(w.window_secs),
    };
    let windows = authd_ratelimit::WindowPolicies {
        reset_mail: window(limits.reset_mail),
        otp_mail: window(limits.otp_mail),
        transfer_mail: window(limits.transfer_mail),
    };
    let backoff = |b: authd_settings::BackoffSettings| authd_ratelimit::BackoffPolicy {
        free_failures: b.free_failures,
        initial: Duration::from_secs(b.initial_wait_secs),
        max: Duration::from_secs(b.max_wait_secs),
    };
    let c = limits.account_ceiling;
    let backoffs = authd_ratelimit::BackoffPolicies {
        password: backoff(limits.password_backoff),
        totp: backoff(limits.totp_backoff),
        recovery_code: backoff(limits.recovery_code_backoff),
        emailed_code: backoff(limits.emailed_code_backoff),
        account_ceiling: authd_ratelimit::BackoffPolicy {
            free_failures: c.max_failures,
            initial: Duration::from_secs(c.initial_wait_secs),
            max: Duration::from_secs(c.max_wait_secs),
        },
    };
    let bucket = |b: authd_settings::IpBudget| authd_ratelimit::BucketPolicy {
        capacity: f64::from(b.capacity),
        per_second: f64::from(b.refill_per_minute) / 60.0,
    };
    let ip = authd_ratelimit::IpBudgets::new(
        authd_ratelimit::BucketPolicies {
            login: bucket(limits.ip_login),
            reset: bucket(limits.ip_reset),
        },
        limits.denied_cache_size,
    );
    let limiter = authd_ratelimit::RateLimiter::new(
        store.clone(),
        &keys.otp,
        windows,
        backoffs,
        ip,
        limits.denied_cache_size,
        clock.clone(),
    );
    let gate = limiter.gate();
    let limiter = limiter.start();
    spawn_heartbeat(settings, store.clone(), limiter.clone(), clock.clone());
    let otp = authd_otp::OtpIssuer::new(
        store.clone(),
        &keys.otp,
        Duration::from_secs(settings.otp.lifetime_secs),
        settings.otp.max_attempts,
        mailer.clone(),
        clock.clone(),
    )
    .start();
    Ok(Actors {
        limiter,
        gate,
        otp,
        mailer,
    })
}

#[derive(Debug)]
struct MetricsState {
    prometheus: PrometheusHandle,
    store: Store,
}

async fn metrics(data: web::Data<MetricsState>) -> HttpResponse {
    let pool = data.store.pool_state();
    metrics::gauge!(authd_telemetry::names::DB_POOL_CONNECTIONS, "state" => "idle")
        .set(f64::from(pool.idle));
    metrics::gauge!(authd_telemetry::names::DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(f64::from(pool.connections - pool.idle));
    metrics::gauge!(authd_telemetry::names::DB_POOL_MAX_CONNECTIONS).set(f64::from(pool.max));
    authd_telemetry::collect_process_metrics();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(data.prometheus.render())
}
