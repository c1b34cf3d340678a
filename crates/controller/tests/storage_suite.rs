//! openraft's storage conformance suite against the sled store.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use runnel_controller::store::{LogStore, StateMachine, open_db};
use runnel_controller::types::{NodeId, TypeConfig};
use tempfile::TempDir;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = TempDir::new().expect("temp dir");
        let db = open_db(dir.path()).expect("open sled");
        let log = LogStore::open(&db).expect("log store");
        let sm = StateMachine::open(&db).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
#[allow(clippy::result_large_err)] // openraft's suite returns its own (large) error type
fn sled_store_passes_openraft_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(SledBuilder)
}
