//! Accepting connections: HTTP/1.1 through hyper with a deadline for each request's
//! headers (which is also how long an idle connection stays open) and a cap on open
//! connections; a connection over the cap is answered 503 at once and closed. Without
//! these a client that sends half a request holds its connection, and its memory, forever.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::metrics::Metrics;

/// How connections are limited.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, from the moment the connection is ready
    /// for them (so also an idle keep-alive connection's life).
    pub header_timeout: Duration,
}

/// Most bytes of a request's headers (more: 431), and of a connection's read buffer.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Refused connections being answered at once; beyond that they are closed unanswered.
const MAX_REFUSALS: usize = 64;

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections
/// finish what they are doing and waits for them.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of
                    // spinning; a connection that failed while being accepted is gone.
                    tracing::warn!(target: "medllm::serve", "accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            if let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let metrics = Arc::clone(&metrics);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            metrics.connections_open.fetch_add(1, Ordering::Relaxed);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(MAX_HEADER_BYTES)
                .max_buf_size(MAX_HEADER_BYTES);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
            metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    // Every connection task holds a receiver; all gone means all finished.
    stop_tx.closed().await;
    Ok(())
}

/// Answers a connection over the cap with 503 and closes it. What the client already sent
/// is read (a little, briefly) first: closing on unread data resets the connection, which
/// can lose the answer.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":{"message":"the server has too many open connections; retry later","type":"overloaded_error","code":503}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 2\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < MAX_HEADER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
