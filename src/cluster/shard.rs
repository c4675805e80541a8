//! One shard: the state a core owns, reached only from that core's executor.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::Senders;

use super::mesh::ShardMsg;
use crate::cluster::controller::Controller;
use crate::cluster::partitions::PartitionTable;
use crate::cluster::services::Services;
use crate::cluster::MetadataImage;
use crate::config::Config;
use crate::util::sync::{Notify, PeerBarrier};

/// Everything one core owns. Held as `Rc<Shard>` by the tasks of that core only.
pub struct Shard {
    /// This shard's index, 0..count.
    pub id: usize,
    /// How many shards run.
    pub count: usize,
    /// The broker configuration (immutable after start).
    pub config: Arc<Config>,
    /// The partitions this shard owns.
    pub partitions: PartitionTable,
    /// The topic controller; present on shard 0 only.
    pub controller: Option<Controller>,
    senders: Senders<ShardMsg>,
    image: RefCell<Arc<MetadataImage>>,
    /// Set when the broker is shutting down: stop accepting and reading requests.
    pub shutting_down: Cell<bool>,
    /// Notified when shutdown starts.
    pub shutdown: Notify,
    /// Requests accepted but not yet answered on this shard's connections.
    pub requests_in_flight: Cell<usize>,
    /// Notified whenever `requests_in_flight` drops to zero.
    pub requests_drained: Notify,
    /// Open client connections on this shard.
    pub connections: Cell<usize>,
    /// This shard's unused producer ids.
    pub producer_ids: crate::cluster::producer_ids::ProducerIdBlock,
    /// Peers that finished recovery (nobody serves before everyone has).
    pub peers_ready: PeerBarrier,
    /// Peers that finished draining at shutdown.
    pub peers_drained: PeerBarrier,
    /// Per-shard services of the layers above cluster, one per type; see [`Shard::service`].
    services: Services,
}

impl Shard {
    /// Builds a shard's state; `senders` is this shard's side of the mesh.
    pub fn new(
        id: usize,
        count: usize,
        config: Arc<Config>,
        senders: Senders<ShardMsg>,
        image: Arc<MetadataImage>,
    ) -> Shard {
        let controller = (id == 0).then(Controller::new);
        Shard {
            id,
            count,
            config,
            partitions: PartitionTable::default(),
            controller,
            senders,
            image: RefCell::new(image),
            shutting_down: Cell::new(false),
            shutdown: Notify::default(),
            requests_in_flight: Cell::new(0),
            requests_drained: Notify::default(),
            connections: Cell::new(0),
            producer_ids: Default::default(),
            peers_ready: Default::default(),
            peers_drained: Default::default(),
            services: Services::default(),
        }
    }

    /// This shard's instance of a service of the layers above cluster (the group and
    /// transaction coordinator hosts), created by `init` on first use. Keeping it here rather
    /// than in a thread-local ties its life to the shard's; only this shard's tasks see it.
    pub fn service<T: 'static>(&self, init: impl FnOnce() -> T) -> Rc<T> {
        self.services.get_or_init(init)
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Installs a newer image on this shard alone: its partitions first, then the image
    /// requests see (start-up, where a barrier keeps clients out until every shard is done).
    pub async fn install_image(
        &self,
        image: Arc<MetadataImage>,
    ) -> Result<(), crate::raft::ReplicateError> {
        self.open_partitions_for(&image).await?;
        self.publish_image(image);
        Ok(())
    }

    /// Brings this shard's partitions in line with `image` (opens new ones, closes removed
    /// ones) without showing `image` to requests yet. The controller runs this on every
    /// shard before any shard publishes the image, so a request routed by a published
    /// image always finds its partition open on the owner shard.
    pub async fn open_partitions_for(
        &self,
        image: &MetadataImage,
    ) -> Result<(), crate::raft::ReplicateError> {
        if image.version < self.image.borrow().version {
            return Ok(());
        }
        self.partitions
            .apply(
                image,
                &self.config.data_dir,
                self.id,
                self.count,
                self.cache_budget_bytes(),
            )
            .await
    }

    /// Makes `image` the one requests on this shard see (an older one is ignored).
    pub fn publish_image(&self, image: Arc<MetadataImage>) {
        if image.version >= self.image.borrow().version {
            *self.image.borrow_mut() = image;
        }
    }

    /// The tail-cache budget per partition: a quarter of the shard's memory split over its
    /// partitions, at least 1 MiB.
    pub fn cache_budget_bytes(&self) -> usize {
        let quarter = (self.config.memory_per_shard_bytes / 4) as usize;
        (quarter / self.partitions.len().max(16)).max(1 << 20)
    }

    /// The shard owning a partition.
    pub fn owner_of(&self, topic: &str, partition: i32) -> usize {
        crate::cluster::shard_for(topic, partition, self.count)
    }

    pub(super) fn mesh_senders(&self) -> &Senders<ShardMsg> {
        &self.senders
    }

    pub(super) fn record_hop(&self, elapsed: Duration) {
        crate::metrics::record(crate::metrics::Stage::MeshRoundTrip, elapsed);
    }

    /// This shard's metrics with its gauges (connections, partitions), for a scrape.
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        let mut snapshot = crate::metrics::registry::snapshot();
        snapshot.connections_open = self.connections.get() as u64;
        snapshot.requests_in_flight = self.requests_in_flight.get() as u64;
        snapshot.partitions = self
            .partitions
            .all()
            .iter()
            .map(|p| crate::metrics::registry::PartitionGauge {
                topic: p.topic.to_string(),
                partition: p.index,
                shard: self.id,
                size_bytes: p.size_bytes(),
                log_start_offset: p.log_start_offset().get(),
                high_watermark: p.high_watermark().get(),
                log_end_offset: p.log_end_offset().get(),
                leader_epoch: p.leader_epoch().get(),
                offline: p.offline_reason(),
            })
            .collect();
        snapshot.partitions_per_shard = vec![snapshot.partitions.len() as u64];
        snapshot
    }

    /// Marks one request as started; pair with [`Shard::request_done`].
    pub fn request_started(&self) {
        self.requests_in_flight
            .set(self.requests_in_flight.get() + 1);
    }

    /// Marks one request as answered.
    pub fn request_done(&self) {
        let left = self.requests_in_flight.get().saturating_sub(1);
        self.requests_in_flight.set(left);
        if left == 0 {
            self.requests_drained.notify_all();
        }
    }

    /// Starts shutdown on this shard: listeners and connections stop taking requests.
    pub fn begin_shutdown(&self) {
        if !self.shutting_down.replace(true) {
            self.shutdown.notify_all();
        }
    }
}
