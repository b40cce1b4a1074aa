//! Typed tables over MDBX, in the manner of reth-db: a [`Table`] names its key and value
//! types, keys are [`Encode`]/[`Decode`] (byte order is key order), values are
//! [`Compress`]/[`Decompress`], and every read or write goes through a typed transaction
//! ([`Tx`]). Nothing here knows about the sequencer: the challenger reuses this module with
//! tables of its own.
//!
//! Crash safety comes from MDBX itself: the environment is opened in its durable sync mode,
//! so a committed transaction survives `kill -9` and power loss, and an uncommitted one
//! leaves no trace.

mod codec;

pub use codec::{CodecError, Compress, Decode, Decompress, Encode};

use signet_libmdbx::tx::{RoSync, Rw, TransactionKind};
use signet_libmdbx::{DatabaseFlags, Environment, Geometry, MdbxError, ReadError, WriteFlags};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// The largest map the environment may grow to, by default (1 TiB of address space; the
/// file only grows as data is written).
pub const DEFAULT_MAX_SIZE: usize = 1 << 40;

/// The largest number of tables one environment may hold.
pub const MAX_TABLES: usize = 64;

/// A storage error.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// MDBX failed (I/O, a full map, a corrupted file).
    #[error("mdbx: {0}")]
    Mdbx(#[from] MdbxError),
    /// A stored value or key could not be decoded.
    #[error("table {table}: {source}")]
    Codec {
        /// The table read.
        table: &'static str,
        /// What was wrong.
        source: CodecError,
    },
    /// The database directory could not be created.
    #[error("creating {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A table was used that the database was not opened with.
    #[error("table {0} is not part of this database")]
    UnknownTable(&'static str),
}

impl From<ReadError> for StorageError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Mdbx(e) => Self::Mdbx(e),
            ReadError::Decoding(e) => Self::Codec {
                table: "?",
                source: CodecError(e.to_string()),
            },
        }
    }
}

/// The result type of this module.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A typed table: a named MDBX database whose keys and values have fixed types.
pub trait Table: 'static {
    /// The table's name in the environment.
    const NAME: &'static str;
    /// The key type; its encoding orders the table.
    type Key: Encode + Decode;
    /// The value type.
    type Value: Compress + Decompress;
}

/// A set of tables opened together (the schema of one service).
pub trait Schema {
    /// The names of every table.
    const TABLES: &'static [&'static str];
}

/// An open MDBX environment with its tables created.
#[derive(Clone, Debug)]
pub struct Database {
    env: Environment,
    path: PathBuf,
    /// One read-write transaction at a time in this process, waited for here: the MDBX
    /// binding answers a busy write lock by sleeping 250 ms before it tries again, which
    /// stalled the serving path whenever two threads wrote at once.
    writer: Arc<WriteLock>,
}

/// A lock that a read-write transaction holds until it commits or aborts.
#[derive(Debug, Default)]
struct WriteLock {
    held: Mutex<bool>,
    released: Condvar,
}

impl WriteLock {
    fn acquire(self: &Arc<Self>) -> WriteGuard {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while *held {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        *held = true;
        WriteGuard(self.clone())
    }
}

/// Releases the [`WriteLock`] when dropped.
#[derive(Debug)]
struct WriteGuard(Arc<WriteLock>);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.released.notify_one();
    }
}

/// Per-table statistics.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    /// The table's name.
    pub name: &'static str,
    /// Entries in it.
    pub entries: usize,
    /// Pages it uses (branch, leaf and overflow), times the page size.
    pub bytes: usize,
}

impl Database {
    /// Opens (creating if needed) the environment at `path` with the tables of `S`.
    pub fn open<S: Schema>(path: &Path) -> Result<Self> {
        Self::open_with_tables(path, S::TABLES)
    }

    /// Opens (creating if needed) the environment at `path` with `tables`.
    pub fn open_with_tables(path: &Path, tables: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|source| StorageError::Io {
            path: path.to_owned(),
            source,
        })?;
        let env = Environment::builder()
            .set_max_dbs(MAX_TABLES)
            .set_geometry(Geometry {
                size: Some(0..DEFAULT_MAX_SIZE),
                growth_step: Some(16 << 20),
                shrink_threshold: None,
                page_size: None,
            })
            .open(path)?;
        let tx = env.begin_rw_unsync()?;
        for name in tables {
            tx.create_db(Some(name), DatabaseFlags::empty())?;
        }
        tx.commit()?;
        Ok(Self {
            env,
            path: path.to_owned(),
            writer: Arc::default(),
        })
    }

    /// The directory of the environment.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read-only transaction: a consistent snapshot.
    pub fn tx(&self) -> Result<Tx<RoSync>> {
        Ok(Tx {
            inner: self.env.begin_ro_sync()?,
            _writer: None,
        })
    }

    /// A read-write transaction (one at a time per environment: others wait). Dropped
    /// without [`Tx::commit`], it is aborted. It begins, runs and commits on the calling
    /// thread (it is not `Send`): the binding's thread-safe kind instead sends the begin and
    /// the commit to a manager thread and back, two thread switches a transaction, which
    /// cost the serving path about 4% of its throughput (three interleaved `bench_serve
    /// --no-chain` rounds).
    pub fn tx_mut(&self) -> Result<Tx<Rw>> {
        let guard = self.writer.acquire();
        Ok(Tx {
            inner: self.env.begin_rw_unsync()?,
            _writer: Some(guard),
        })
    }

    /// Runs `f` in a read-only transaction.
    pub fn view<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&Tx<RoSync>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.tx()?;
        f(&tx)
    }

    /// Runs `f` in a read-write transaction and commits it if `f` succeeds.
    pub fn update<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&Tx<Rw>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.tx_mut()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Checks the schema version recorded under `schema_version` in table `T` against
    /// `version`, recording `version` if none is (a new database, or one from before
    /// versions were recorded) or if the one recorded is in `readable_from..version` (an
    /// older layout this build reads as it is: from then on the database is this version,
    /// which the builds before refuse). Returns the other version found if this build
    /// cannot read it: the caller refuses the database. Reads only, once recorded.
    pub fn check_schema_version<T: Table<Key = String, Value = u64>>(
        &self,
        version: u64,
        readable_from: u64,
    ) -> Result<Option<u64>> {
        let key = "schema_version".to_string();
        let found = self.view(|tx| tx.get::<T>(&key))?;
        if found == Some(version) {
            return Ok(None);
        }
        let found = self.update(|tx| {
            let found = tx.get::<T>(&key)?;
            match found {
                None => tx.put::<T>(&key, &version).map(|()| version),
                Some(f) if (readable_from..version).contains(&f) => {
                    tx.put::<T>(&key, &version).map(|()| version)
                }
                Some(f) => Ok(f),
            }
        })?;
        Ok((found != version).then_some(found))
    }

    /// Statistics of the named tables.
    pub fn stats(&self, tables: &[&'static str]) -> Result<Vec<TableStats>> {
        let tx = self.env.begin_ro_sync()?;
        tables
            .iter()
            .map(|&name| {
                let db = tx.open_db(Some(name))?;
                let stat = tx.db_stat(&db)?;
                Ok(TableStats {
                    name,
                    entries: stat.entries(),
                    bytes: (stat.branch_pages() + stat.leaf_pages() + stat.overflow_pages())
                        * stat.page_size() as usize,
                })
            })
            .collect()
    }
}

/// A typed transaction, read-only ([`RoSync`]) or read-write ([`Rw`], used on one thread).
#[derive(Debug)]
pub struct Tx<K: TransactionKind> {
    inner: signet_libmdbx::tx::Tx<K>,
    // Dropped after `inner` (declaration order): the lock outlives the transaction.
    _writer: Option<WriteGuard>,
}

fn codec<T: Table>(source: CodecError) -> StorageError {
    StorageError::Codec {
        table: T::NAME,
        source,
    }
}

impl<K: TransactionKind> Tx<K> {
    fn db<T: Table>(&self) -> Result<signet_libmdbx::tx::Database> {
        self.inner.open_db(Some(T::NAME)).map_err(|e| match e {
            MdbxError::NotFound => StorageError::UnknownTable(T::NAME),
            e => e.into(),
        })
    }

    /// The value under `key`, if any.
    pub fn get<T: Table>(&self, key: &T::Key) -> Result<Option<T::Value>> {
        let db = self.db::<T>()?;
        let raw: Option<Vec<u8>> = self.inner.get(db.dbi(), &key.encode())?;
        raw.map(|v| T::Value::decompress(&v).map_err(codec::<T>))
            .transpose()
    }

    /// The number of entries.
    pub fn entries<T: Table>(&self) -> Result<usize> {
        let db = self.db::<T>()?;
        Ok(self.inner.db_stat(&db)?.entries())
    }

    /// A cursor over the table, in key order.
    pub fn cursor<T: Table>(&self) -> Result<Cursor<'_, K, T>> {
        let db = self.db::<T>()?;
        Ok(Cursor {
            inner: self.inner.cursor(db)?,
            _table: PhantomData,
        })
    }

    /// The first entry.
    pub fn first<T: Table>(&self) -> Result<Option<(T::Key, T::Value)>> {
        self.cursor::<T>()?.first()
    }

    /// The last entry.
    pub fn last<T: Table>(&self) -> Result<Option<(T::Key, T::Value)>> {
        self.cursor::<T>()?.last()
    }

    /// Up to `limit` entries with keys `>= from` (from the start when `None`), in order.
    pub fn walk<T: Table>(
        &self,
        from: Option<&T::Key>,
        limit: usize,
    ) -> Result<Vec<(T::Key, T::Value)>> {
        let mut cursor: Cursor<'_, K, T> = self.cursor::<T>()?;
        let mut out = Vec::new();
        let mut next = match from {
            Some(k) => cursor.seek(k)?,
            None => cursor.first()?,
        };
        while let Some(entry) = next {
            if out.len() >= limit {
                break;
            }
            out.push(entry);
            next = cursor.next()?;
        }
        Ok(out)
    }
}

impl Tx<Rw> {
    /// Stores `value` under `key`, replacing any previous value.
    pub fn put<T: Table>(&self, key: &T::Key, value: &T::Value) -> Result<()> {
        let db = self.db::<T>()?;
        let value = value.compress().map_err(codec::<T>)?;
        self.inner
            .put(db, key.encode(), value, WriteFlags::empty())?;
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete<T: Table>(&self, key: &T::Key) -> Result<bool> {
        let db = self.db::<T>()?;
        Ok(self.inner.del(db, key.encode(), None)?)
    }

    /// Removes every entry.
    pub fn clear<T: Table>(&self) -> Result<()> {
        let db = self.db::<T>()?;
        self.inner.clear_db(db)?;
        Ok(())
    }

    /// Commits: once this returns, the writes survive a crash.
    pub fn commit(self) -> Result<()> {
        self.inner.commit()?;
        Ok(())
    }
}

/// A typed cursor over one table.
#[derive(Debug)]
pub struct Cursor<'tx, K: TransactionKind, T: Table> {
    inner: signet_libmdbx::tx::Cursor<'tx, K>,
    _table: PhantomData<T>,
}

impl<K: TransactionKind, T: Table> Cursor<'_, K, T> {
    fn decode(entry: Option<(Vec<u8>, Vec<u8>)>) -> Result<Option<(T::Key, T::Value)>> {
        entry
            .map(|(k, v)| {
                Ok((
                    T::Key::decode(&k).map_err(codec::<T>)?,
                    T::Value::decompress(&v).map_err(codec::<T>)?,
                ))
            })
            .transpose()
    }

    /// Moves to the first entry.
    pub fn first(&mut self) -> Result<Option<(T::Key, T::Value)>> {
        Self::decode(self.inner.first()?)
    }

    /// Moves to the last entry.
    pub fn last(&mut self) -> Result<Option<(T::Key, T::Value)>> {
        Self::decode(self.inner.last()?)
    }

    /// Moves to the next entry.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(T::Key, T::Value)>> {
        Self::decode(self.inner.next()?)
    }

    /// Moves to the previous entry.
    pub fn prev(&mut self) -> Result<Option<(T::Key, T::Value)>> {
        Self::decode(self.inner.prev()?)
    }

    /// Moves to the first entry whose key is `>= key`.
    pub fn seek(&mut self, key: &T::Key) -> Result<Option<(T::Key, T::Value)>> {
        Self::decode(self.inner.set_range(&key.encode())?)
    }

    /// Moves to exactly `key`.
    pub fn seek_exact(&mut self, key: &T::Key) -> Result<Option<(T::Key, T::Value)>> {
        Self::decode(self.inner.set_key(&key.encode())?)
    }
}
