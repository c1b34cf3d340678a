//! When a coordinator may act: coordinators run on the node that leads the
//! controller quorum, and only once that node has applied everything
//! committed before its term (its own term's first entry), so the state it
//! loads from the metadata is complete. Every coordinator (groups now,
//! transactions beside them) asks the same question here.

use runnel_controller::metadata::{Command, CommandOk};
use runnel_controller::{Metadata, ProposeError};
use runnel_protocol::kafka_protocol::error::ResponseError;

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

/// Commits a coordinator's change through Raft, only while leading `term`,
/// with the errors a coordinator answers: NOT_COORDINATOR once another node
/// leads, COORDINATOR_NOT_AVAILABLE without a quorum. `what` names the
/// coordinator in logs.
pub(crate) async fn propose(metadata: &Metadata, term: u64, command: Command, what: &str) -> Result<CommandOk, ResponseError> {
    let Some(controller) = metadata.local() else { return Err(ResponseError::NotCoordinator) };
    match controller.propose_in_term(term, command).await {
        Ok(Ok(ok)) => Ok(ok),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the metadata refused a {what} change");
            Err(ResponseError::UnknownServerError)
        }
        Err(ProposeError::NotLeader { .. }) => Err(ResponseError::NotCoordinator),
        Err(e) => {
            tracing::warn!(error = %e, "a {what} change could not be committed");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}
