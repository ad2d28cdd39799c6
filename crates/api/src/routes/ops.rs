//! Health and readiness for load balancers and orchestrators.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::ErrorCode;
use crate::{json_ok, AppState};

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` for liveness, `ready` for readiness.
    #[schema(example = "ok")]
    pub status: &'static str,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(super::resource("/readyz", "GET").route(web::get().to(readyz)));
}

/// Liveness: 200 while the process serves requests. Touches nothing else, so it stays fast
/// under load.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The process is serving", body = Status)))]
pub async fn healthz() -> HttpResponse {
    json_ok(&Status { status: "ok" })
}

/// Readiness: 200 when the database answers and no migration is pending; 503 otherwise
/// (`DATABASE_UNAVAILABLE` or `MIGRATIONS_PENDING`).
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve traffic", body = Status),
        (status = 503, description = "`DATABASE_UNAVAILABLE` or `MIGRATIONS_PENDING`", body = ErrorBody),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let check = tokio_timeout(state.readiness_timeout, state.store.ready()).await;
    match check {
        Some(Ok(true)) => Ok(json_ok(&Status { status: "ready" })),
        Some(Ok(false)) => Err(ApiError::from(ErrorCode::MigrationsPending)),
        Some(Err(e)) => {
            tracing::warn!(cause = %crate::error::error_chain(&e), "readiness check failed");
            Err(ApiError::from(ErrorCode::DatabaseUnavailable))
        }
        None => {
            tracing::warn!("readiness check timed out");
            Err(ApiError::from(ErrorCode::DatabaseUnavailable))
        }
    }
}

async fn tokio_timeout<T>(
    d: std::time::Duration,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    actix_web::rt::time::timeout(d, f).await.ok()
}
