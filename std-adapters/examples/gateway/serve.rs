//! The connection side: serving with timeouts, and the headers sent upstream.

use std::time::Duration;

use axum::Router;

/// The configured upstream headers, `"$NAME"` values read from the environment.
pub(crate) fn upstream_headers(
    configured: &std::collections::BTreeMap<String, String>,
) -> Result<reqwest::header::HeaderMap, Box<dyn std::error::Error>> {
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in configured {
        let value = match value.strip_prefix('$') {
            Some(var) => std::env::var(var)
                .map_err(|_| format!("upstream_headers.{name}: ${var} is not set"))?,
            None => value.clone(),
        };
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("upstream_headers: {name:?}: {e}"))?;
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|e| format!("upstream_headers.{name}: {e}"))?;
        value.set_sensitive(true);
        out.insert(name, value);
    }
    Ok(out)
}

/// Serve `router` with a header-read timeout (which also closes kept-alive
/// connections idle for that long); each request carries its peer's
/// `SocketAddr` as an extension.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The peer's address, for the per-IP limit.
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer);
                req
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(service);
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
}
