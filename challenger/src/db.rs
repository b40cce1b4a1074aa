//! The challenger's progress in MDBX (the sequencer's typed-table storage layer): the
//! follower's cursor, the batches checked, and the games opened, so that a restart resumes
//! where it stopped, replays its open games from the chain and never disputes a claim
//! twice.

use inference::merkle::H256;
use sequencer::storage::{Database, Schema, StorageError, Table};
use serde::{Deserialize, Serialize};
use std::path::Path;

macro_rules! table {
    ($(#[$doc:meta])* $name:ident: $key:ty => $value:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;

        impl Table for $name {
            const NAME: &'static str = stringify!($name);
            type Key = $key;
            type Value = $value;
        }
    };
}

table!(
    /// The follower's next block, by follower name.
    Cursor: String => u64
);
table!(
    /// Batches checked, by batch id.
    CheckedBatches: u64 => CheckedBatch
);
table!(
    /// Games this challenger opened, by game id (32-byte big-endian).
    Games: H256 => GameRecord
);
table!(
    /// Database metadata (schema version).
    Meta: String => u64
);

/// The schema version this build writes; a database of another version is refused. A
/// database without one (written before versions were recorded) has version 1's layout.
/// Version 2: hashes are stored as their 32 bytes instead of 66 characters of hex; a
/// version 1 database reads as it is (each hash decodes from either form) and becomes
/// version 2 when opened.
pub const SCHEMA_VERSION: u64 = 2;

/// The oldest schema version this build reads.
pub const READABLE_FROM: u64 = 1;

/// The database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database was written by another schema version.
    #[error("challenger database schema version {found}, this build reads {expected}")]
    SchemaVersion {
        /// The version found.
        found: u64,
        /// The version of this build.
        expected: u64,
    },
}

/// The challenger's schema.
#[derive(Clone, Copy, Debug)]
pub struct ChallengerTables;

impl Schema for ChallengerTables {
    const TABLES: &'static [&'static str] =
        &[Cursor::NAME, CheckedBatches::NAME, Games::NAME, Meta::NAME];
}

/// What checking one batch found, per claim (`correct`, `wrong`, `skipped`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedBatch {
    /// The posting transaction.
    pub tx: H256,
    /// One label per claim (empty if the batch data was bad).
    pub outcomes: Vec<String>,
    /// Why the batch could not be checked, if so.
    pub error: Option<String>,
}

/// Where a game stands for this challenger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GameStatus {
    /// Being played.
    Open,
    /// Won (and the winnings withdrawn).
    Won,
    /// Lost.
    Lost,
    /// The drive stopped on a critical error.
    Failed,
}

/// A game this challenger opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameRecord {
    /// The disputed batch.
    pub batch_id: u64,
    /// The disputed claim's index.
    pub index: u64,
    /// The transaction that posted the batch (its calldata holds the input).
    pub batch_tx: H256,
    /// The block the game opened in.
    pub opened_block: u64,
    /// Where it stands.
    pub status: GameStatus,
}

/// The challenger's database.
#[derive(Clone, Debug)]
pub struct ChallengerDb {
    db: Database,
}

/// The follower's cursor name.
const FOLLOWER: &str = "rollup";

impl ChallengerDb {
    /// Opens (creating if needed) the database at `path`, checking its schema version.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let db = Database::open::<ChallengerTables>(path)?;
        if let Some(found) = db.check_schema_version::<Meta>(SCHEMA_VERSION, READABLE_FROM)? {
            let expected = SCHEMA_VERSION;
            return Err(OpenError::SchemaVersion { found, expected });
        }
        Ok(Self { db })
    }

    /// The follower's saved next block.
    pub fn cursor(&self) -> Result<Option<u64>, StorageError> {
        self.db.view(|tx| tx.get::<Cursor>(&FOLLOWER.to_string()))
    }

    /// Saves the follower's next block.
    pub fn set_cursor(&self, next_block: u64) -> Result<(), StorageError> {
        self.db
            .update(|tx| tx.put::<Cursor>(&FOLLOWER.to_string(), &next_block))
    }

    /// The record of batch `id`, if checked.
    pub fn checked_batch(&self, id: u64) -> Result<Option<CheckedBatch>, StorageError> {
        self.db.view(|tx| tx.get::<CheckedBatches>(&id))
    }

    /// Records batch `id` as checked.
    pub fn put_checked_batch(&self, id: u64, record: &CheckedBatch) -> Result<(), StorageError> {
        self.db.update(|tx| tx.put::<CheckedBatches>(&id, record))
    }

    /// Records a game.
    pub fn put_game(&self, game_id: H256, record: &GameRecord) -> Result<(), StorageError> {
        self.db.update(|tx| tx.put::<Games>(&game_id, record))
    }

    /// Every game recorded.
    pub fn games(&self) -> Result<Vec<(H256, GameRecord)>, StorageError> {
        self.db.view(|tx| {
            let mut out = Vec::new();
            let mut cursor = tx.cursor::<Games>()?;
            let mut next = cursor.first()?;
            while let Some(entry) = next {
                out.push(entry);
                next = cursor.next()?;
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_version(db: &ChallengerDb, version: Option<u64>) {
        let key = "schema_version".to_string();
        db.db
            .update(|tx| match version {
                Some(v) => tx.put::<Meta>(&key, &v),
                None => tx.delete::<Meta>(&key).map(|_| ()),
            })
            .unwrap();
    }

    #[test]
    fn the_schema_version_is_recorded_an_older_one_upgraded_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = ChallengerDb::open(dir.path()).unwrap();
            db.set_cursor(42).unwrap();
            // As written before versions were recorded.
            set_version(&db, None);
        }
        {
            let db = ChallengerDb::open(dir.path()).unwrap();
            assert_eq!(
                db.cursor().unwrap(),
                Some(42),
                "an unversioned database opens as is"
            );
            let version = db
                .db
                .view(|tx| tx.get::<Meta>(&"schema_version".to_string()));
            assert_eq!(version.unwrap(), Some(SCHEMA_VERSION));
            // An older version this build reads (hashes stored as hex) opens as it is and
            // becomes this version.
            set_version(&db, Some(READABLE_FROM));
        }
        {
            let db = ChallengerDb::open(dir.path()).unwrap();
            assert_eq!(db.cursor().unwrap(), Some(42));
            let version = db
                .db
                .view(|tx| tx.get::<Meta>(&"schema_version".to_string()));
            assert_eq!(version.unwrap(), Some(SCHEMA_VERSION));
            set_version(&db, Some(SCHEMA_VERSION + 1));
        }
        match ChallengerDb::open(dir.path()) {
            Err(OpenError::SchemaVersion { found, expected }) => {
                assert_eq!((found, expected), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected a schema version error, got {other:?}"),
        }
    }
}
