//! Balancing plans: which partitions to move so that every live broker
//! holds about as many replicas, and leads about as many partitions, as the
//! others, and about as many bytes where partition sizes are known (what
//! the brokers last reported), keeping a partition's replicas on distinct
//! racks where the brokers have racks. Pure: the plan is carried out
//! through partition reassignment (`runnelctl cluster rebalance`, `broker
//! decommission`).

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{MetadataImage, NodeId};

/// One partition's move: its replicas now, and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<NodeId>,
    pub to: Vec<NodeId>,
}

/// Replicas, preferred leaderships and bytes per broker, for a plan's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    pub replicas: usize,
    pub leaders: usize,
    /// The reported sizes of its replicas' partitions.
    pub bytes: u64,
}

/// A partition: its topic and index.
pub type PartitionKey = (String, i32);

/// Bytes of one replica of each partition, as the brokers last reported;
/// a partition without a report counts as empty.
pub type Sizes = BTreeMap<PartitionKey, u64>;

/// One broker's report of one partition log's bytes.
pub type Reported = (NodeId, (String, i32), u64);

/// Each partition's size from the brokers' reports: its largest replica's.
pub fn partition_sizes(reports: &[Reported]) -> Sizes {
    let mut out = Sizes::new();
    for (_, key, bytes) in reports {
        let e = out.entry(key.clone()).or_default();
        *e = (*e).max(*bytes);
    }
    out
}

/// The bytes each broker reported holding.
pub fn broker_bytes(reports: &[Reported]) -> BTreeMap<NodeId, u64> {
    let mut out = BTreeMap::new();
    for (id, _, bytes) in reports {
        *out.entry(*id).or_default() += bytes;
    }
    out
}

/// Byte balancing stops once the fullest and the emptiest broker differ by
/// at most this fraction of the mean: closer is not worth copying for.
const BYTES_TOLERANCE: f64 = 0.1;

/// A plan and the load per broker before and after it.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub moves: Vec<Move>,
    pub before: BTreeMap<NodeId, Load>,
    pub after: BTreeMap<NodeId, Load>,
}

fn load(assignment: &BTreeMap<(String, i32), Vec<NodeId>>, brokers: &BTreeSet<NodeId>, sizes: &Sizes) -> BTreeMap<NodeId, Load> {
    let mut out: BTreeMap<NodeId, Load> = brokers.iter().map(|b| (*b, Load::default())).collect();
    for (key, replicas) in assignment {
        let bytes = sizes.get(key).copied().unwrap_or(0);
        for (i, r) in replicas.iter().enumerate() {
            let l = out.entry(*r).or_default();
            l.replicas += 1;
            l.bytes += bytes;
            if i == 0 {
                l.leaders += 1;
            }
        }
    }
    out
}

/// Plans moves that take every replica off `excluded` brokers and even out
/// replicas, bytes (by `sizes`) and preferred leaders over the other live
/// brokers. Partitions with a move in progress are left alone, and so are
/// partitions with a replica on a fenced broker that is not excluded: it
/// may be restarting, and a plan made while it is away would empty it
/// (a broker gone for good is excluded: `broker decommission`, or the
/// automatic mode after its grace period).
pub fn plan(image: &MetadataImage, excluded: &[NodeId], sizes: &Sizes) -> Plan {
    let brokers: BTreeSet<NodeId> = image.brokers.values().filter(|b| !b.fenced && !excluded.contains(&b.id)).map(|b| b.id).collect();
    let away: BTreeSet<NodeId> = image.brokers.values().filter(|b| b.fenced && !excluded.contains(&b.id)).map(|b| b.id).collect();
    let rack = |id: NodeId| image.brokers.get(&id).and_then(|b| b.rack.clone());
    let mut assignment: BTreeMap<(String, i32), Vec<NodeId>> = BTreeMap::new();
    for (name, t) in &image.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let key = (name.clone(), i as i32);
            if !image.reassignments.contains_key(&key) && !p.replicas.iter().any(|r| away.contains(r)) {
                assignment.insert(key, p.replicas.clone());
            }
        }
    }
    let original = assignment.clone();
    let before = load(&assignment, &brokers, sizes);
    let size = |key: &(String, i32)| sizes.get(key).copied().unwrap_or(0);
    if brokers.is_empty() {
        return Plan { moves: Vec::new(), after: before.clone(), before };
    }
    let mut counts: BTreeMap<NodeId, usize> = brokers.iter().map(|b| (*b, before.get(b).map_or(0, |l| l.replicas))).collect();
    // Whether `candidate` may join `replicas` in place of `leaving`: not
    // there yet, and on a rack none of the others use (when racks are set).
    let fits = |replicas: &[NodeId], leaving: NodeId, candidate: NodeId| {
        if replicas.contains(&candidate) {
            return false;
        }
        match rack(candidate) {
            None => true,
            Some(r) => !replicas.iter().any(|x| *x != leaving && rack(*x).as_deref() == Some(r.as_str())),
        }
    };

    // 1. Replicas on excluded or unknown brokers go to the least loaded broker that fits.
    for replicas in assignment.values_mut() {
        for i in 0..replicas.len() {
            let leaving = replicas[i];
            if brokers.contains(&leaving) {
                continue;
            }
            let best = brokers.iter().copied().filter(|b| fits(replicas, leaving, *b)).min_by_key(|b| (counts[b], *b));
            let best = best.or_else(|| brokers.iter().copied().filter(|b| !replicas.contains(b)).min_by_key(|b| (counts[b], *b)));
            if let Some(b) = best {
                replicas[i] = b;
                *counts.get_mut(&b).expect("a live broker") += 1;
            }
        }
    }

    // 2. Replica counts: move one replica at a time from a more loaded to
    // a less loaded broker (the most and least loaded pair that can trade,
    // racks allowing) while some pair differs by more than one.
    let total: usize = counts.values().sum();
    for _ in 0..=total * brokers.len() {
        let mut by_load: Vec<(NodeId, usize)> = counts.iter().map(|(b, c)| (*b, *c)).collect();
        by_load.sort_by_key(|(b, c)| (std::cmp::Reverse(*c), *b));
        let pairs = by_load.iter().flat_map(|&(hi, hc)| by_load.iter().rev().filter(move |&&(_, lc)| hc > lc + 1).map(move |&(lo, _)| (hi, lo)));
        let mut moved = false;
        for (hi, lo) in pairs {
            // Prefer a replica that is not the preferred leader (fewer
            // leader moves), then the smallest (fewer bytes to copy).
            let candidate = assignment
                .iter()
                .filter_map(|(k, r)| Some((k.clone(), r.iter().position(|x| *x == hi)?)))
                .filter(|(k, _)| fits(&assignment[k], hi, lo))
                .min_by_key(|(k, i)| (usize::from(*i == 0), size(k)));
            if let Some((key, i)) = candidate {
                assignment.get_mut(&key).expect("listed")[i] = lo;
                *counts.get_mut(&hi).expect("counted") -= 1;
                *counts.get_mut(&lo).expect("counted") += 1;
                moved = true;
                break;
            }
        }
        if !moved {
            break;
        }
    }

    // 3. Bytes: the fullest broker trades a replica of a larger partition
    // for one of a smaller partition on the emptiest (replica counts stay),
    // choosing the pair whose difference comes closest to halving the gap,
    // until the gap is within the tolerance or no trade narrows it by the
    // tolerance at least.
    balance_bytes(&mut assignment, &brokers, sizes, &fits);

    // 4. Preferred leaders: a broker leading more than another by two or
    // more hands the first place of one of its partitions to a replica
    // there that leads fewer (a reorder: nothing is copied).
    let mut leaders: BTreeMap<NodeId, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for r in assignment.values() {
        if let Some(first) = r.first().filter(|f| brokers.contains(f)) {
            *leaders.get_mut(first).expect("a live broker") += 1;
        }
    }
    for _ in 0..=assignment.len() * brokers.len() {
        let (&hi, &most) = leaders.iter().max_by_key(|(b, c)| (**c, std::cmp::Reverse(**b))).expect("brokers");
        let swap = assignment
            .iter()
            .filter(|(_, r)| r.first() == Some(&hi))
            .flat_map(|(k, r)| r.iter().enumerate().skip(1).map(move |(j, x)| (k, j, *x)))
            .filter(|(_, _, x)| leaders.get(x).is_some_and(|c| c + 1 < most))
            .min_by_key(|(_, _, x)| (leaders[x], *x))
            .map(|(k, j, x)| (k.clone(), j, x));
        let Some((key, j, new_leader)) = swap else { break };
        assignment.get_mut(&key).expect("listed").swap(0, j);
        *leaders.get_mut(&hi).expect("counted") -= 1;
        *leaders.get_mut(&new_leader).expect("counted") += 1;
    }

    let moves = assignment
        .iter()
        .filter(|(k, r)| original[*k] != **r)
        .map(|((topic, partition), to)| Move {
            topic: topic.clone(),
            partition: *partition,
            from: original[&(topic.clone(), *partition)].clone(),
            to: to.clone(),
        })
        .collect();
    let after = load(&assignment, &brokers, sizes);
    Plan { moves, before, after }
}

fn balance_bytes(
    assignment: &mut BTreeMap<(String, i32), Vec<NodeId>>,
    brokers: &BTreeSet<NodeId>,
    sizes: &Sizes,
    fits: &impl Fn(&[NodeId], NodeId, NodeId) -> bool,
) {
    let size = |key: &(String, i32)| sizes.get(key).copied().unwrap_or(0);
    if brokers.len() < 2 || sizes.is_empty() {
        return;
    }
    for _ in 0..assignment.len() {
        let bytes = load(assignment, brokers, sizes);
        let (&heavy, most) = bytes.iter().max_by_key(|(b, l)| (l.bytes, std::cmp::Reverse(**b))).expect("brokers");
        let (&light, least) = bytes.iter().min_by_key(|(b, l)| (l.bytes, **b)).expect("brokers");
        let gap = most.bytes - least.bytes;
        let mean = bytes.values().map(|l| l.bytes).sum::<u64>() as f64 / bytes.len() as f64;
        if gap as f64 <= mean * BYTES_TOLERANCE {
            return;
        }
        // Partitions on the light broker that could go to the heavy one, by size.
        let mut smaller: Vec<(u64, (String, i32))> =
            assignment.iter().filter(|(_, r)| r.contains(&light) && fits(r, light, heavy)).map(|(k, _)| (size(k), k.clone())).collect();
        smaller.sort_unstable();
        let mut best: Option<(u64, PartitionKey, PartitionKey)> = None;
        for (a, r) in assignment.iter().filter(|(_, r)| r.contains(&heavy)) {
            if !fits(r, heavy, light) {
                continue;
            }
            let big = size(a);
            // The ideal partner is `gap / 2` smaller; look at its neighbours.
            let ideal = big.saturating_sub(gap / 2);
            let at = smaller.partition_point(|(s, _)| *s < ideal);
            for (small, b) in smaller.iter().skip(at.saturating_sub(1)).take(2) {
                // A trade of `d` bytes narrows the gap only if 0 < d < gap.
                let Some(d) = big.checked_sub(*small).filter(|d| *d > 0 && *d < gap) else { continue };
                let left = (gap as i128 - 2 * d as i128).unsigned_abs() as u64;
                // Not worth copying two replicas for less than the tolerance
                // (and trades that only swap which broker is fuller).
                if ((gap - left) as f64) < mean * BYTES_TOLERANCE {
                    continue;
                }
                if best.as_ref().is_none_or(|(l, _, _)| left < *l) {
                    best = Some((left, a.clone(), b.clone()));
                }
            }
        }
        let Some((_, a, b)) = best else { return };
        for (key, from, to) in [(&a, heavy, light), (&b, light, heavy)] {
            let replicas = assignment.get_mut(key).expect("listed");
            let i = replicas.iter().position(|x| *x == from).expect("on the broker");
            replicas[i] = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::tests::register;
    use crate::metadata::{Command, MetadataImage};

    fn create(image: &mut MetadataImage, name: &str, partitions: i32, rf: i32) {
        crate::metadata::tests::create(image, name, partitions, rf).unwrap();
    }

    /// Applies a plan's moves to the image's replica lists, as completed reassignments would.
    fn apply(image: &MetadataImage, plan: &Plan) -> BTreeMap<(String, i32), Vec<NodeId>> {
        let mut out = BTreeMap::new();
        for (name, t) in &image.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                out.insert((name.clone(), i as i32), p.replicas.clone());
            }
        }
        for m in &plan.moves {
            assert_eq!(out[&(m.topic.clone(), m.partition)], m.from);
            out.insert((m.topic.clone(), m.partition), m.to.clone());
        }
        out
    }

    fn spread(loads: &BTreeMap<NodeId, Load>, f: impl Fn(&Load) -> usize) -> usize {
        let v: Vec<usize> = loads.values().map(f).collect();
        v.iter().max().unwrap() - v.iter().min().unwrap()
    }

    #[test]
    fn a_new_broker_gets_its_share_of_replicas_and_leaders() {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            register(&mut image, id, None);
        }
        create(&mut image, "a", 12, 3);
        create(&mut image, "b", 5, 2);
        register(&mut image, 4, None);
        let plan = plan(&image, &[], &Sizes::new());
        assert_eq!(plan.before[&NodeId(4)], Load::default());
        assert!(spread(&plan.after, |l| l.replicas) <= 1, "{:?}", plan.after);
        assert!(spread(&plan.after, |l| l.leaders) <= 1, "{:?}", plan.after);
        let after = apply(&image, &plan);
        for (k, r) in &after {
            let distinct: BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), r.len(), "{k:?} has a broker twice: {r:?}");
            assert_eq!(r.len(), image.topics[&k.0].partitions[k.1 as usize].replicas.len(), "the replication factor stays");
        }
        // A balanced cluster needs nothing.
        let mut balanced = image.clone();
        for m in &plan.moves {
            set_replicas(&mut balanced, m);
        }
        assert!(super::plan(&balanced, &[], &Sizes::new()).moves.is_empty());
    }

    fn set_replicas(image: &mut MetadataImage, m: &Move) {
        let t = std::sync::Arc::make_mut(image.topics.get_mut(&m.topic).unwrap());
        t.partitions[m.partition as usize].replicas = m.to.clone();
    }

    #[test]
    fn a_decommissioned_broker_ends_with_nothing_and_racks_stay_apart() {
        let mut image = MetadataImage::default();
        for (id, rack) in [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b"), (6, "c")] {
            register(&mut image, id, Some(rack));
        }
        create(&mut image, "t", 10, 3);
        let plan = plan(&image, &[NodeId(2)], &Sizes::new());
        assert!(!plan.after.contains_key(&NodeId(2)));
        let after = apply(&image, &plan);
        let rack = |id: &NodeId| image.brokers[id].rack.clone().unwrap();
        for (k, r) in &after {
            assert!(!r.contains(&NodeId(2)), "{k:?} still on broker 2: {r:?}");
            let racks: BTreeSet<String> = r.iter().map(rack).collect();
            assert_eq!(racks.len(), 3, "{k:?} keeps one replica per rack: {r:?}");
        }
        // Rack b has broker 5 only, so it holds every partition's b replica;
        // within racks a and c the replicas are even.
        let replicas = |id: u64| plan.after[&NodeId(id)].replicas;
        assert_eq!(replicas(5), 10);
        assert!(replicas(1).abs_diff(replicas(4)) <= 1 && replicas(3).abs_diff(replicas(6)) <= 1, "{:?}", plan.after);
    }

    /// A broker that is fenced (restarting, say) keeps its replicas: the
    /// partitions it holds wait for it, and the others are balanced over
    /// the live brokers. Excluded, its replicas go.
    #[test]
    fn a_fenced_broker_keeps_its_replicas_unless_excluded() {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            register(&mut image, id, None);
        }
        create(&mut image, "on-all", 3, 3);
        create(&mut image, "two", 9, 2);
        let untouched: Vec<i32> = (0..9).filter(|i| !image.topics["two"].partitions[*i as usize].replicas.contains(&NodeId(3))).collect();
        assert!(untouched.len() >= 2, "{untouched:?}");
        register(&mut image, 4, None);
        image.brokers.get_mut(&NodeId(3)).unwrap().fenced = true;
        let plan = plan(&image, &[], &Sizes::new());
        assert!(!plan.moves.is_empty(), "broker 4 gets replicas of the partitions broker 3 does not hold");
        for m in &plan.moves {
            assert!(m.topic == "two" && untouched.contains(&m.partition) && !m.to.contains(&NodeId(3)), "{m:?}");
        }
        let gone = super::plan(&image, &[NodeId(3)], &Sizes::new());
        let after = apply(&image, &gone);
        assert!(after.values().all(|r| !r.contains(&NodeId(3))), "excluded, broker 3 is emptied: {after:?}");
    }

    #[test]
    fn partitions_that_are_moving_are_left_alone() {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            register(&mut image, id, None);
        }
        image.apply(&Command::FinalizeFeatures { level: 3 }).unwrap();
        create(&mut image, "t", 1, 1);
        register(&mut image, 4, None);
        let on = image.topics["t"].partitions[0].replicas[0];
        let other = NodeId(if on == NodeId(1) { 2 } else { 1 });
        image.apply(&Command::FenceBroker { id: other }).unwrap();
        image.apply(&Command::ReassignPartition { topic: "t".into(), partition: 0, target: Some(vec![other]) }).unwrap();
        assert!(plan(&image, &[on], &Sizes::new()).moves.is_empty(), "the move in progress is not planned over");
    }

    /// Sizes known: brokers with as many replicas as each other but very
    /// different bytes trade replicas until the bytes are within the
    /// tolerance; replica counts and the replication factor stay.
    #[test]
    fn bytes_are_evened_out_where_sizes_are_known() {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            register(&mut image, id, None);
        }
        create(&mut image, "t", 12, 1);
        // The partitions on the first broker are big, the others small.
        let mut sizes = Sizes::new();
        for (i, p) in image.topics["t"].partitions.iter().enumerate() {
            let big = p.replicas[0] == NodeId(1);
            sizes.insert(("t".to_string(), i as i32), if big { 1_000_000 + i as u64 } else { 1_000 + i as u64 });
        }
        let plan = plan(&image, &[], &sizes);
        assert!(spread(&plan.before, |l| l.bytes as usize) > 3_000_000, "{:?}", plan.before);
        let after: Vec<u64> = plan.after.values().map(|l| l.bytes).collect();
        let mean = after.iter().sum::<u64>() as f64 / 3.0;
        assert!((spread(&plan.after, |l| l.bytes as usize) as f64) <= mean * BYTES_TOLERANCE + 1_000_000.0, "{:?}", plan.after);
        assert!(spread(&plan.after, |l| l.bytes as usize) < spread(&plan.before, |l| l.bytes as usize) / 2, "{:?}", plan.after);
        assert!(spread(&plan.after, |l| l.replicas) <= 1, "{:?}", plan.after);
        assert_eq!(plan.after.values().map(|l| l.bytes).sum::<u64>(), plan.before.values().map(|l| l.bytes).sum::<u64>());
        // Without sizes the same cluster is balanced as it is.
        assert!(super::plan(&image, &[], &Sizes::new()).moves.is_empty());
    }
}
