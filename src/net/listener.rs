//! Accepting Kafka connections on one shard.
//!
//! Every shard binds the Kafka address with SO_REUSEPORT and the kernel spreads incoming
//! connections over them; a connection then lives on the shard that accepted it.

use std::net::SocketAddr;
use std::rc::Rc;

use futures::future::{select, Either};
use glommio::net::TcpListener;

use super::connection;
use crate::cluster::Shard;

/// Binds this shard's listener.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(std::io::Error::from)
}

/// Accepts connections until shutdown, refusing those over this shard's share of
/// `--max-connections`.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let connections_max = shard.config.max_connections.div_ceil(shard.count).max(1);
    loop {
        if shard.shutting_down.get() {
            break;
        }
        let accepted = match select(
            Box::pin(listener.accept()),
            Box::pin(shard.shutdown.notified()),
        )
        .await
        {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => break,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        crate::metrics::registry::count_connection(shard.connections.get() < connections_max);
        if shard.connections.get() >= connections_max {
            tracing::warn!(
                shard = shard.id,
                connections_max,
                "refusing connection: too many open connections on this shard (--max-connections)"
            );
            drop(stream);
            continue;
        }
        shard.connections.set(shard.connections.get() + 1);
        let shard2 = shard.clone();
        glommio::spawn_local(async move {
            connection::serve(shard2.clone(), stream).await;
            shard2.connections.set(shard2.connections.get() - 1);
        })
        .detach();
    }
}

/// The address a listener actually bound (resolves port 0).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
