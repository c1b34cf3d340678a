//! Every persisted or replicated decoder meets random and damaged bytes
//! (issue 14, part 3): it returns an error, never panics or aborts. The
//! corpus is the golden fixtures in `tests/compat/`, each mutated (bytes
//! flipped, cut short, extended), plus plain random bytes. proptest prints
//! the failing input and keeps it in `proptest-regressions/`.

use std::path::PathBuf;

use openraft::{Entry, Vote};
use proptest::prelude::*;
use runnel_controller::command::{Command, CommandResult};
use runnel_controller::records::NodeId;
use runnel_controller::store::{StoredSnapshot, decode_state};
use runnel_controller::types::{TypeConfig, decode};

/// Every golden fixture, the fuzzing corpus.
fn corpus() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat");
    let mut out = Vec::new();
    for dir in ["controller-v1", "controller-v2"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("the fixtures") {
            out.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    assert!(out.len() > 40, "the corpus is the golden fixtures");
    out
}

/// Runs every decoder on `bytes`; only panics matter (errors are expected).
fn decode_all(bytes: &[u8]) {
    let _ = decode::<Command>(bytes);
    let _ = decode::<CommandResult>(bytes);
    let _ = decode::<Entry<TypeConfig>>(bytes);
    let _ = decode::<Vote<NodeId>>(bytes);
    let _ = decode::<StoredSnapshot>(bytes);
    let _ = decode_state(bytes);
    let _ = <runnel_rpc::controller::MetadataUpdate as prost::Message>::decode(bytes);
}

#[derive(Debug, Clone)]
enum Damage {
    Flip { at: usize, xor: u8 },
    Cut { at: usize },
    Insert { at: usize, byte: u8 },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Damage::Flip { at, xor }),
        any::<usize>().prop_map(|at| Damage::Cut { at }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Damage::Insert { at, byte }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn damaged_fixtures_are_refused_without_a_panic(which in any::<usize>(), damages in proptest::collection::vec(damage(), 1..4)) {
        let corpus = corpus();
        let mut bytes = corpus[which % corpus.len()].clone();
        for d in damages {
            let n = bytes.len().max(1);
            match d {
                Damage::Flip { at, xor } => { if !bytes.is_empty() { bytes[at % n] ^= xor } }
                Damage::Cut { at } => bytes.truncate(at % n),
                Damage::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
            }
        }
        decode_all(&bytes);
    }

    #[test]
    fn random_bytes_are_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_all(&bytes);
    }
}
