//! The topic controller: the one place topics are created, deleted, grown and configured.
//!
//! It runs on shard 0. Each operation builds a new metadata image from the current one,
//! persists it, and installs it on every shard (which opens or removes partitions) before it
//! answers, so a client that saw "created" can produce to every partition at once.
//! Operations are serialised by a semaphore so images are applied in order.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::image::{MetadataImage, TopicMeta};
use super::store;
use crate::cluster::Shard;
use crate::partition::topic_config::validate_entry;

/// Kafka's longest topic name.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// A refusal with its Kafka error code and a message for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    /// The Kafka error.
    pub error: ResponseError,
    /// A human-readable reason, returned in `error_message` where the API has one.
    pub message: String,
}

impl OpError {
    fn new(error: ResponseError, message: impl Into<String>) -> OpError {
        OpError {
            error,
            message: message.into(),
        }
    }
}

/// A topic to create, as CreateTopics (or auto-creation) describes it.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// Partitions; -1 means the broker default.
    pub partitions: i32,
    /// Replication factor; -1 means the default (1 on a single node).
    pub replication_factor: i16,
    /// Explicit configs.
    pub configs: BTreeMap<String, String>,
    /// Whether this is an internal topic.
    pub internal: bool,
}

/// A config change for one topic (AlterConfigs replaces; Incremental edits).
#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// Replace all explicit configs with these (AlterConfigs).
    Replace(BTreeMap<String, String>),
    /// Set (Some) or delete (None) individual keys (IncrementalAlterConfigs SET/DELETE).
    Edit(Vec<(String, Option<String>)>),
}

/// Serialises metadata changes on shard 0.
pub struct Controller {
    lock: Semaphore,
}

impl Default for Controller {
    fn default() -> Self {
        Controller::new()
    }
}

/// Creates an internal, compacted topic (`__consumer_offsets`, `__transaction_state`) on
/// first use, as Kafka does, and returns its partition count.
pub async fn ensure_internal_topic(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    segment_bytes: u64,
) -> Result<i32, OpError> {
    if let Some(t) = shard.image().topic(name) {
        return Ok(t.partitions);
    }
    let configs = BTreeMap::from([
        // Compacted only: retention never deletes group or transaction state.
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), segment_bytes.to_string()),
    ]);
    let topic = NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor: -1,
        configs,
        internal: true,
    };
    for result in Controller::create_topics(shard, vec![topic], false).await? {
        match result {
            Ok(t) => tracing::info!(
                topic = name,
                partitions = t.partitions,
                "created internal topic"
            ),
            Err(e) if e.error == ResponseError::TopicAlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    shard
        .image()
        .topic(name)
        .map(|t| t.partitions)
        .ok_or_else(|| {
            OpError::new(
                ResponseError::UnknownServerError,
                format!("{name} is not in the metadata image after creation"),
            )
        })
}

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), OpError> {
    let bad = |why: &str| {
        Err(OpError::new(
            ResponseError::InvalidTopicException,
            format!("Topic name \"{name}\" is illegal, {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it can't be empty");
    }
    if name == "." || name == ".." {
        return bad("it can't be \".\" or \"..\"");
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return bad("it can't be longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

impl Controller {
    /// A controller with no operation running.
    pub fn new() -> Controller {
        Controller {
            lock: Semaphore::new(1),
        }
    }

    /// Creates topics; one result per input, in order.
    pub async fn create_topics(
        shard: &Rc<Shard>,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<Result<Arc<TopicMeta>, OpError>>, OpError> {
        Self::change(shard, validate_only, move |image, default_partitions| {
            topics
                .into_iter()
                .map(|t| create_one(image, t, default_partitions))
                .collect()
        })
        .await
    }

    /// Deletes topics by name; one result per input, in order (the deleted topic's id).
    pub async fn delete_topics(
        shard: &Rc<Shard>,
        names: Vec<String>,
    ) -> Result<Vec<Result<Uuid, OpError>>, OpError> {
        Self::change(shard, false, move |image, _| {
            names
                .into_iter()
                .map(|name| match image.topics.remove(&name) {
                    Some(t) if t.internal => {
                        image.topics.insert(name.clone(), t);
                        Err(OpError::new(
                            ResponseError::InvalidTopicException,
                            "internal topics cannot be deleted",
                        ))
                    }
                    Some(t) => Ok(t.id),
                    None => Err(OpError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    )),
                })
                .collect()
        })
        .await
    }

    /// Grows topics to a new partition count (CreatePartitions).
    pub async fn create_partitions(
        shard: &Rc<Shard>,
        requests: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), OpError>>, OpError> {
        Self::change(shard, validate_only, move |image, _| {
            requests
                .into_iter()
                .map(|(name, count)| {
                    let topic = image.topics.get(&name).ok_or_else(|| {
                        OpError::new(
                            ResponseError::UnknownTopicOrPartition,
                            format!("topic {name} does not exist"),
                        )
                    })?;
                    if count <= topic.partitions {
                        return Err(OpError::new(
                            ResponseError::InvalidPartitions,
                            format!(
                                "Topic currently has {} partitions, which is higher than or equal to the requested {count}.",
                                topic.partitions
                            ),
                        ));
                    }
                    let mut grown = (**topic).clone();
                    grown.partitions = count;
                    image.topics.insert(name, Arc::new(grown));
                    Ok(())
                })
                .collect()
        })
        .await
    }

    /// Changes the configs of topics.
    pub async fn alter_configs(
        shard: &Rc<Shard>,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), OpError>>, OpError> {
        Self::change(shard, validate_only, move |image, _| {
            changes
                .into_iter()
                .map(|(name, change)| alter_one(image, &name, change))
                .collect()
        })
        .await
    }

    /// Reserves `count` producer ids and returns the first; persisted before it returns,
    /// so no id is ever given out twice.
    pub async fn allocate_producer_ids(shard: &Rc<Shard>, count: i64) -> Result<i64, OpError> {
        let starts = Self::change(shard, false, move |image, _| {
            let start = image.next_producer_id;
            image.next_producer_id = start + count;
            vec![start]
        })
        .await?;
        starts
            .into_iter()
            .next()
            .ok_or_else(|| OpError::new(ResponseError::UnknownServerError, "no producer id block"))
    }

    /// Runs `edit` on a copy of the image; if anything changed and this is not a dry run,
    /// persists it and installs it on every shard before returning the results.
    async fn change<T: Send + 'static>(
        shard: &Rc<Shard>,
        validate_only: bool,
        edit: impl FnOnce(&mut MetadataImage, i32) -> Vec<T> + Send + 'static,
    ) -> Result<Vec<T>, OpError> {
        let default_partitions = shard.config.default_partitions;
        let data_dir = shard.config.data_dir.clone();
        let result = shard
            .invoke_on(0, move |shard0| async move {
                let Some(controller) = shard0.controller.as_ref() else {
                    return Err(String::from("shard 0 has no controller"));
                };
                let Ok(_permit) = controller.lock.acquire_permit(1).await else {
                    return Err(String::from("controller is closed"));
                };
                let current = shard0.image();
                let mut next = (*current).clone();
                let results = edit(&mut next, default_partitions);
                if validate_only || next == *current {
                    return Ok(results);
                }
                next.version = current.version + 1;
                let next = Arc::new(next);
                let to_save = next.clone();
                let saved = glommio::executor()
                    .spawn_blocking(move || store::save(&data_dir, &to_save))
                    .await;
                if let Err(e) = saved {
                    tracing::error!(error = %e, "persisting metadata failed; change not applied");
                    return Err(e.to_string());
                }
                // Two phases: every shard opens its partitions of the new image, then every
                // shard publishes it. A shard that shows a partition to a request thus never
                // routes it to an owner still opening it.
                for target in 0..shard0.count {
                    let image = next.clone();
                    let opened = shard0
                        .invoke_on(target, move |s| async move {
                            s.open_partitions_for(&image)
                                .await
                                .map_err(|e| e.to_string())
                        })
                        .await;
                    match opened {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(shard = target, error = %e, "installing metadata")
                        }
                        Err(e) => {
                            tracing::error!(shard = target, error = %e, "installing metadata")
                        }
                    }
                }
                for target in 0..shard0.count {
                    let image = next.clone();
                    let published = shard0
                        .invoke_on(target, move |s| async move { s.publish_image(image) })
                        .await;
                    if let Err(e) = published {
                        tracing::error!(shard = target, error = %e, "publishing metadata");
                    }
                }
                Ok(results)
            })
            .await;
        match result {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(message)) => {
                tracing::error!(%message, "metadata change failed");
                Err(OpError::new(ResponseError::UnknownServerError, message))
            }
            Err(e) => {
                tracing::error!(error = %e, "controller unreachable");
                Err(OpError::new(
                    ResponseError::CoordinatorNotAvailable,
                    e.to_string(),
                ))
            }
        }
    }
}

fn create_one(
    image: &mut MetadataImage,
    t: NewTopic,
    default_partitions: i32,
) -> Result<Arc<TopicMeta>, OpError> {
    validate_topic_name(&t.name)?;
    if image.topics.contains_key(&t.name) {
        return Err(OpError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", t.name),
        ));
    }
    let partitions = if t.partitions == -1 {
        default_partitions
    } else {
        t.partitions
    };
    if partitions <= 0 {
        return Err(OpError::new(
            ResponseError::InvalidPartitions,
            "Number of partitions must be larger than 0.",
        ));
    }
    if t.replication_factor != -1 && t.replication_factor != 1 {
        return Err(OpError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Replication factor: {} larger than available brokers: 1.",
                t.replication_factor
            ),
        ));
    }
    for (key, value) in &t.configs {
        validate_entry(key, value)
            .map_err(|e| OpError::new(ResponseError::InvalidConfig, e.to_string()))?;
    }
    let meta = Arc::new(TopicMeta {
        name: t.name.clone(),
        id: Uuid::new_v4(),
        partitions,
        configs: t.configs,
        internal: t.internal,
    });
    image.topics.insert(t.name, meta.clone());
    Ok(meta)
}

fn alter_one(image: &mut MetadataImage, name: &str, change: ConfigChange) -> Result<(), OpError> {
    let topic = image.topics.get(name).ok_or_else(|| {
        OpError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        )
    })?;
    let invalid = |e: crate::partition::topic_config::ConfigError| {
        OpError::new(ResponseError::InvalidConfig, e.to_string())
    };
    let configs = match change {
        ConfigChange::Replace(configs) => {
            for (k, v) in &configs {
                validate_entry(k, v).map_err(invalid)?;
            }
            configs
        }
        ConfigChange::Edit(edits) => {
            let mut configs = topic.configs.clone();
            for (k, v) in edits {
                match v {
                    Some(v) => {
                        validate_entry(&k, &v).map_err(invalid)?;
                        configs.insert(k, v);
                    }
                    None => {
                        if crate::partition::topic_config::config_def(&k).is_none() {
                            return Err(invalid(
                                crate::partition::topic_config::ConfigError::UnknownKey(k),
                            ));
                        }
                        configs.remove(&k);
                    }
                }
            }
            configs
        }
    };
    let mut changed = (**topic).clone();
    changed.configs = configs;
    image.topics.insert(name.to_string(), Arc::new(changed));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            configs: BTreeMap::new(),
            internal: false,
        }
    }

    #[test]
    fn create_checks_name_partitions_replication_and_duplicates() {
        let mut image = MetadataImage::default();
        assert!(create_one(&mut image, new_topic("orders", -1, -1), 3).is_ok());
        assert_eq!(image.topics["orders"].partitions, 3);
        let dup = create_one(&mut image, new_topic("orders", 1, 1), 3).unwrap_err();
        assert_eq!(dup.error, ResponseError::TopicAlreadyExists);
        let rf = create_one(&mut image, new_topic("rf3", 1, 3), 3).unwrap_err();
        assert_eq!(rf.error, ResponseError::InvalidReplicationFactor);
        let bad = create_one(&mut image, new_topic("a/b", 1, 1), 3).unwrap_err();
        assert_eq!(bad.error, ResponseError::InvalidTopicException);
        let zero = create_one(&mut image, new_topic("zero", 0, 1), 3).unwrap_err();
        assert_eq!(zero.error, ResponseError::InvalidPartitions);
    }

    #[test]
    fn incremental_edits_keep_other_keys() {
        let mut image = MetadataImage::default();
        let mut t = new_topic("t", 1, 1);
        t.configs.insert("retention.ms".into(), "1000".into());
        create_one(&mut image, t, 1).unwrap();
        alter_one(
            &mut image,
            "t",
            ConfigChange::Edit(vec![("segment.bytes".into(), Some("1048576".into()))]),
        )
        .unwrap();
        assert_eq!(image.topics["t"].configs.len(), 2);
        alter_one(
            &mut image,
            "t",
            ConfigChange::Edit(vec![("retention.ms".into(), None)]),
        )
        .unwrap();
        assert_eq!(image.topics["t"].configs.len(), 1);
        let err = alter_one(
            &mut image,
            "t",
            ConfigChange::Replace([("bogus".to_string(), "1".to_string())].into()),
        )
        .unwrap_err();
        assert_eq!(err.error, ResponseError::InvalidConfig);
    }
}
