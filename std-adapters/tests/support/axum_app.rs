//! An axum app served on a free loopback port with each request's peer
//! address (`ConnectInfo`).

use std::net::SocketAddr;

use axum::Router;

/// Serve `app` on 127.0.0.1 with connect info; its base URL.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}
