//! The HTTP API (axum), on loopback by default:
//!
//! - `GET /api/jobs?plan=&status=&limit=`, `GET /api/jobs/{id}`
//! - `GET /api/status` — running, uptime, active jobs, statistics, per plan last run / next run /
//!   last success, firing alerts
//! - `POST /api/plans/{name}/run?kind=full|incremental` — needs `Authorization: Bearer TOKEN`
//!   (`[api] token_env` / `token_file`); refused when no token is configured
//! - `POST /api/jobs/{id}/cancel` — the same token; cancels a running or queued job of this daemon
//! - `GET /`, `GET /jobs/{id}`, `/assets/*` — the dashboard ([`crate::dashboard`])
//!
//! Mutations (the two POSTs) are protected against cross-site requests: they need the bearer
//! header (which a cross-site form cannot send), an `Origin` header, when present, must name
//! the `Host` the request was sent to, and the content types a form or a simple `fetch` can send
//! without a preflight (`application/x-www-form-urlencoded`, `multipart/form-data`,
//! `text/plain`) are refused.
//! - `POST /api/shutdown` — needs the token; graceful shutdown, the same path as SIGTERM
//!   (`packrat daemon stop`)
//! - `GET /metrics` (Prometheus text format), `GET /healthz`
//!
//! The address it listens on is written to `<state_dir>/packratd.addr` for `packrat status`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use backup_core::config::Secret;
use backup_core::state::JobFilter;
use backup_core::{BackupKind, JobStatus, Trigger};
use chrono::Utc;
use packrat_app::api::{
    self, CancelAccepted, ErrorResponse, JobsQuery, PlanStatus, RunAccepted, RunQuery, Statistics, StatusResponse,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::daemon::{CancelError, Daemon, StartError};
use packrat_app::exit::ExitError;

use crate::metrics;

pub use packrat_app::api::ADDR_FILE;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) d: Arc<Daemon>,
    pub(crate) token: Option<Arc<Secret>>,
}

/// The running server.
#[derive(Debug)]
pub struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    addr_file: PathBuf,
}

impl Server {
    /// Stops accepting requests, finishes the ones in flight, removes the address file.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
        let _ = std::fs::remove_file(&self.addr_file);
    }
}

/// Binds the API and serves it in the background.
pub async fn serve(d: Arc<Daemon>) -> Result<Server, ExitError> {
    let api = &d.cfg.api;
    let token = api.token()?.map(Arc::new);
    if !api.bind.ip().is_loopback() && token.is_none() {
        return Err(ExitError::usage(format!(
            "refusing to serve the API on {}, which is not a loopback address, without a token; set [api] token_env \
             or token_file, or bind to 127.0.0.1",
            api.bind
        )));
    }
    let listener = tokio::net::TcpListener::bind(api.bind).await.map_err(|e| {
        ExitError::failed(format!(
            "cannot listen on {} for the API: {e}; change [api] bind",
            api.bind
        ))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| ExitError::failed(format!("cannot read the API's address: {e}")))?;
    // The address a local client connects to.
    let connect = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), local.port()),
        _ => local,
    };
    let addr_file = d.cfg.state_dir.join(ADDR_FILE);
    std::fs::write(&addr_file, format!("{connect}\n"))
        .map_err(|e| ExitError::failed(format!("cannot write {}: {e}", addr_file.display())))?;
    if token.is_none() {
        info!("no API token configured: POST /api/plans/{{name}}/run is refused; set [api] token_env or token_file");
    }
    let app = router(AppState { d, token });
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = r {
            error!("the API server stopped: {e}");
        }
    });
    info!(addr = %local, "API listening");
    Ok(Server { stop, task, addr_file })
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/status", get(status))
        .route("/api/plans/{name}/run", post(run_plan))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/shutdown", post(shutdown))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .merge(crate::dashboard::routes())
        .with_state(state)
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(ErrorResponse { error: message.into() })).into_response()
}

fn internal(e: backup_core::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.chain())
}

async fn jobs(State(s): State<AppState>, Query(q): Query<JobsQuery>) -> Response {
    let status = match q.status.as_deref().map(str::parse::<JobStatus>) {
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        Some(Ok(st)) => Some(st),
        None => None,
    };
    match s.d.state.jobs(&JobFilter {
        plan: q.plan,
        status,
        limit: Some(q.limit.unwrap_or(50)),
    }) {
        Ok(j) => Json(j).into_response(),
        Err(e) => internal(e),
    }
}

async fn job(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, format!("`{id}` is not a job id"));
    };
    match s.d.state.job(id) {
        Ok(Some(j)) => Json(j).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => internal(e),
    }
}

/// The status document of `GET /api/status`.
pub fn status_doc(d: &Daemon) -> backup_core::Result<StatusResponse> {
    let st = &d.state;
    let stats = st.stats()?;
    let running = d.running();
    let last: BTreeMap<String, backup_core::Job> = st
        .last_job_per_plan()?
        .into_iter()
        .map(|j| (j.plan.clone(), j))
        .collect();
    let mut plans = BTreeMap::new();
    let drills = packrat_app::drill::DrillStore::open(d.state.clone())?;
    for (name, pc) in &d.cfg.plans {
        let sched = st.schedule_state(name)?;
        let (last_verify, last_drill) = drills.latest(name)?;
        let last_success = st.last_success(name)?;
        plans.insert(
            name.clone(),
            PlanStatus {
                enabled: pc.enabled,
                schedule: d.schedules.get(name).map(|s| s.to_string()),
                runnable: d.plans.contains_key(name),
                problem: d.broken.get(name).cloned(),
                running: running
                    .get(name)
                    .map(|r| api::RunningJob::new(r.job, r.kind, r.trigger, r.since)),
                last_run: last.get(name).cloned(),
                next_run: d.next_due(name),
                last_fired_slot: sched.last_fired_slot,
                last_success: last_success.as_ref().and_then(|j| j.finished_at).or(sched.last_success),
                last_success_job: last_success.as_ref().map(|j| j.id),
                consecutive_failures: st.consecutive_failures(name)?,
                last_verify,
                last_drill,
            },
        );
    }
    let now = Utc::now();
    Ok(StatusResponse {
        source: "daemon".into(),
        running: true,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: d.started_at,
        uptime_seconds: (now - d.started_at).num_seconds(),
        stopping: d.is_stopping(),
        statistics: Statistics {
            total_backups: stats.total,
            success_count: stats.success,
            failure_count: stats.failure,
            success_rate: stats.success_rate,
            total_bytes: stats.total_bytes,
            total_size_mb: stats.total_bytes as f64 / 1e6,
            active_jobs: stats.active,
        },
        active_jobs: st.active_jobs()?,
        plans,
        alerts: d.alert_store().list(false)?,
        sinks: packrat_app::api::sink_activity(&d.cfg, &st.jobs(&backup_core::state::JobFilter::default())?),
        collections: st.collection_health(None)?,
    })
}

async fn status(State(s): State<AppState>) -> Response {
    match status_doc(&s.d) {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The refusal (`Some`) of a mutation that could come from another site, or lacks the right token; `what`
/// names the action in the log.
fn guard(s: &AppState, headers: &HeaderMap, what: &str) -> Option<Response> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if matches!(
            essence,
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        ) {
            warn!("{what} refused: content type {essence} (a cross-site form?)");
            return Some(error(
                StatusCode::FORBIDDEN,
                format!("refusing a {essence} request: send no body (or JSON) with the bearer token"),
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h.trim_end_matches('/'));
        if host.is_empty() || origin_host != Some(host) {
            warn!(origin, host, "{what} refused: cross-site request");
            return Some(error(
                StatusCode::FORBIDDEN,
                format!("refusing a cross-site request: Origin {origin} is not this server ({host})"),
            ));
        }
    }
    let Some(token) = &s.token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "this needs an API token; set [api] token_env or token_file and restart packratd",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same(g.as_bytes(), token.expose().as_bytes()) => None,
        Some(_) => {
            warn!("{what} refused: wrong token");
            Some(error(StatusCode::UNAUTHORIZED, "wrong token"))
        }
        None => Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(ErrorResponse {
                    error: "send the token as `Authorization: Bearer TOKEN`".into(),
                }),
            )
                .into_response(),
        ),
    }
}

/// Records an accepted API mutation in the audit trail, with the client's address.
fn audit(s: &AppState, peer: SocketAddr, plan: Option<&str>, request: &str, detail: &str) {
    s.d.state.audit_or_warn(
        &backup_core::state::Actor::api_client(peer),
        backup_core::state::AuditAction::Api,
        plan,
        request,
        detail,
    );
}

async fn run_plan(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = guard(&s, &headers, &format!("API run of plan {name}")) {
        return r;
    }
    let kind = match q.kind.as_deref().unwrap_or("full").parse::<BackupKind>() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let request = format!("POST /api/plans/{name}/run");
    let started = s.d.start_job(&name, kind, Trigger::Api);
    let outcome = match &started {
        Ok(job) => format!("{kind} backup queued as job {job}"),
        Err(StartError::Unknown(m) | StartError::Busy(m)) => format!("refused: {m}"),
        Err(StartError::ShuttingDown) => "refused: packratd is shutting down".to_string(),
    };
    audit(&s, peer, Some(&name), &request, &outcome);
    match started {
        Ok(job) => {
            info!(plan = %name, %kind, job, "run requested over the API");
            (
                StatusCode::ACCEPTED,
                Json(RunAccepted {
                    plan: name,
                    kind,
                    accepted: true,
                    job,
                }),
            )
                .into_response()
        }
        Err(StartError::Unknown(m)) => error(StatusCode::NOT_FOUND, m),
        Err(StartError::Busy(m)) => error(StatusCode::CONFLICT, m),
        Err(StartError::ShuttingDown) => error(StatusCode::SERVICE_UNAVAILABLE, "packratd is shutting down"),
    }
}

async fn cancel_job(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = guard(&s, &headers, &format!("API cancel of job {id}")) {
        return r;
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, format!("`{id}` is not a job id"));
    };
    let cancelled = s.d.cancel_job(id, &format!("cancelled by API client {peer}"));
    let outcome = match &cancelled {
        Ok(job) => format!("cancelling job {id} of plan {} ({})", job.plan, job.status.as_str()),
        Err(CancelError::Unknown(m) | CancelError::Conflict(m)) => format!("refused: {m}"),
    };
    audit(
        &s,
        peer,
        cancelled.as_ref().ok().map(|j| j.plan.as_str()),
        &format!("POST /api/jobs/{id}/cancel"),
        &outcome,
    );
    match cancelled {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(CancelAccepted {
                job: id,
                cancelling: true,
            }),
        )
            .into_response(),
        Err(CancelError::Unknown(m)) => error(StatusCode::NOT_FOUND, m),
        Err(CancelError::Conflict(m)) => error(StatusCode::CONFLICT, m),
    }
}

async fn prometheus(State(s): State<AppState>) -> Response {
    match metrics::render(&s.d) {
        Ok(text) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    if s.d.is_stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response();
    }
    match s.d.state.stats() {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("state store: {}\n", e.chain())).into_response(),
    }
}

/// `POST /api/shutdown`: graceful shutdown (the same path as SIGTERM); answers 202 with the
/// jobs running or waiting at that moment.
async fn shutdown(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = guard(&s, &headers, "shutting packratd down") {
        return r;
    }
    let who = format!("API client {peer}");
    info!(by = %who, "shutdown requested");
    let jobs: Vec<serde_json::Value> =
        s.d.running()
            .iter()
            .map(|(plan, r)| serde_json::json!({"plan": plan, "job": r.job}))
            .collect();
    s.d.request_shutdown(&who);
    audit(
        &s,
        peer,
        None,
        "POST /api/shutdown",
        &format!("shutdown requested with {} job(s) running or waiting", jobs.len()),
    );
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"stopping": true, "pid": std::process::id(), "jobs": jobs})),
    )
        .into_response()
}
