//! The HTTP API (axum): `POST /v1/inference`, `GET /v1/requests/{id}`, `GET /healthz`,
//! `GET /readyz`, `GET /metrics`, `GET /openapi.json`.
//!
//! Every error is JSON, `{"error": {"code": "...", "message": "..."}}`, with a 4xx status
//! for bad input and 5xx only for the service's own failures.

use crate::db::tables::{BatchStatus, RequestStatus};
use crate::db::{DbError, NewRequest, RequestView, SequencerDb, blocking};
use crate::execution::{ExecutionPool, InputError, Job, ModelInput, ModelRegistry};
use crate::metrics::{Metrics, Outcome};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use inference::merkle::H256;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An API error: a status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(target: "sequencer::api", error = %e, "internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "the sequencer could not complete the request; see its logs".into(),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        let code = match &e {
            InputError::UnknownModel(_) => "unknown_model",
            InputError::Empty => "empty_input",
            InputError::TextTooLong { .. } | InputError::TooManyTokens { .. } => "input_too_long",
            InputError::Tokenize(_) => "invalid_input",
        };
        Self::bad_request(code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_json",
        };
        // Serde's messages name the field and the expected type; 422 becomes 400 so that
        // every malformed body gets the same status.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self {
            status,
            code,
            message: r.body_text(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// `POST /v1/inference` body.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceRequest {
    /// A served family's name (`all-MiniLM-L6-v2`, or its directory name `minilm`), or one
    /// bucket's model id (`0x` + 64 hex digits).
    pub model: String,
    /// Text to embed (tokenized with the model's tokenizer).
    #[serde(default)]
    pub text: Option<String>,
    /// Token ids, special tokens included (instead of `text`).
    #[serde(default)]
    pub tokens: Option<Vec<u32>>,
    /// Wait for the output (default), or answer 202 as soon as the request is stored.
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// Limits of the API.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest body.
    pub max_body_bytes: usize,
    /// Largest text.
    pub max_text_bytes: usize,
    /// Most requests queued for execution.
    pub queue_limit: usize,
    /// How long `wait` waits.
    pub wait_timeout: Duration,
}

/// A request to store, and where to say its number.
pub type AcceptItem = (NewRequest, oneshot::Sender<Result<u64, String>>);

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub db: SequencerDb,
    /// The models.
    pub models: Arc<ModelRegistry>,
    /// The worker pool.
    pub pool: Arc<ExecutionPool>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The limits.
    pub limits: Limits,
    /// Stores requests, many per transaction (see [`run_acceptor`]).
    pub accept: mpsc::Sender<AcceptItem>,
    /// Whether recovery is done and requests are served.
    pub ready: AtomicBool,
}

/// Stores accepted requests that do not wait for their output (`"wait": false`) with group
/// commit: everything queued when a transaction starts goes into it, so one fsync covers
/// many requests under load. Each sender learns its request number only after the commit.
/// (A waiting request is stored with its output instead, by the worker pool's sink.)
pub async fn run_acceptor(db: SequencerDb, mut rx: mpsc::Receiver<AcceptItem>) {
    const MAX_GROUP: usize = 256;
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        while items.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<NewRequest>, Vec<_>) = items.into_iter().unzip();
        let db2 = db.clone();
        match blocking(move || db2.accept(requests)).await {
            Ok(ids) => {
                for (reply, id) in replies.into_iter().zip(ids) {
                    let _ = reply.send(Ok(id));
                }
            }
            Err(e) => {
                tracing::error!(target: "sequencer::api", error = %e, "storing requests failed");
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// The router with every route and the body limit.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/v1/inference", post(post_inference))
        .route("/v1/requests/{id}", get(get_request))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(state)
}

static HTTP_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// One span per HTTP request, and one log line when it ends.
async fn trace_request(req: Request, next: Next) -> Response {
    let n = HTTP_REQUESTS.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        target: "sequencer::http",
        "http",
        n,
        method = %req.method(),
        path = %req.uri().path()
    );
    async move {
        let started = Instant::now();
        let response = next.run(req).await;
        tracing::debug!(
            target: "sequencer::http",
            status = response.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "done"
        );
        response
    }
    .instrument(span)
    .await
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route; see /openapi.json".into(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "method not allowed on this route; see /openapi.json".into(),
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if !s.ready.load(Ordering::SeqCst) {
        return ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "not_ready",
            message: "recovering: requeueing stored requests".into(),
        }
        .into_response();
    }
    let db = s.db.clone();
    match blocking(move || db.execution_queue_len()).await {
        Ok(queued) => Json(json!({ "status": "ready", "queued": queued })).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    s.metrics.queue_depth.set(s.pool.depth() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn post_inference(
    State(s): State<Arc<AppState>>,
    body: Result<Json<InferenceRequest>, JsonRejection>,
) -> Response {
    match inference_inner(&s, body).await {
        Ok(r) => r,
        Err(e) => {
            s.metrics
                .request(if e.status == StatusCode::SERVICE_UNAVAILABLE {
                    Outcome::Overloaded
                } else if e.status.is_client_error() {
                    Outcome::Invalid
                } else {
                    Outcome::Error
                });
            e.into_response()
        }
    }
}

async fn inference_inner(
    s: &Arc<AppState>,
    body: Result<Json<InferenceRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    if !s.ready.load(Ordering::SeqCst) {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "not_ready",
            message: "the sequencer is starting; retry shortly".into(),
        });
    }
    let input = match (req.text, req.tokens) {
        (Some(t), None) => ModelInput::Text(t),
        (None, Some(t)) => ModelInput::Tokens(t),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                "give either \"text\" or \"tokens\", not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                "give the input as \"text\" (a string) or \"tokens\" (an array of token ids)",
            ));
        }
    };
    if s.pool.depth() >= s.limits.queue_limit {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "overloaded",
            message: format!(
                "{} requests are queued (the limit); retry later",
                s.pool.depth()
            ),
        });
    }
    let prepared = s
        .models
        .prepare(&req.model, input, s.limits.max_text_bytes)?;
    let started = Instant::now();
    let new = NewRequest {
        model: prepared.model.clone(),
        model_id: prepared.bucket.id(),
        input: prepared.record,
    };
    let tokens = prepared.tensor.shape().get(1).copied().unwrap_or(0);
    // The answer's view comes with the stored output for a client that waited; otherwise
    // (or when its result was stored by someone else) it is read back.
    let (status, id, stored) = if req.wait {
        // The client waits for the output: run first and store the request with its output
        // in one transaction (one commit instead of two). The client learns its number only
        // once both are stored; a crash before that loses nothing it was told.
        let id = s.db.reserve_id();
        let (done_tx, done_rx) = oneshot::channel();
        submit(
            s,
            Job {
                id,
                model: prepared.bucket,
                input: prepared.tensor,
                done: Some(done_tx),
                request: Some(new.clone()),
            },
        )?;
        match tokio::time::timeout(s.limits.wait_timeout, done_rx).await {
            Ok(Ok(stored)) => {
                s.metrics
                    .request_seconds
                    .observe(started.elapsed().as_secs_f64());
                (StatusCode::OK, id, stored)
            }
            Ok(Err(_)) => return Err(ApiError::internal("the worker pool dropped a request")),
            Err(_) => {
                // Still running: accept it now, as if it had not waited, and answer 202.
                let db = s.db.clone();
                let queued = blocking(move || db.accept_reserved(id, new))
                    .await
                    .map_err(ApiError::internal)?;
                let status = if queued {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                };
                (status, id, None)
            }
        }
    } else {
        let (reply, id) = oneshot::channel();
        s.accept
            .send((new, reply))
            .await
            .map_err(|_| ApiError::internal("the acceptor has stopped"))?;
        let id = id
            .await
            .map_err(|_| ApiError::internal("the acceptor dropped a request"))?
            .map_err(ApiError::internal)?;
        submit(
            s,
            Job {
                id,
                model: prepared.bucket,
                input: prepared.tensor,
                done: None,
                request: None,
            },
        )?;
        (StatusCode::ACCEPTED, id, None)
    };
    s.metrics.request(Outcome::Accepted);
    tracing::info!(target: "sequencer::api", id, model = %req.model, tokens, waited = req.wait, "accepted");
    let view = match stored {
        Some(view) => view,
        None => load(s, id).await?.ok_or_else(|| {
            ApiError::internal(DbError::Missing {
                what: "request",
                id,
            })
        })?,
    };
    Ok((status, Json(RequestJson::new(&view))).into_response())
}

/// Queues a job on the worker pool and updates the queue-depth gauge.
fn submit(s: &AppState, job: Job) -> Result<(), ApiError> {
    s.pool.submit(job).map_err(ApiError::internal)?;
    s.metrics.queue_depth.set(s.pool.depth() as i64);
    Ok(())
}

async fn load(s: &Arc<AppState>, id: u64) -> Result<Option<RequestView>, ApiError> {
    let db = s.db.clone();
    blocking(move || db.request(id))
        .await
        .map_err(ApiError::internal)
}

/// A request reference from a URL: its local number (`42`) or its 32-byte claim id (`0x`
/// and 64 hex digits: an on-chain request id, or an HTTP request's
/// `keccak256(abi.encode(sequencer, localId))`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestRef {
    /// The local request number.
    Number(u64),
    /// The claim's request id.
    ClaimId(H256),
}

/// Reads a request reference: its number (`42`) or its 32-byte claim id (`0x…`).
pub fn parse_request_id(text: &str) -> Result<RequestRef, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_request_id",
            format!("{text:?} is not a request id (a number, or 0x and 64 hex digits)"),
        )
    };
    if text.starts_with("0x") || text.starts_with("0X") {
        let word: H256 = text.parse().map_err(|_| bad())?;
        return Ok(RequestRef::ClaimId(word));
    }
    text.parse().map(RequestRef::Number).map_err(|_| bad())
}

async fn get_request(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let result = async {
        let unknown = || ApiError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_request",
            message: format!("no request {id}"),
        };
        let number = match parse_request_id(&id)? {
            RequestRef::Number(n) => n,
            RequestRef::ClaimId(word) => {
                let db = s.db.clone();
                blocking(move || db.request_number(word))
                    .await
                    .map_err(ApiError::internal)?
                    .ok_or_else(unknown)?
            }
        };
        let view = load(&s, number).await?.ok_or_else(unknown)?;
        Ok::<_, ApiError>(Json(RequestJson::new(&view)).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The status shown to clients: batched requests are still `pending` until posted.
pub fn public_status(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Batched => "pending",
        other => other.as_str(),
    }
}

/// The JSON form of a request (the `Request` schema of the OpenAPI document), serialized
/// straight from the stored records.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestJson<'a> {
    id: u64,
    request_id: H256,
    on_chain: bool,
    status: &'static str,
    model: &'a str,
    model_id: H256,
    input: InputJson<'a>,
    output: Option<OutputJson<'a>>,
    error: Option<&'a str>,
    claim: Option<ClaimJson>,
    inclusion: Option<InclusionJson<'a>>,
    accepted_at_ms: u64,
    executed_at_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InputJson<'a> {
    text: Option<&'a str>,
    tokens: &'a [u32],
    seq_len: u32,
    hash: H256,
}

#[derive(Debug, Serialize)]
struct OutputJson<'a> {
    dtype: &'static str,
    shape: &'a [u32],
    /// The output bytes, base64.
    data: String,
    hash: H256,
    /// The output L2-normalized (shortest decimal form of each `f32`).
    embedding: Option<Vec<f32>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimJson {
    request_id: H256,
    model_id: H256,
    input_hash: H256,
    output_hash: H256,
    leaf: H256,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InclusionJson<'a> {
    batch: u64,
    index: u64,
    claims_root: H256,
    proof: &'a [H256],
    batch_status: &'static str,
    tx_hash: Option<H256>,
    block: Option<u64>,
}

impl<'a> RequestJson<'a> {
    /// The JSON form of `view`.
    pub fn new(view: &'a RequestView) -> Self {
        let r = &view.request;
        let output = r.output.as_ref().map(|o| {
            let embedding = inference::Tensor::from_le_bytes(
                o.dtype,
                o.shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                &o.data,
            )
            .and_then(|t| inference::import::bert::normalize(&t))
            .ok();
            OutputJson {
                dtype: o.dtype.name(),
                shape: &o.shape,
                data: base64::engine::general_purpose::STANDARD.encode(&o.data),
                hash: o.hash,
                embedding,
            }
        });
        let claim = view.claim.as_ref().map(|c| ClaimJson {
            request_id: c.claim.request_id,
            model_id: c.claim.model_id,
            input_hash: c.claim.input_hash,
            output_hash: c.claim.output_hash,
            leaf: H256(c.claim.leaf()),
        });
        let inclusion = match (&view.claim, &view.batch) {
            (Some(c), Some(b)) => c.inclusion.as_ref().map(|inc| InclusionJson {
                batch: inc.batch,
                index: inc.index,
                claims_root: b.claims_root,
                proof: &inc.proof.siblings,
                batch_status: b.status.as_str(),
                tx_hash: b.status.tx_hash(),
                block: match b.status {
                    BatchStatus::Posted { block, .. } => Some(block),
                    _ => None,
                },
            }),
            _ => None,
        };
        Self {
            id: r.id,
            request_id: r.request_id,
            on_chain: r.on_chain,
            status: public_status(r.status),
            model: &r.model,
            model_id: r.model_id,
            input: InputJson {
                text: r.input.text.as_deref(),
                tokens: &r.input.tokens,
                seq_len: r.input.seq_len,
                hash: r.input.hash,
            },
            output,
            error: r.error.as_deref(),
            claim,
            inclusion,
            accepted_at_ms: r.accepted_at_ms,
            executed_at_ms: r.executed_at_ms,
        }
    }
}
