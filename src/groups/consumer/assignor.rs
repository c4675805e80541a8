//! Server-side assignors of KIP-848 consumer groups (`group.consumer.assignors`): `uniform`
//! (the default; balanced and sticky) and `range` (per topic, contiguous ranges).
//!
//! Both are pure functions of the members' subscriptions, the topics' partition counts and
//! (for `uniform`) the previous target assignment, so the same inputs give the same target
//! on every run.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// A member's partitions: topic id -> partition indexes.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors a group can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `uniform`: every member gets a near-equal share; partitions stay where they
    /// were as long as that keeps the shares balanced.
    Uniform,
    /// Kafka's `range`: each topic's partitions split in contiguous ranges over its
    /// subscribers in member id order.
    Range,
}

impl Assignor {
    /// The assignor a client names (`group.remote.assignor`), if the broker has it.
    pub fn named(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }

    /// The name ConsumerGroupDescribe reports.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// The target assignment of every member. `subscriptions`: member -> subscribed topic
    /// ids; `partitions`: topic id -> partition count; `previous`: the last target.
    pub fn assign(
        self,
        subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
        partitions: &BTreeMap<Uuid, i32>,
        previous: &BTreeMap<String, Assignment>,
    ) -> BTreeMap<String, Assignment> {
        match self {
            Assignor::Uniform => uniform(subscriptions, partitions, previous),
            Assignor::Range => range(subscriptions, partitions),
        }
    }
}

fn range(
    subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (topic, &count) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let (share, extra) = (count / members.len() as i32, count % members.len() as i32);
        let mut next = 0;
        for (i, member) in members.into_iter().enumerate() {
            let n = share + i32::from((i as i32) < extra);
            let set: BTreeSet<i32> = (next..next + n).collect();
            next += n;
            if !set.is_empty() {
                out.entry(member.clone()).or_default().insert(*topic, set);
            }
        }
    }
    out
}

fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
    partitions: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    if subscriptions.is_empty() {
        return out;
    }
    let all: Vec<(Uuid, i32)> = partitions
        .iter()
        .filter(|(t, _)| subscriptions.values().any(|s| s.contains(*t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| (*t, p)))
        .collect();
    let members = subscriptions.len();
    let (quota, extra) = (all.len() / members, all.len() % members);
    let mut counts: BTreeMap<&String, usize> = subscriptions.keys().map(|m| (m, 0)).collect();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    let give = |out: &mut BTreeMap<String, Assignment>, m: &String, tp: (Uuid, i32)| {
        out.entry(m.clone())
            .or_default()
            .entry(tp.0)
            .or_default()
            .insert(tp.1);
    };
    // Sticky: a member keeps up to its quota of what it had (members with the most
    // previous partitions first get the `extra` slots of quota + 1).
    let mut by_previous: Vec<(&String, Vec<(Uuid, i32)>)> = subscriptions
        .iter()
        .map(|(m, topics)| {
            let kept: Vec<(Uuid, i32)> = previous
                .get(m)
                .into_iter()
                .flat_map(|a| a.iter())
                .filter(|(t, _)| topics.contains(*t))
                .flat_map(|(t, ps)| {
                    let count = partitions.get(t).copied().unwrap_or(0);
                    ps.iter()
                        .filter(move |p| **p < count)
                        .map(move |p| (*t, *p))
                })
                .collect();
            (m, kept)
        })
        .collect();
    by_previous.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let mut extra_left = extra;
    for (m, kept) in &by_previous {
        let mut limit = quota;
        if extra_left > 0 && kept.len() > quota {
            limit += 1;
            extra_left -= 1;
        }
        for tp in kept.iter().take(limit) {
            if taken.insert(*tp) {
                give(&mut out, m, *tp);
                *counts.entry(m).or_default() += 1;
            }
        }
    }
    // The rest goes to the subscribed member with the fewest partitions (ties by id), so
    // shares never differ by more than one where subscriptions allow it.
    for tp in all {
        if taken.contains(&tp) {
            continue;
        }
        let target = counts
            .iter()
            .filter(|(m, _)| subscriptions.get(**m).is_some_and(|s| s.contains(&tp.0)))
            .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))
            .map(|(m, _)| (*m).clone());
        if let Some(m) = target {
            taken.insert(tp);
            give(&mut out, &m, tp);
            if let Some(c) = counts.get_mut(&m) {
                *c += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn subs(members: &[(&str, &[u128])]) -> BTreeMap<String, BTreeSet<Uuid>> {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| topic(*t)).collect()))
            .collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|s| s.len()).sum()
    }

    #[test]
    fn uniform_balances_and_keeps_partitions_where_they_were() {
        let parts: BTreeMap<Uuid, i32> = [(topic(1), 4)].into_iter().collect();
        let one = Assignor::Uniform.assign(&subs(&[("a", &[1])]), &parts, &BTreeMap::new());
        assert_eq!(count(&one["a"]), 4);
        let two = Assignor::Uniform.assign(&subs(&[("a", &[1]), ("b", &[1])]), &parts, &one);
        assert_eq!((count(&two["a"]), count(&two["b"])), (2, 2));
        // a keeps two of its own: only two partitions move.
        assert!(two["a"][&topic(1)].is_subset(&one["a"][&topic(1)]));
        let three = Assignor::Uniform.assign(
            &subs(&[("a", &[1]), ("b", &[1]), ("c", &[1])]),
            &parts,
            &two,
        );
        let counts: Vec<usize> = three.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 4);
        assert!(counts.iter().all(|c| (1..=2).contains(c)), "{counts:?}");
        // b leaves: a takes everything back.
        let back = Assignor::Uniform.assign(&subs(&[("a", &[1])]), &parts, &three);
        assert_eq!(count(&back["a"]), 4);
    }

    #[test]
    fn uniform_gives_a_topic_only_to_its_subscribers() {
        let parts: BTreeMap<Uuid, i32> = [(topic(1), 2), (topic(2), 2)].into_iter().collect();
        let out = Assignor::Uniform.assign(
            &subs(&[("a", &[1]), ("b", &[1, 2])]),
            &parts,
            &BTreeMap::new(),
        );
        assert!(!out["a"].contains_key(&topic(2)));
        assert_eq!(out["b"][&topic(2)].len(), 2);
        assert_eq!(count(&out["a"]) + count(&out["b"]), 4);
    }

    #[test]
    fn range_splits_each_topic_in_contiguous_ranges() {
        let parts: BTreeMap<Uuid, i32> = [(topic(1), 5)].into_iter().collect();
        let out =
            Assignor::Range.assign(&subs(&[("a", &[1]), ("b", &[1])]), &parts, &BTreeMap::new());
        assert_eq!(
            out["a"][&topic(1)],
            [0, 1, 2].into_iter().collect::<BTreeSet<_>>()
        );
        assert_eq!(
            out["b"][&topic(1)],
            [3, 4].into_iter().collect::<BTreeSet<_>>()
        );
    }
}
