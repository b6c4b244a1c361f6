//! The admin side: what an operator reads, apart from client traffic.

use std::net::SocketAddr;

use axum::Router;

/// The admin side: Prometheus text at `/metrics`. The recorder is
/// installed before any layer is built, so every layer registers with it.
pub(crate) async fn admin(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("admin on http://{}/metrics", listener.local_addr()?);
    let admin = Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { m.render() }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, admin).await });
    Ok(())
}
