//! The dashboard: server-rendered HTML (maud) at `/` and `/jobs/{id}`, a small embedded script
//! and stylesheet (`/assets/*`). No Node build step; every text comes from the message catalog
//! (`dash-*` keys of crates/i18n), in the daemon's `language`.
//!
//! The script re-fetches the page's live part (`?fragment=1`, the same HTML the page was
//! rendered with) every few seconds and swaps it in, so the page follows the daemon without a
//! reload. Actions (run a plan now, cancel a job) call the JSON API with the token the operator
//! entered once (kept in the browser's `localStorage`) as `Authorization: Bearer`; read-only
//! pages need no token (see docs/dashboard.md for the cross-site protection of the actions).

use std::time::Duration;

use alerts::Alert;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use backup_core::state::JobFilter;
use backup_core::{Job, JobStatus, ReplicationStatus};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use i18n::{text, tr};
use maud::{DOCTYPE, Markup, html};
use packrat_app::api::StatusResponse;
use packrat_app::drill::DrillRun;
use serde::Deserialize;

use crate::api::{AppState, status_doc};
use crate::daemon::Daemon;

const JS: &str = include_str!("assets/dashboard.js");
const CSS: &str = include_str!("assets/dashboard.css");
/// How long the dashboard waits for one sink's free space.
const FREE_SPACE_WAIT: Duration = Duration::from_secs(2);
/// Jobs listed on the dashboard.
const JOBS_SHOWN: usize = 50;
/// Resolved alerts listed.
const RECENT_ALERTS: usize = 10;
/// Failures of a verification or drill listed before the rest is folded.
const FAILURES_SHOWN: usize = 3;

/// The dashboard's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/jobs/{id}", get(job_page))
        .route("/assets/dashboard.js", get(js))
        .route("/assets/dashboard.css", get(css))
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    fragment: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
        .into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
        .into_response()
}

fn html_response(code: StatusCode, m: Markup) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
            ),
        ],
        m.into_string(),
    )
        .into_response()
}

fn failure(e: backup_core::Error) -> Response {
    html_response(StatusCode::INTERNAL_SERVER_ERROR, html! { p.error { (e.chain()) } })
}

/// What the dashboard shows about one sink.
struct SinkView {
    name: String,
    kind: String,
    /// Free bytes, `Ok(None)` when the sink cannot tell, `Err` when it cannot be reached (not
    /// mounted, missing, …).
    free: Result<Option<u64>, String>,
}

async fn sink_views(d: &Daemon) -> Vec<SinkView> {
    let mut out = Vec::new();
    for s in &d.sinks {
        let kind = d
            .cfg
            .sinks
            .get(s.name())
            .map(|c| c.kind().to_string())
            .unwrap_or_default();
        let free = match tokio::time::timeout(FREE_SPACE_WAIT, s.free_space()).await {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(e)) => Err(e.chain()),
            Err(_) => Err(tr!("dash-sink-timeout")),
        };
        out.push(SinkView {
            name: s.name().to_string(),
            kind,
            free,
        });
    }
    out
}

async fn index(State(s): State<AppState>, Query(q): Query<PageQuery>) -> Response {
    let d = &s.d;
    let plan = nonempty(q.plan);
    let status_s = nonempty(q.status);
    let status = match status_s.as_deref().map(str::parse::<JobStatus>) {
        Some(Err(e)) => return html_response(StatusCode::BAD_REQUEST, html! { p.error { (e) } }),
        Some(Ok(st)) => Some(st),
        None => None,
    };
    let doc = match status_doc(d) {
        Ok(doc) => doc,
        Err(e) => return failure(e),
    };
    let jobs = match d.state.jobs(&JobFilter {
        plan: plan.clone(),
        status,
        limit: Some(JOBS_SHOWN),
    }) {
        Ok(j) => j,
        Err(e) => return failure(e),
    };
    let recent: Vec<Alert> = match d.alert_store().list(true) {
        Ok(a) => a
            .into_iter()
            .filter(|a| a.resolved_at.is_some())
            .take(RECENT_ALERTS)
            .collect(),
        Err(e) => return failure(e),
    };
    let sinks = sink_views(d).await;
    let live = live_index(d, &doc, &jobs, &recent, &sinks);
    if q.fragment.is_some() {
        return html_response(StatusCode::OK, live);
    }
    let filter = filter_form(d, plan.as_deref(), status_s.as_deref());
    html_response(StatusCode::OK, page(&tr!("dash-title"), &doc, html! { (filter) }, live))
}

async fn job_page(State(s): State<AppState>, Path(id): Path<String>, Query(q): Query<PageQuery>) -> Response {
    let d = &s.d;
    let job = match id.parse::<i64>().map(|id| d.state.job(id)) {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => return failure(e),
        Err(_) => None,
    };
    let (code, live) = match &job {
        Some(j) => (StatusCode::OK, job_detail(d, j)),
        None => (
            StatusCode::NOT_FOUND,
            html! { p.error { (tr!("dash-no-such-job", id = id.as_str())) } },
        ),
    };
    if q.fragment.is_some() {
        return html_response(code, live);
    }
    let doc = match status_doc(d) {
        Ok(doc) => doc,
        Err(e) => return failure(e),
    };
    let title = tr!("dash-job-title", id = id.as_str());
    let back = html! { p { a href="/" { (tr!("dash-back")) } } };
    let mut resp = html_response(code, page(&title, &doc, back, live));
    *resp.status_mut() = code;
    resp
}

/// The whole page around `live` (the part the script refreshes).
fn page(title: &str, doc: &StatusResponse, above: Markup, live: Markup) -> Markup {
    let lang = i18n::language();
    html! {
        (DOCTYPE)
        html lang=(lang.as_str()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (tr!("dash-title")) }
                link rel="stylesheet" href="/assets/dashboard.css";
                script src="/assets/dashboard.js" defer {}
            }
            body
                data-msg-need-token=(tr!("dash-need-token"))
                data-msg-wrong-token=(tr!("dash-wrong-token"))
                data-msg-run-started=(tr!("dash-run-started", job = "{job}"))
                data-msg-cancelling=(tr!("dash-cancelling", job = "{job}"))
                data-msg-refused=(tr!("dash-refused", error = "{error}"))
                data-msg-offline=(tr!("dash-offline"))
                data-msg-token-saved=(tr!("dash-token-saved"))
                data-msg-token-none=(tr!("dash-token-none"))
                data-msg-token-forgotten=(tr!("dash-token-forgotten"))
            {
                header.top {
                    div.brand {
                        h1 { a href="/" { (tr!("dash-title")) } }
                        span.sub { (tr!("dash-subtitle")) }
                    }
                    form #token-form .token autocomplete="off" {
                        label for="token" { (tr!("dash-token-label")) }
                        input #token type="password" name="token" autocomplete="off" spellcheck="false";
                        button #token-save type="submit" { (tr!("dash-token-save")) }
                        button #token-forget type="button" { (tr!("dash-token-forget")) }
                        span #token-state .muted {}
                    }
                }
                div #flash role="status" aria-live="polite" {}
                @if title != tr!("dash-title") { h2.page-title { (title) } }
                (above)
                main #live data-version=(doc.version) { (live) }
                footer {
                    span #offline .error hidden {}
                    span.muted { "packrat " (doc.version) " · pid " (doc.pid) }
                }
            }
        }
    }
}

/// The time `t` in `tz`, with the zone's offset.
fn at(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %:z").to_string()
}

fn opt_at(t: Option<DateTime<Utc>>, tz: Tz) -> String {
    t.map(|t| at(t, tz)).unwrap_or_else(|| "–".into())
}

/// The zone a plan's times are shown in.
fn zone(d: &Daemon, plan: &str) -> Tz {
    d.cfg
        .plans
        .get(plan)
        .map(|pc| d.cfg.plan_time_zone(pc))
        .unwrap_or(d.cfg.time_zone)
}

/// `2d 3h`, `5m 02s`, `12s` with the catalog's units (the two largest).
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts = [
        (d, text("dash-unit-d", &[("n", d.to_string().into())])),
        (h, text("dash-unit-h", &[("n", h.to_string().into())])),
        (m, text("dash-unit-m", &[("n", m.to_string().into())])),
        (s, text("dash-unit-s", &[("n", s.to_string().into())])),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(2)
        .enumerate()
        .filter(|(i, (n, _))| *i == 0 || *n > 0)
        .map(|(_, (_, t))| t.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes in decimal units.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn status_badge(s: JobStatus) -> Markup {
    html! { span class=(format!("badge st-{}", s.as_str())) { (text(&format!("dash-status-{}", s.as_str()), &[])) } }
}

fn kind_text(j: &Job) -> String {
    text(&format!("dash-kind-{}", j.kind), &[])
}

fn trigger_text(j: &Job) -> String {
    text(&format!("dash-trigger-{}", j.trigger.as_str()), &[])
}

fn repl_text(r: ReplicationStatus) -> String {
    text(&format!("dash-repl-{}", r.as_str()), &[])
}

fn duration(j: &Job) -> String {
    match (j.started_at, j.finished_at) {
        (Some(s), Some(f)) => span((f - s).num_seconds()),
        (Some(s), None) => span((Utc::now() - s).num_seconds()) + " …",
        _ => "–".into(),
    }
}

fn cancel_button(j: &Job) -> Markup {
    html! {
        @if !j.status.is_finished() {
            button.cancel.danger type="button" id=(format!("cancel-{}", j.id)) data-job=(j.id) {
                (tr!("dash-cancel"))
            }
        }
    }
}

fn filter_form(d: &Daemon, plan: Option<&str>, status: Option<&str>) -> Markup {
    let statuses = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Interrupted,
        JobStatus::Cancelled,
    ];
    html! {
        form #filter .filter method="get" action="/" {
            label { (tr!("dash-filter-plan")) " "
                select #filter-plan name="plan" {
                    option value="" { (tr!("dash-filter-all")) }
                    @for name in d.cfg.plans.keys() {
                        option value=(name) selected[plan == Some(name.as_str())] { (name) }
                    }
                }
            }
            label { (tr!("dash-filter-status")) " "
                select #filter-status name="status" {
                    option value="" { (tr!("dash-filter-all")) }
                    @for st in statuses {
                        option value=(st.as_str()) selected[status == Some(st.as_str())] {
                            (text(&format!("dash-status-{}", st.as_str()), &[]))
                        }
                    }
                }
            }
            button #filter-apply type="submit" { (tr!("dash-filter-apply")) }
        }
    }
}

fn live_index(d: &Daemon, doc: &StatusResponse, jobs: &[Job], recent: &[Alert], sinks: &[SinkView]) -> Markup {
    let tz = d.cfg.time_zone;
    let st = &doc.statistics;
    html! {
        section.overview #overview {
            div.stat { span.k { (tr!("dash-state")) } span.v {
                @if doc.stopping { span.badge.st-failed { (tr!("dash-stopping")) } }
                @else { span.badge.st-completed { (tr!("dash-running-state")) } }
            } }
            div.stat { span.k { (tr!("dash-version")) } span.v #version { (doc.version) } }
            div.stat { span.k { (tr!("dash-uptime")) } span.v #uptime { (span(doc.uptime_seconds)) } }
            div.stat { span.k { (tr!("dash-started")) } span.v { (at(doc.started_at, tz)) } }
            div.stat { span.k { (tr!("dash-stat-total")) } span.v { (st.total_backups) } }
            div.stat { span.k { (tr!("dash-stat-rate")) } span.v { (format!("{:.1} %", st.success_rate)) } }
            div.stat { span.k { (tr!("dash-stat-failure")) } span.v { (st.failure_count) } }
            div.stat { span.k { (tr!("dash-stat-bytes")) } span.v { (size(st.total_bytes)) } }
            div.stat { span.k { (tr!("dash-stat-active")) } span.v #active-count { (st.active_jobs) } }
        }
        (alerts_section(d, &doc.alerts, recent))
        (plans_section(d, doc))
        (jobs_section(d, jobs))
        (sinks_section(d, doc, sinks))
    }
}

fn plans_section(d: &Daemon, doc: &StatusResponse) -> Markup {
    html! {
        section #plans {
            h2 { (tr!("dash-plans")) }
            div.cards {
                @for (name, p) in &doc.plans {
                    @let tz = zone(d, name);
                    @let pc = d.cfg.plans.get(name);
                    article.card.plan id=(format!("plan-{name}")) {
                        h3 { (name)
                            @if p.enabled { span.badge.st-completed { (tr!("dash-enabled")) } }
                            @else { span.badge.st-cancelled { (tr!("dash-disabled")) } }
                        }
                        dl {
                            dt { (tr!("dash-schedule")) }
                            dd { (p.schedule.clone().unwrap_or_else(|| tr!("dash-no-schedule"))) }
                            dt { (tr!("dash-next-run")) }
                            dd { (opt_at(p.next_run, tz)) }
                            dt { (tr!("dash-last-result")) }
                            dd {
                                @match &p.last_run {
                                    Some(j) => {
                                        a href=(format!("/jobs/{}", j.id)) { "#" (j.id) } " "
                                        (status_badge(j.status)) " "
                                        span.msg { (j.message) }
                                    }
                                    None => { (tr!("dash-never")) }
                                }
                            }
                            dt { (tr!("dash-last-success")) }
                            dd { (last_success(d, name, p.last_success, tz)) }
                            dt { (tr!("dash-last-verify")) }
                            dd.drill id=(format!("verify-{name}")) { (drill_run(p.last_verify.as_ref(), tz)) }
                            dt { (tr!("dash-last-drill")) }
                            dd.drill id=(format!("drill-{name}")) { (drill_run(p.last_drill.as_ref(), tz)) }
                            dt { (tr!("dash-replication")) }
                            dd {
                                ul.sinks {
                                    @for (i, sink) in pc.map(|pc| pc.sinks.as_slice()).unwrap_or_default().iter().enumerate() {
                                        li {
                                            span.sink-name { (sink) } ": "
                                            @if i == 0 {
                                                @if p.last_success.is_some() { (tr!("dash-repl-primary")) } @else { "–" }
                                            } @else {
                                                (p.last_run.as_ref().map(|j| repl_text(j.replication)).unwrap_or_else(|| "–".into()))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        @if let Some(why) = &p.problem {
                            p.error { (tr!("dash-cannot-run", why = why.as_str())) }
                        }
                        div.actions {
                            @if let Some(r) = &p.running {
                                span.muted {
                                    a href=(format!("/jobs/{}", r.job)) { "#" (r.job) } " "
                                    (tr!("dash-busy"))
                                }
                            }
                            @for kind in ["full", "incremental"] {
                                button.run type="button" id=(format!("run-{name}-{kind}")) data-plan=(name) data-kind=(kind)
                                    disabled[!p.runnable || p.running.is_some()] {
                                    (text(&format!("dash-run-{kind}"), &[]))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn last_success(d: &Daemon, plan: &str, last: Option<DateTime<Utc>>, tz: Tz) -> Markup {
    let max = d.max_age(plan);
    let max_text = max.map(|m| tr!("dash-max-age", age = span(m.as_secs() as i64)));
    html! {
        @match last {
            Some(t) => {
                @let age = (Utc::now() - t).num_seconds();
                @let overdue = max.is_some_and(|m| age > m.as_secs() as i64);
                span.age.overdue[overdue] title=(at(t, tz)) { (tr!("dash-ago", age = span(age))) }
                @if let Some(m) = &max_text { " " span.muted { "(" (m) ")" } }
                @if overdue { " " span.badge.st-failed { (tr!("dash-overdue")) } }
            }
            None => {
                (tr!("dash-never"))
                @if let Some(m) = &max_text { " " span.muted { "(" (m) ")" } }
            }
        }
    }
}

/// The last verification or drill of a plan: status, end time, restore time (drills), the first
/// failures (all of them in the list's title and, past the first few, folded).
fn drill_run(r: Option<&DrillRun>, tz: Tz) -> Markup {
    let Some(r) = r else {
        return html! { span.muted { (tr!("dash-never")) } };
    };
    let st = r.status.as_str();
    let (shown, rest) = r.failures.split_at(r.failures.len().min(FAILURES_SHOWN));
    html! {
        span class=(format!("badge st-{st}")) data-status=(st) { (text(&format!("dash-drill-{st}"), &[])) } " "
        span.time { (at(r.finished_at.unwrap_or(r.started_at), tz)) }
        @if let Some(s) = r.restore_seconds {
            " " span.restore.muted { (tr!("dash-restore-time", secs = format!("{s:.2}"))) }
        }
        @if !r.failures.is_empty() {
            ul.failures title=(r.failures.join("\n")) {
                @for f in shown { li.detail { (f) } }
            }
            @if !rest.is_empty() {
                details.failures-more {
                    summary { (tr!("dash-failures-more", n = rest.len().to_string())) }
                    ul.failures { @for f in rest { li.detail { (f) } } }
                }
            }
        }
    }
}

fn jobs_section(d: &Daemon, jobs: &[Job]) -> Markup {
    html! {
        section #jobs {
            h2 { (tr!("dash-jobs")) }
            @if jobs.is_empty() {
                p.muted #no-jobs { (tr!("dash-no-jobs")) }
            } @else {
                table.jobs {
                    thead { tr {
                        th { (tr!("dash-col-id")) }
                        th { (tr!("dash-plan")) }
                        th { (tr!("dash-col-status")) }
                        th { (tr!("dash-col-message")) }
                        th { (tr!("dash-col-detail")) }
                        th { (tr!("dash-col-output")) }
                        th { (tr!("dash-col-size")) }
                        th { (tr!("dash-col-duration")) }
                        th { (tr!("dash-col-trigger")) }
                        th { (tr!("dash-col-created")) }
                        th {}
                    } }
                    tbody {
                        @for j in jobs {
                            tr id=(format!("job-{}", j.id)) data-status=(j.status.as_str()) data-plan=(j.plan) {
                                td data-label=(tr!("dash-col-id")) { a href=(format!("/jobs/{}", j.id)) { "#" (j.id) } }
                                td data-label=(tr!("dash-plan")) { (j.plan) " " span.muted { (kind_text(j)) } }
                                td.status data-label=(tr!("dash-col-status")) { (status_badge(j.status))
                                    @if j.status == JobStatus::Running { " " span.muted { (j.progress) "%" } } }
                                td.msg data-label=(tr!("dash-col-message")) { (j.message) }
                                td.detail data-label=(tr!("dash-col-detail")) { (j.detail) }
                                td.path data-label=(tr!("dash-col-output")) { (j.output_dir.as_deref().unwrap_or("")) }
                                td.num data-label=(tr!("dash-col-size")) { @if j.bytes > 0 { (size(j.bytes)) } }
                                td.num data-label=(tr!("dash-col-duration")) { (duration(j)) }
                                td data-label=(tr!("dash-col-trigger")) { (trigger_text(j)) }
                                td.time data-label=(tr!("dash-col-created")) { (at(j.created_at, zone(d, &j.plan))) }
                                td.act { (cancel_button(j)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn alerts_section(d: &Daemon, firing: &[Alert], recent: &[Alert]) -> Markup {
    let tz = d.cfg.time_zone;
    html! {
        section #alerts {
            h2 { (tr!("dash-alerts")) }
            @if firing.is_empty() {
                p.muted.ok-line { (tr!("dash-no-alerts")) }
            } @else {
                ul.alerts.firing {
                    @for a in firing {
                        li class=(format!("alert sev-{}", a.severity.as_str())) {
                            span.badge class=(format!("sev-{}", a.severity.as_str())) { (text(&format!("dash-sev-{}", a.severity.as_str()), &[])) }
                            " " span.msg { (a.message) } " "
                            span.muted { (tr!("dash-alert-since", at = at(a.first_seen, tz))) " · " (tr!("dash-alert-count", count = a.count.to_string())) }
                        }
                    }
                }
            }
            @if !recent.is_empty() {
                details.recent {
                    summary { (tr!("dash-alerts-recent")) " (" (recent.len()) ")" }
                    ul.alerts {
                        @for a in recent {
                            li.alert.resolved {
                                span.msg { (a.message) } " "
                                span.muted { (tr!("dash-alert-resolved", at = opt_at(a.resolved_at, tz))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn sinks_section(d: &Daemon, doc: &StatusResponse, sinks: &[SinkView]) -> Markup {
    let tz = d.cfg.time_zone;
    html! {
        section #sinks {
            h2 { (tr!("dash-sinks")) }
            table.sinks {
                thead { tr {
                    th { (tr!("dash-sink")) }
                    th { (tr!("dash-sink-type")) }
                    th { (tr!("dash-sink-state")) }
                    th { (tr!("dash-sink-free")) }
                    th { (tr!("dash-sink-packs")) }
                    th { (tr!("dash-sink-bytes")) }
                    th { (tr!("dash-sink-last")) }
                } }
                tbody {
                    @for s in sinks {
                        @let act = doc.sinks.get(&s.name);
                        tr id=(format!("sink-{}", s.name)) {
                            td data-label=(tr!("dash-sink")) { (s.name) }
                            td data-label=(tr!("dash-sink-type")) { (s.kind) }
                            td data-label=(tr!("dash-sink-state")) {
                                @match &s.free {
                                    Ok(_) => span.badge.st-completed { (tr!("dash-sink-ok")) },
                                    Err(e) => { span.badge.st-failed { (tr!("dash-sink-unreachable")) } " " span.detail { (e) } },
                                }
                            }
                            td.num data-label=(tr!("dash-sink-free")) {
                                @match &s.free {
                                    Ok(Some(b)) => (size(*b)),
                                    _ => span.muted { (tr!("dash-sink-unknown")) },
                                }
                            }
                            td.num data-label=(tr!("dash-sink-packs")) { (act.map(|a| a.packs).unwrap_or(0)) }
                            td.num data-label=(tr!("dash-sink-bytes")) { (size(act.map(|a| a.bytes).unwrap_or(0))) }
                            td.time data-label=(tr!("dash-sink-last")) { (opt_at(act.and_then(|a| a.last_at), tz)) }
                        }
                    }
                }
            }
        }
    }
}

fn job_detail(d: &Daemon, j: &Job) -> Markup {
    let tz = zone(d, &j.plan);
    let row = |k: &str, v: Markup| html! { dt { (text(k, &[])) } dd { (v) } };
    html! {
        article.card.job #job data-status=(j.status.as_str()) data-job=(j.id) {
            h3 { "#" (j.id) " · " (j.plan) " " (status_badge(j.status)) }
            dl.wide {
                (row("dash-col-status", html! { (status_badge(j.status)) @if !j.status.is_finished() { " " (j.progress) "%" } }))
                (row("dash-col-message", html! { span.msg { (j.message) } }))
                (row("dash-col-detail", html! { span.detail { (j.detail) } }))
                (row("dash-col-output", html! { span.path { (j.output_dir.as_deref().unwrap_or("–")) } }))
                (row("dash-col-pack", html! { (j.pack_id.as_deref().unwrap_or("–")) }))
                (row("dash-col-kind", html! { (kind_text(j)) }))
                (row("dash-col-trigger", html! { (trigger_text(j)) }))
                (row("dash-col-replication", html! { (repl_text(j.replication)) }))
                (row("dash-col-size", html! { (size(j.bytes)) }))
                (row("dash-col-artifacts", html! { (j.artifacts) }))
                (row("dash-col-records", html! { (j.records) }))
                (row("dash-col-duration", html! { (duration(j)) }))
                (row("dash-col-created", html! { (at(j.created_at, tz)) }))
                (row("dash-col-started", html! { (opt_at(j.started_at, tz)) }))
                (row("dash-col-finished", html! { (opt_at(j.finished_at, tz)) }))
                (row("dash-col-pid", html! { (j.pid.map(|p| p.to_string()).unwrap_or_else(|| "–".into())) }))
            }
            div.actions { (cancel_button(j)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_sizes() {
        i18n::set_language(i18n::Lang::En);
        assert_eq!(span(0), "0s");
        assert_eq!(span(62), "1m 2s");
        assert_eq!(span(3 * 86_400 + 7200 + 5), "3d 2h");
        assert_eq!(span(2 * 86_400), "2d");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_500_000), "1.5 MB");
        assert_eq!(i18n::text_in(i18n::Lang::ZhCn, "dash-title", &[]), "数据安全");
    }

    #[test]
    fn a_failed_run_lists_its_first_failures_escaped_and_folds_the_rest() {
        use packrat_app::drill::{DrillKind, DrillStatus};
        i18n::set_language(i18n::Lang::En);
        assert!(drill_run(None, Tz::UTC).into_string().contains(">never<"));
        let t = DateTime::parse_from_rfc3339("2026-12-02T05:11:27Z").unwrap().to_utc();
        let r = DrillRun {
            id: 7,
            plan: "p".into(),
            kind: DrillKind::Verify,
            trigger: "manual".into(),
            status: DrillStatus::Failed,
            pack_id: None,
            started_at: t,
            finished_at: Some(t),
            restore_seconds: None,
            checks: vec![],
            failures: (1..=5).map(|i| format!("<b>bad {i}</b>")).collect(),
        };
        let h = drill_run(Some(&r), Tz::Asia__Shanghai).into_string();
        assert!(
            h.contains(r#"<span class="badge st-failed" data-status="failed">failed</span>"#),
            "{h}"
        );
        assert!(h.contains("2026-12-02 13:11:27 +08:00"), "{h}");
        assert!(!h.contains("<b>") && h.contains("&lt;b&gt;bad 1&lt;/b&gt;"), "{h}");
        let (first, folded) = h.split_once("<details").unwrap();
        assert!(
            first.contains("bad 3&lt;") && !first.contains("bad 4&lt;/b&gt;</li>"),
            "{h}"
        );
        assert!(folded.contains("2 more") && folded.contains("bad 5"), "{h}");
        assert_eq!(i18n::text_in(i18n::Lang::ZhCn, "dash-drill-passed", &[]), "通过");
    }
}
