//! When a coordinator may act: coordinators run on the node that leads the
//! controller quorum, and only once that node has applied everything
//! committed before its term (its own term's first entry), so the state it
//! loads from the metadata is complete. Every coordinator (groups now,
//! transactions beside them) asks the same question here.

use runnel_controller::Metadata;

/// This node's standing as a coordinator right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Leading Raft term `0`, with its state applied: coordinate.
    Leading(u64),
    /// Leading, but the metadata of earlier terms is not applied yet.
    Loading,
    /// Not the controller leader (or not a controller at all).
    NotLeading,
}

pub fn standing(metadata: &Metadata) -> Standing {
    let Some(controller) = metadata.local() else { return Standing::NotLeading };
    let (leading, term) = {
        let metrics = controller.raft.metrics();
        let m = metrics.borrow();
        (m.state == openraft::ServerState::Leader, m.current_term)
    };
    if !leading {
        return Standing::NotLeading;
    }
    if controller.state().last_applied.map(|l| l.leader_id.term) != Some(term) {
        return Standing::Loading;
    }
    Standing::Leading(term)
}
