//! One client connection: read frames, run requests concurrently, answer in request order.
//!
//! The reader decodes each frame and spawns its handler as a local task; the task handle goes
//! into a bounded queue that the writer drains in order, so responses leave in the order the
//! requests arrived however the handlers interleave. The queue bound is the per-connection
//! pipelining limit: a client that sends faster than the broker answers is slowed by TCP.

use std::rc::Rc;

use bytes::Bytes;
use futures::future::{select, Either};
use futures::io::{AsyncWrite, AsyncWriteExt, BufReader};
use futures::AsyncReadExt;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use super::frame::read_frame;
use crate::cluster::Shard;
use crate::kafka::{self, Decoded};

/// Requests one connection may have in flight before the broker stops reading from it.
pub const PIPELINE_DEPTH_MAX: usize = 128;
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Serves a connection until the client closes it, sends something unparseable, or the
/// broker shuts down.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| String::from("?"));
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.split();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let (queue, responses) = local_channel::new_bounded(PIPELINE_DEPTH_MAX);
    let writer_task = glommio::spawn_local(write_responses(shard.clone(), writer, responses));
    let limit_bytes = shard.config.max_request_bytes;
    loop {
        if shard.shutting_down.get() {
            break;
        }
        let frame = {
            let read = Box::pin(read_frame(&mut reader, limit_bytes));
            match select(read, Box::pin(shard.shutdown.notified())).await {
                Either::Left((frame, _)) => frame,
                Either::Right(_) => break,
            }
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(%peer, error = %e, "closing connection");
                break;
            }
        };
        let request = match kafka::decode(frame) {
            Ok(Decoded::Request(request)) => request,
            Ok(Decoded::Answer(bytes)) => {
                // Answered without a handler (ApiVersions with a version we do not know).
                shard.request_started();
                let task = glommio::spawn_local(async move { Some(bytes) }).detach();
                if queue.send(task).await.is_err() {
                    break;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection after a bad request");
                break;
            }
        };
        shard.request_started();
        let task = glommio::spawn_local(kafka::handle(shard.clone(), *request)).detach();
        if queue.send(task).await.is_err() {
            break;
        }
        // A client pipelining many frames from one read buffer must not keep the shard from
        // its other connections and the commit pipeline past the preemption budget.
        glommio::yield_if_needed().await;
    }
    drop(queue);
    let _ = writer_task.await;
}

/// Writes each response when its turn comes. After a write error the remaining requests
/// still run to completion (they may have been appended), but their answers are dropped.
async fn write_responses<W: AsyncWrite + Unpin>(
    shard: Rc<Shard>,
    mut writer: W,
    responses: LocalReceiver<JoinHandle<Option<Bytes>>>,
) {
    let mut healthy = true;
    while let Some(task) = responses.recv().await {
        let response = task.await.flatten();
        shard.request_done();
        if let (true, Some(bytes)) = (healthy, response) {
            let started = std::time::Instant::now();
            if let Err(e) = writer.write_all(&bytes).await {
                tracing::debug!(error = %e, "client went away before its response");
                healthy = false;
            }
            crate::metrics::record(crate::metrics::Stage::ResponseWrite, started.elapsed());
        }
    }
    let _ = writer.close().await;
}
