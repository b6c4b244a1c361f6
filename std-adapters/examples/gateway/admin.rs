//! The admin side: what an operator reads and does, apart from client
//! traffic. Keep it off the public network.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::reload::{ReloadError, Reloader};

/// The admin listener, bound with the metrics recorder installed: bound
/// before any layer is built, so every layer registers with it.
pub(crate) struct Admin {
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
}

impl Admin {
    pub(crate) async fn bind(addr: SocketAddr) -> Result<Admin, Box<dyn std::error::Error>> {
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Admin { listener, metrics })
    }

    /// Serve Prometheus text at `GET /metrics` and reload the config file
    /// at `POST /admin/reload` (200 and what changed; 400 and why nothing
    /// did; 500 and what was applied when a step after the checks failed).
    pub(crate) fn serve(self, reloader: Arc<Reloader>) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        println!("admin on http://{addr}/metrics");
        println!("config reload: POST http://{addr}/admin/reload (or SIGHUP)");
        let metrics = self.metrics;
        let admin = Router::new()
            .route(
                "/metrics",
                get(move || std::future::ready(metrics.render())),
            )
            .route(
                "/admin/reload",
                post(move || {
                    std::future::ready(match reloader.reload() {
                        Ok(done) => (StatusCode::OK, done + "\n"),
                        Err(e @ ReloadError::Refused(_)) => {
                            (StatusCode::BAD_REQUEST, format!("{e}\n"))
                        }
                        Err(e @ ReloadError::PartlyApplied(_)) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
                        }
                    })
                }),
            );
        tokio::spawn(async move { axum::serve(self.listener, admin).await });
        Ok(())
    }
}
