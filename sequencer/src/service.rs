//! Wiring: opens the database, loads the models, recovers queued work, and runs the HTTP
//! server, the worker pool, the acceptor and the batcher until told to stop.

use crate::api::{AppState, Limits, router, run_acceptor};
use crate::batching::{BatchSettings, Batcher};
use crate::config::Config;
use crate::db::{DbError, Execution, SequencerDb};
use crate::execution::{Completed, ExecutionPool, Executor, Job, ModelError, ModelRegistry};
use crate::metrics::{Metrics, Outcome};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starting the service failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The database could not be opened or read.
    #[error("database {path}: {source}")]
    Db {
        /// The database directory.
        path: std::path::PathBuf,
        /// The error.
        source: DbError,
    },
    /// A model could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The execution backend could not be set up.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// The listen address could not be bound, or a thread could not start.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A running sequencer.
#[derive(Debug)]
pub struct RunningSequencer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    batcher: JoinHandle<()>,
    acceptor: JoinHandle<()>,
    state: Arc<AppState>,
    built: Arc<tokio::sync::Notify>,
}

impl RunningSequencer {
    /// The address the HTTP API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (database, metrics).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops serving, lets in-flight requests finish and waits for the tasks.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.batcher.await;
        drop(self.state);
        self.acceptor.abort();
        let _ = self.acceptor.await;
    }

    /// Woken whenever a batch is built: hand it to [`crate::batching::run_poster`].
    pub fn batch_built(&self) -> Arc<tokio::sync::Notify> {
        self.built.clone()
    }

    /// A signal for [`RunningSequencer::stop`]'s shutdown (for the chain layer's tasks).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Stores a micro-batch's results (retrying storage errors with backoff), then tells the
/// waiting clients (each gets its request as stored) and the batcher.
fn store_results(
    db: &SequencerDb,
    metrics: &Metrics,
    executed: &tokio::sync::Notify,
    done: Vec<Completed>,
) {
    let mut waiting = Vec::with_capacity(done.len());
    let results: Vec<Execution> = done
        .into_iter()
        .map(|c| {
            metrics.inference_seconds.observe(c.elapsed.as_secs_f64());
            match &c.result {
                Ok(out) => {
                    tracing::debug!(target: "sequencer::execution", id = c.job.id, output = %out.hash, ms = c.elapsed.as_secs_f64() * 1e3, "executed")
                }
                Err(e) => {
                    metrics.request(Outcome::Failed);
                    tracing::warn!(target: "sequencer::execution", id = c.job.id, error = %e, "execution failed");
                }
            }
            waiting.push(c.job.done);
            Execution {
                id: c.job.id,
                output: c.result,
                request: c.job.request,
            }
        })
        .collect();
    let mut backoff = Duration::from_millis(50);
    let views = loop {
        let started = std::time::Instant::now();
        match db.record_executions(&results) {
            Ok(views) => {
                metrics
                    .store_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.store_commit_size.observe(results.len() as f64);
                break views;
            }
            Err(e) => {
                tracing::error!(target: "sequencer::execution", error = %e, "storing outputs failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    for (done, view) in waiting.into_iter().zip(views) {
        if let Some(tx) = done {
            let _ = tx.send(view);
        }
    }
    executed.notify_one();
}

/// The async runtime `sequencer run` serves on: [`crate::config::HttpConfig::runtime_threads`]
/// threads, named `sequencer-rt` (blocking storage calls get their own threads as needed).
pub fn runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http.runtime_threads())
        .enable_all()
        .thread_name("sequencer-rt")
        .build()
}

/// Starts the sequencer with `config` on the backend it names (`[exec] backend`).
pub async fn start(config: Config) -> Result<RunningSequencer, ServiceError> {
    let executor = crate::backend::make_executor(config.exec.backend, config.exec.threads)?;
    start_with(config, executor).await
}

/// Starts the sequencer with `config` on `executor`, without a chain address (HTTP request
/// ids are derived from address zero).
pub async fn start_with(
    config: Config,
    executor: Arc<dyn Executor>,
) -> Result<RunningSequencer, ServiceError> {
    start_node(config, executor, [0; 20]).await
}

/// Starts the sequencer with `config` on `executor`, identifying its HTTP requests under
/// `sequencer`, the address it posts from ([`crate::claim::http_request_id`]).
pub async fn start_node(
    config: Config,
    executor: Arc<dyn Executor>,
    sequencer: [u8; 20],
) -> Result<RunningSequencer, ServiceError> {
    config.validate()?;
    let db_path = config.db.path.clone();
    let db = {
        let path = db_path.clone();
        crate::db::blocking(move || SequencerDb::open(&path).map(|db| db.with_sequencer(sequencer)))
            .await
            .map_err(|source| ServiceError::Db {
                path: db_path.clone(),
                source,
            })?
    };
    let dirs = config.model.dirs.clone();
    let models = tokio::task::spawn_blocking(move || ModelRegistry::load(&dirs))
        .await
        .map_err(|e| ServiceError::Io {
            what: "loading models".into(),
            source: std::io::Error::other(e),
        })??;
    for f in models.families() {
        tracing::info!(
            target: "sequencer",
            model = %f.name,
            alias = %f.alias,
            buckets = ?f.buckets.iter().map(|b| (b.seq_len, b.model.id().to_string())).collect::<Vec<_>>(),
            "model loaded"
        );
    }
    let models = Arc::new(models);
    let metrics = Arc::new(Metrics::new());
    let batcher = Arc::new(Batcher::new(
        db.clone(),
        BatchSettings {
            max_size: config.batch.max_size,
            max_age: config.batch.max_age,
        },
        metrics.clone(),
    ));
    let pool = {
        let (db, metrics, executed) = (db.clone(), metrics.clone(), batcher.executed.clone());
        ExecutionPool::start(
            executor.clone(),
            config.exec.threads,
            config.exec.max_batch,
            config.exec.stack,
            config.exec.store_gather,
            move |done| store_results(&db, &metrics, &executed, done),
        )
        .map_err(|source| ServiceError::Io {
            what: "starting the worker pool".into(),
            source,
        })?
    };
    let pool = Arc::new(pool);
    let (accept_tx, accept_rx) = tokio::sync::mpsc::channel(4096);
    let acceptor = tokio::spawn(run_acceptor(db.clone(), accept_rx));
    let state = Arc::new(AppState {
        db: db.clone(),
        models: models.clone(),
        pool: pool.clone(),
        metrics: metrics.clone(),
        limits: Limits {
            max_body_bytes: config.http.max_body_bytes,
            max_text_bytes: config.http.max_text_bytes,
            queue_limit: config.exec.queue_limit,
            wait_timeout: config.http.wait_timeout,
        },
        accept: accept_tx,
        ready: false.into(),
    });
    let listener = tokio::net::TcpListener::bind(config.http.addr)
        .await
        .map_err(|source| ServiceError::Io {
            what: format!("binding {}", config.http.addr),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServiceError::Io {
        what: "reading the bound address".into(),
        source,
    })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let server = {
        let app = router(state.clone());
        let mut rx = shutdown_rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(target: "sequencer::http", error = %e, "HTTP server failed");
            }
        })
    };
    tracing::info!(target: "sequencer", %addr, backend = executor.backend(), db = %db_path.display(), "listening");

    // Recovery: requests stored but not executed before a restart run again, in order.
    let recovered = {
        let db = db.clone();
        crate::db::blocking(move || db.unexecuted())
            .await
            .map_err(|source| ServiceError::Db {
                path: db_path.clone(),
                source,
            })?
    };
    let mut requeued = 0usize;
    for r in recovered {
        match models.rebuild(&r.model_id, &r.input) {
            Some((model, input)) => {
                if pool
                    .submit(Job {
                        id: r.id,
                        model,
                        input,
                        done: None,
                        request: None,
                    })
                    .is_ok()
                {
                    requeued += 1;
                }
            }
            None => {
                tracing::warn!(target: "sequencer", id = r.id, model_id = %r.model_id, "stored request for a model no longer served; left queued")
            }
        }
    }
    if requeued > 0 {
        tracing::info!(target: "sequencer", requeued, "recovered unexecuted requests");
    }
    metrics.queue_depth.set(pool.depth() as i64);
    state.ready.store(true, Ordering::SeqCst);
    let built = batcher.built.clone();
    let batcher = tokio::spawn(batcher.run(shutdown_rx));
    Ok(RunningSequencer {
        built,
        addr,
        shutdown,
        server,
        batcher,
        acceptor,
        state,
    })
}
