//! Balancing plans: which partitions to move so that every live broker
//! holds about as many replicas, and leads about as many partitions, as the
//! others, keeping a partition's replicas on distinct racks where the
//! brokers have racks. Pure: the plan is carried out through partition
//! reassignment (`runnelctl cluster rebalance`, `broker decommission`).

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

/// Replicas and preferred leaderships per broker, for a plan's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    pub replicas: usize,
    pub leaders: usize,
}

/// A plan and the load per broker before and after it.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub moves: Vec<Move>,
    pub before: BTreeMap<NodeId, Load>,
    pub after: BTreeMap<NodeId, Load>,
}

fn load(assignment: &BTreeMap<(String, i32), Vec<NodeId>>, brokers: &BTreeSet<NodeId>) -> BTreeMap<NodeId, Load> {
    let mut out: BTreeMap<NodeId, Load> = brokers.iter().map(|b| (*b, Load::default())).collect();
    for replicas in assignment.values() {
        for (i, r) in replicas.iter().enumerate() {
            let l = out.entry(*r).or_default();
            l.replicas += 1;
            if i == 0 {
                l.leaders += 1;
            }
        }
    }
    out
}

/// Plans moves that take every replica off `excluded` brokers and even out
/// replicas and preferred leaders over the other live brokers. Partitions
/// with a move in progress are left alone.
pub fn plan(image: &MetadataImage, excluded: &[NodeId]) -> Plan {
    let brokers: BTreeSet<NodeId> = image.brokers.values().filter(|b| !b.fenced && !excluded.contains(&b.id)).map(|b| b.id).collect();
    let rack = |id: NodeId| image.brokers.get(&id).and_then(|b| b.rack.clone());
    let mut assignment: BTreeMap<(String, i32), Vec<NodeId>> = BTreeMap::new();
    for (name, t) in &image.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let key = (name.clone(), i as i32);
            if !image.reassignments.contains_key(&key) {
                assignment.insert(key, p.replicas.clone());
            }
        }
    }
    let original = assignment.clone();
    let before = load(&assignment, &brokers);
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
            // Prefer a replica that is not the preferred leader: fewer leader moves.
            let candidate = assignment
                .iter()
                .filter_map(|(k, r)| Some((k.clone(), r.iter().position(|x| *x == hi)?)))
                .filter(|(k, _)| fits(&assignment[k], hi, lo))
                .min_by_key(|(_, i)| usize::from(*i == 0));
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

    // 3. Preferred leaders: a broker leading more than another by two or
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
    let after = load(&assignment, &brokers);
    Plan { moves, before, after }
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
        let plan = plan(&image, &[]);
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
        assert!(super::plan(&balanced, &[]).moves.is_empty());
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
        let plan = plan(&image, &[NodeId(2)]);
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
        assert!(plan(&image, &[on]).moves.is_empty(), "the move in progress is not planned over");
    }
}
