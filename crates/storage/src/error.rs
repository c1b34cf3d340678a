use crate::batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("offset {offset} is out of range: the log holds [{log_start_offset}, {log_end_offset})")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, log_end_offset: i64 },
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    #[error("record set of {bytes} bytes does not fit in a segment of {segment_bytes} bytes")]
    RecordSetTooLarge { bytes: usize, segment_bytes: u64 },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Producer(#[from] crate::producer_state::ProducerError),
    #[error("invalid record set: {0}")]
    InvalidRecord(String),
    #[error("the log at {0} is closed")]
    Closed(String),
    /// An fsync failed: the kernel may have dropped written pages, so a
    /// later fsync that succeeds proves nothing. The log takes no more
    /// flushes until the node restarts and recovers it from what is on disk.
    #[error(
        "an fsync of the log at {dir} failed ({reason}); written data may not be on disk, so nothing more is flushed or acknowledged here until the node restarts and recovers the log"
    )]
    FsyncFailed { dir: String, reason: String },
    /// The log cleaner cannot go on with this log (see the message).
    #[error("log cleaner: {0}")]
    Cleaner(String),
    /// A file of the log that cannot be read as what it should be.
    #[error("{0}")]
    Corrupt(String),
}

impl StorageError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
        let context = context.into();
        move |source| StorageError::Io { context, source }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
