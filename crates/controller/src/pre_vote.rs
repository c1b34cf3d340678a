//! Raft's pre-vote (Ongaro's thesis, 9.6): before a voter campaigns it asks
//! the others whether they would vote for it, and campaigns only when a
//! majority would. openraft 0.9 has no pre-vote: a voter cut off from the
//! quorum raises its term at every election timeout, and when it returns
//! that higher term reaches the healthy leader in a reply to its entries
//! and unseats it, costing the cluster an election (metadata writes, group
//! coordination and transactions wait for it) for nothing.
//!
//! Here the controller keeps openraft's election timer switched off while a
//! pre-vote would fail and on while it succeeds (see
//! `Controller::run_election_gate`); openraft still chooses the moment.
//! A pre-vote changes nothing on the voter asked. The rules are the real
//! vote's, checked without casting it: no voter grants while it follows a
//! leader it heard from within the leader lease, a leader grants nothing
//! while a quorum confirms it, and nobody votes for a log shorter than its
//! own.

use openraft::{CommittedLeaderId, LogId};
use runnel_rpc::raft::{LogPosition, PreVoteReply};

use crate::types::NodeId;

/// What a voter knows when it is asked for a pre-vote.
#[derive(Debug, Clone, PartialEq)]
pub struct VoterView {
    pub node_id: NodeId,
    /// It leads, and a quorum confirmed that within the leader lease.
    pub leading_confirmed: bool,
    /// The leader it follows and heard from within the leader lease.
    pub following: Option<NodeId>,
    /// Its last log entry.
    pub last_log: Option<LogId<NodeId>>,
}

/// Whether the voter in `view` would vote for a candidate whose log ends at
/// `candidate_log`; the reason when it would not.
pub fn judge(view: &VoterView, candidate_log: Option<LogId<NodeId>>) -> Result<(), String> {
    if view.leading_confirmed {
        return Err(format!("node {} leads and a quorum confirms it", view.node_id.0));
    }
    if let Some(leader) = view.following {
        return Err(format!("node {} heard from its leader {} within the leader lease", view.node_id.0, leader.0));
    }
    if candidate_log < view.last_log {
        return Err(format!("the candidate's log ends at {}, before node {}'s at {}", describe(candidate_log), view.node_id.0, describe(view.last_log)));
    }
    Ok(())
}

/// Whether `granted` votes, the candidate's own included, win among
/// `voters`.
pub fn wins(granted: usize, voters: usize) -> bool {
    granted > voters / 2
}

fn describe(log: Option<LogId<NodeId>>) -> String {
    match log {
        None => "the start".to_string(),
        Some(l) => format!("index {} (term {}, leader {})", l.index, l.leader_id.term, l.leader_id.node_id.0),
    }
}

pub fn to_position(log: Option<LogId<NodeId>>) -> Option<LogPosition> {
    log.map(|l| LogPosition { term: l.leader_id.term, leader: l.leader_id.node_id.0, index: l.index })
}

pub fn from_position(position: Option<LogPosition>) -> Option<LogId<NodeId>> {
    position.map(|p| LogId::new(CommittedLeaderId::new(p.term, NodeId(p.leader)), p.index))
}

pub fn reply(judged: Result<(), String>) -> PreVoteReply {
    match judged {
        Ok(()) => PreVoteReply { granted: true, reason: String::new() },
        Err(reason) => PreVoteReply { granted: false, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(term: u64, leader: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, NodeId(leader)), index))
    }

    fn voter(last_log: Option<LogId<NodeId>>) -> VoterView {
        VoterView { node_id: NodeId(2), leading_confirmed: false, following: None, last_log }
    }

    #[test]
    fn a_voter_without_a_live_leader_grants_a_log_at_least_as_long() {
        assert_eq!(judge(&voter(log(3, 1, 40)), log(3, 1, 40)), Ok(()));
        assert_eq!(judge(&voter(log(3, 1, 40)), log(3, 1, 41)), Ok(()));
        assert_eq!(judge(&voter(log(3, 1, 40)), log(4, 3, 12)), Ok(()), "a later leader's entry is newer whatever its index");
        assert_eq!(judge(&voter(None), None), Ok(()), "a new quorum elects its first leader");
    }

    #[test]
    fn a_shorter_or_older_log_is_refused() {
        let refused = judge(&voter(log(3, 1, 40)), log(3, 1, 39)).unwrap_err();
        assert!(refused.contains("index 39") && refused.contains("index 40"), "{refused}");
        assert!(judge(&voter(log(4, 3, 12)), log(3, 1, 40)).is_err(), "an entry of an earlier term is older whatever its index");
        assert!(judge(&voter(log(1, 1, 1)), None).is_err());
    }

    #[test]
    fn a_voter_that_hears_its_leader_refuses_whatever_the_log() {
        let mut v = voter(log(3, 1, 40));
        v.following = Some(NodeId(1));
        let refused = judge(&v, log(9, 3, 100)).unwrap_err();
        assert!(refused.contains("leader 1"), "{refused}");
    }

    #[test]
    fn a_confirmed_leader_refuses_and_an_unconfirmed_one_grants() {
        let mut v = voter(log(3, 2, 40));
        v.leading_confirmed = true;
        assert!(judge(&v, log(3, 2, 40)).is_err());
        v.leading_confirmed = false;
        assert_eq!(judge(&v, log(3, 2, 40)), Ok(()), "a leader cut off from its quorum does not stand in the way");
    }

    #[test]
    fn a_majority_counts_the_candidate_itself() {
        assert!(wins(1, 1));
        assert!(!wins(1, 3));
        assert!(wins(2, 3));
        assert!(!wins(2, 4));
        assert!(wins(3, 5));
    }

    #[test]
    fn log_positions_go_over_the_wire_and_back() {
        for l in [None, log(0, 0, 0), log(7, 3, 123_456)] {
            assert_eq!(from_position(to_position(l)), l);
        }
    }
}
