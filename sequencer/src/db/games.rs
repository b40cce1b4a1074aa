//! The dispute games against this sequencer's claims, as the defence watcher
//! ([`crate::chain::watch`]) records them: each game is recorded before it is played, so a
//! restart resumes the open ones and never starts one twice; its end is recorded with the
//! disputed request's new status in the same transaction.

use super::tables::{GameRecord, GameStatus, Games, RequestIds, RequestStatus};
use super::{Result, SequencerDb};

impl SequencerDb {
    /// Records game `key` (its on-chain id) unless it is recorded already; returns whether
    /// it was new. The disputed request, when it is one of this database's (by its claim
    /// id `request_id`), is noted in the record and becomes disputed, in the same
    /// transaction.
    pub fn record_game(
        &self,
        key: u64,
        record: &GameRecord,
        request_id: inference::merkle::H256,
    ) -> Result<bool> {
        self.db.update(|tx| {
            if tx.get::<Games>(&key)?.is_some() {
                return Ok(false);
            }
            let mut record = record.clone();
            record.request = tx.get::<RequestIds>(&request_id)?;
            if let Some(id) = record.request
                && let Some(state) = super::state_opt(tx, id)?
                && matches!(state.status, RequestStatus::Posted | RequestStatus::Final)
            {
                super::set_state(tx, id, RequestStatus::Disputed, state.batch)?;
            }
            tx.put::<Games>(&key, &record)?;
            Ok(true)
        })
    }

    /// Game `key`, if recorded.
    pub fn game(&self, key: u64) -> Result<Option<GameRecord>> {
        Ok(self.db.view(|tx| tx.get::<Games>(&key))?)
    }

    /// Every recorded game, by key.
    pub fn games(&self) -> Result<Vec<(u64, GameRecord)>> {
        Ok(self.db.view(|tx| tx.walk::<Games>(None, usize::MAX))?)
    }

    /// The games recorded open (to resume after a restart).
    pub fn open_games(&self) -> Result<Vec<(u64, GameRecord)>> {
        Ok(self
            .games()?
            .into_iter()
            .filter(|(_, g)| g.status == GameStatus::Open)
            .collect())
    }

    /// Records how game `key` ended. Its request, if it is one of this database's, becomes
    /// invalidated when the game is lost; when it is won, it is posted again (in its
    /// challenge window or past it) unless another open game still disputes it.
    pub fn finish_game(&self, key: u64, status: GameStatus) -> Result<()> {
        self.db.update(|tx| {
            let Some(mut game) = tx.get::<Games>(&key)? else {
                return Err(super::DbError::Missing {
                    what: "game",
                    id: key,
                });
            };
            game.status = status;
            tx.put::<Games>(&key, &game)?;
            let Some(id) = game.request else {
                return Ok(());
            };
            let Some(state) = super::state_opt(tx, id)? else {
                return Ok(());
            };
            let next = match status {
                GameStatus::Lost => RequestStatus::Invalidated,
                GameStatus::Won if state.status == RequestStatus::Disputed => {
                    let others = tx
                        .walk::<Games>(None, usize::MAX)?
                        .into_iter()
                        .any(|(k, g)| {
                            k != key && g.request == Some(id) && g.status == GameStatus::Open
                        });
                    if others {
                        return Ok(());
                    }
                    RequestStatus::Posted
                }
                _ => return Ok(()),
            };
            super::set_state(tx, id, next, state.batch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::SequencerDb;
    use super::super::tables::{GameRecord, GameStatus, RequestStatus};
    use inference::merkle::H256;

    fn record(batch: u64, index: u64) -> GameRecord {
        GameRecord {
            game_id: H256([7; 32]),
            batch,
            index,
            request: None,
            challenger: vec![1; 20],
            status: GameStatus::Open,
            bond_wei: 2_000_000_000_000_000_000,
            opened_block: 12,
            opened_at_ms: 1,
        }
    }

    #[test]
    fn a_game_is_recorded_once_and_finished_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = SequencerDb::open(dir.path()).unwrap();
            assert!(db.record_game(3, &record(1, 0), H256::default()).unwrap());
            // Seen again (a replayed event): not recorded twice, the first record kept.
            assert!(!db.record_game(3, &record(9, 9), H256::default()).unwrap());
            assert!(db.record_game(4, &record(1, 1), H256::default()).unwrap());
        }
        let db = SequencerDb::open(dir.path()).unwrap();
        let open: Vec<u64> = db.open_games().unwrap().iter().map(|(k, _)| *k).collect();
        assert_eq!(open, vec![3, 4]);
        assert_eq!(db.game(3).unwrap().unwrap(), record(1, 0));
        db.finish_game(3, GameStatus::Won).unwrap();
        db.finish_game(4, GameStatus::Lost).unwrap();
        assert!(db.open_games().unwrap().is_empty());
        assert_eq!(db.game(3).unwrap().unwrap().status, GameStatus::Won);
        assert_eq!(db.game(4).unwrap().unwrap().status, GameStatus::Lost);
        assert!(
            db.finish_game(5, GameStatus::Won).is_err(),
            "an unknown game"
        );
    }

    /// A posted request of this database, its claim id and its number.
    fn posted_request(db: &SequencerDb) -> (u64, H256) {
        use super::super::tables::{BatchStatus, InputRecord, TensorRecord};
        use super::super::{Execution, NewRequest};
        let ids = db
            .accept(vec![NewRequest {
                model: "m".into(),
                model_id: H256([1; 32]),
                input: InputRecord {
                    text: None,
                    tokens: vec![101, 102],
                    seq_len: 16,
                    hash: H256([2; 32]),
                },
            }])
            .unwrap();
        db.record_executions(&[Execution {
            id: ids[0],
            request: None,
            output: Ok(TensorRecord {
                dtype: inference::DType::I32,
                shape: vec![1],
                data: vec![0; 4],
                hash: H256([3; 32]),
            }),
        }])
        .unwrap();
        let batch = db.make_batch(8).unwrap().unwrap();
        let posted = BatchStatus::Posted {
            tx_hash: H256([4; 32]),
            block: 5,
        };
        db.set_batch_status(batch.id, posted, 1).unwrap();
        let view = db.request(ids[0]).unwrap().unwrap();
        assert_eq!(view.request.status, RequestStatus::Posted);
        (ids[0], view.request.request_id)
    }

    #[test]
    fn games_move_their_request_through_disputed_to_posted_or_invalidated() {
        let dir = tempfile::tempdir().unwrap();
        let db = SequencerDb::open(dir.path()).unwrap();
        let (id, request_id) = posted_request(&db);
        let status = |db: &SequencerDb| db.request(id).unwrap().unwrap().request.status;
        // Two games against the same claim: it stays disputed until both are over.
        assert!(db.record_game(1, &record(0, 0), request_id).unwrap());
        assert!(db.record_game(2, &record(0, 0), request_id).unwrap());
        assert_eq!(db.game(1).unwrap().unwrap().request, Some(id));
        assert_eq!(status(&db), RequestStatus::Disputed);
        db.finish_game(1, GameStatus::Won).unwrap();
        assert_eq!(status(&db), RequestStatus::Disputed, "game 2 is still open");
        db.finish_game(2, GameStatus::Won).unwrap();
        assert_eq!(status(&db), RequestStatus::Posted);
        // A lost game invalidates it for good.
        assert!(db.record_game(3, &record(0, 0), request_id).unwrap());
        db.finish_game(3, GameStatus::Lost).unwrap();
        assert_eq!(status(&db), RequestStatus::Invalidated);
        // A claim id this database does not know: no request.
        assert!(db.record_game(4, &record(0, 1), H256([9; 32])).unwrap());
        assert_eq!(db.game(4).unwrap().unwrap().request, None);
    }
}
