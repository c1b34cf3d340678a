//! Record-batch validation meets damaged and random bytes (issue 14, part
//! 3): an error, never a panic, and never a batch accepted whose CRC does
//! not match. The corpus is valid batches built here, then damaged.

use proptest::prelude::*;
use runnel_storage::batch::{build_batch, validate_record_set};

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn damaged_batches_are_refused_without_a_panic(
        records in 1usize..5,
        value in proptest::collection::vec(any::<u8>(), 0..40),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
        cut in any::<usize>(),
        extra in proptest::collection::vec(any::<u8>(), 0..30),
    ) {
        let values: Vec<&[u8]> = (0..records).map(|_| value.as_slice()).collect();
        let mut set = build_batch(1_700_000_000_000, &values);
        set.extend(build_batch(1_700_000_000_001, &values));
        let original = set.clone();
        for (at, xor) in &flips {
            let n = set.len();
            set[at % n] ^= xor;
        }
        set.truncate(cut % (set.len() + 1));
        set.extend(&extra);
        // Accepted only if untouched where the CRC counts (from the
        // attributes, byte 21, to the batch's end): what passes is what was
        // built.
        if let Ok(batches) = validate_record_set(&set) {
            for (_, range) in batches {
                prop_assert!(original.len() >= range.end, "a batch past the original bytes was accepted");
                prop_assert_eq!(&set[range.start + 21..range.end], &original[range.start + 21..range.end], "damaged bytes passed the CRC");
            }
        }
    }

    #[test]
    fn random_bytes_are_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = validate_record_set(&bytes);
    }
}
