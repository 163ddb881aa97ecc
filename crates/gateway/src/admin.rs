//! The admin listener, off the data plane: `GET /metrics` (Prometheus),
//! `GET /status`, `GET /status/ready` (503 while draining) and
//! `POST /reload`; and [`ConfigSource`], the one way a configuration is
//! read again, whether SIGHUP or `POST /reload` asks.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::net::TcpListener;

use crate::config::{Config, ConfigErrors};
use crate::metrics::Metrics;
use crate::plugin::Registry;
use crate::Reloader;
use frameway::sync::lock;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The gateway runs the built-in configuration: there is no file.
    #[error("the built-in configuration has no file to reload")]
    NoFile,
    /// The file has errors; the running configuration stays.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// Loading stopped on a bug (a panic, logged); the running
    /// configuration stays.
    #[error("the configuration could not be loaded (a bug; see the log)")]
    Aborted,
}

/// The result of the last reload, for `/status`.
#[derive(Debug, Clone)]
struct LastReload {
    at: SystemTime,
    result: Result<(), String>,
}

/// Where the running configuration came from, and how to read it again.
pub struct ConfigSource {
    path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    reloader: Reloader,
    metrics: Arc<Metrics>,
    /// SHA-1 of the file in force, and the last reload.
    state: Mutex<(Option<String>, Option<LastReload>)>,
}

impl ConfigSource {
    /// The configuration of `path` (`None`: the built-in one), with
    /// `listen` replacing its plain listeners when given (the CLI's
    /// `--listen`), applied through `reloader`.
    pub fn new(
        path: Option<PathBuf>,
        listen: Option<SocketAddr>,
        reloader: Reloader,
        metrics: Arc<Metrics>,
    ) -> ConfigSource {
        let hash = path.as_deref().and_then(file_hash);
        ConfigSource {
            path,
            listen,
            reloader,
            metrics,
            state: Mutex::new((hash, None)),
        }
    }

    /// Reads the file again: a valid one serves every connection accepted
    /// from now on (open ones keep theirs) and the listeners follow it; an
    /// invalid one is refused with every error, and the running
    /// configuration stays. Logged and counted either way.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let Some(path) = &self.path else {
            tracing::warn!("reload: the built-in configuration has no file to reload");
            return Err(ReloadError::NoFile);
        };
        let result = match Config::load(path, &Registry::with_builtins()) {
            Ok(mut config) => {
                if let Some(addr) = self.listen {
                    config.listen = vec![addr];
                }
                tracing::info!(
                    file = %path.display(),
                    "configuration reloaded: new connections use it"
                );
                self.reloader.reload(config);
                Ok(())
            }
            Err(errors) => {
                tracing::error!(
                    file = %path.display(),
                    "reload refused, the running configuration stays:\n{errors}"
                );
                Err(ReloadError::Invalid(errors))
            }
        };
        self.metrics.reloaded(result.is_ok());
        let mut state = lock(&self.state);
        if result.is_ok() {
            state.0 = file_hash(path);
        }
        state.1 = Some(LastReload {
            at: SystemTime::now(),
            result: result.as_ref().map(|_| ()).map_err(ToString::to_string),
        });
        result
    }

    /// [`Self::reload`] on tokio's blocking pool: reading the file, loading
    /// Lua plugins and resolving upstream host names must not stall the
    /// worker whose runtime serves the admin listener and the signals.
    pub async fn reload_off_the_worker(self: &Arc<Self>) -> Result<(), ReloadError> {
        let source = self.clone();
        match tokio::task::spawn_blocking(move || source.reload()).await {
            Ok(result) => result,
            Err(panicked) => {
                tracing::error!("reload aborted, the running configuration stays: {panicked}");
                Err(ReloadError::Aborted)
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let state = lock(&self.state);
        let last_reload = state.1.as_ref().map(|last| {
            let at = last
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match &last.result {
                Ok(()) => serde_json::json!({ "at": at, "result": "ok" }),
                Err(errors) => serde_json::json!({ "at": at, "result": "error", "errors": errors }),
            }
        });
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.metrics.uptime().as_secs(),
            "workers": self.metrics.workers(),
            "open_connections": self.metrics.open_connections(),
            "draining": self.metrics.is_draining(),
            "config_file": self.path.as_ref().map(|p| p.display().to_string()),
            "config_sha1": state.0,
            "last_reload": last_reload,
        })
    }
}

fn file_hash(path: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let mut hex = String::with_capacity(40);
    for byte in Sha1::digest(bytes) {
        let _ = write!(hex, "{byte:02x}");
    }
    Some(hex)
}

/// Serves the admin endpoints on `listener` until the process ends.
pub async fn serve(listener: TcpListener, source: Arc<ConfigSource>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let source = source.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let source = source.clone();
                async move { Ok::<_, Infallible>(answer(&source, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(err) = conn.await {
                tracing::debug!("admin connection: {err}");
            }
        });
    }
}

async fn answer(source: &Arc<ConfigSource>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| reply(status, "text/plain; charset=utf-8", body);
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            source.metrics.render()
                + &crate::balancer::render_metrics(&source.reloader.current().upstreams),
        ),
        (&Method::GET, "/upstreams") => {
            let config = source.reloader.current();
            let pools: Vec<serde_json::Value> =
                config.upstreams.iter().map(|pool| pool.status()).collect();
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "upstreams": pools }).to_string(),
            )
        }
        (&Method::GET, "/status") => reply(
            StatusCode::OK,
            "application/json",
            source.status().to_string(),
        ),
        (&Method::GET, "/status/ready") if source.metrics.is_draining() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
        }
        (&Method::GET, "/status/ready") => text(StatusCode::OK, "ready\n".into()),
        (&Method::POST, "/reload") => match source.reload_off_the_worker().await {
            Ok(()) => text(StatusCode::OK, "reloaded\n".into()),
            Err(err @ ReloadError::NoFile) => text(StatusCode::CONFLICT, format!("{err}\n")),
            Err(err @ ReloadError::Aborted) => {
                text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n"))
            }
            Err(err) => text(StatusCode::UNPROCESSABLE_ENTITY, format!("{err}\n")),
        },
        (_, "/metrics" | "/status" | "/status/ready" | "/reload" | "/upstreams") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        ),
        (_, path) => text(StatusCode::NOT_FOUND, format!("no admin endpoint {path}\n")),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
