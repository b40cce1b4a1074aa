//! The game driver: plays one game on chain for a [`bisection::Player`] until it is
//! resolved, then withdraws the winnings.
//!
//! The driver keeps a local referee ([`bisection::Game`]) in step with the chain: it
//! replays every move of the game from its transaction's calldata, at its block's
//! timestamp, so the referee's phase is exactly the contract's. It then asks the player for
//! its move, adds what the chain needs beyond the referee's move (op encodings with their
//! `opsRoot` proofs, operand type encodings, the repeated states and nodes), sends it, and
//! repeats. When the opponent lets its clock run out, it claims the timeout. A referee that
//! refuses a move the chain accepted is a critical inconsistency, never silently ignored.
//!
//! The driver is the sequencer's automatic defence (an honest [`bisection::TracePlayer`] as
//! defender) and the challenger's attack (as challenger); tests drive lying players with it.

use super::bindings::{DisputeGame, IOneStepVerifier};
use super::client::{ChainClient, classify_contract};
use super::follower::{LogPosition, game_claim};
use super::{ChainError, Result, to_b256};
use alloy::primitives::{B256, Bytes, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolEvent, SolInterface};
use bisection::{Claim, DissectionDegree, Game, GameConfig, Move, Phase, Player, Side};
use inference::merkle::MerkleTree;
use inference::program::{Operand, Program, encode_type};
use std::sync::Arc;
use std::time::Duration;

/// Default interval between polls of a game.
pub const DEFAULT_GAME_POLL: Duration = Duration::from_millis(500);

/// How the driver plays.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Interval between polls while waiting for the opponent.
    pub poll_interval: Duration,
    /// Withdraw the winnings once the game is won.
    pub withdraw: bool,
    /// The first block to look for the game's events in (the block it opened in, or any
    /// earlier one).
    pub from_block: u64,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_GAME_POLL,
            withdraw: true,
            from_block: 0,
        }
    }
}

/// How a game ended for the driver's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GameEnd {
    /// The game.
    pub game_id: U256,
    /// Who won.
    pub winner: Side,
    /// The reason code (`IDisputeGame.Reason`).
    pub reason: u8,
    /// Moves played on chain.
    pub moves: u32,
    /// Wei this side withdrew after the game (0 if it lost or did not withdraw; the
    /// withdrawal takes every credit of the account, so of games that end together one
    /// withdraws for all).
    pub withdrawn: U256,
    /// Gas used by this side's transactions in the game (moves, timeout claims, the
    /// withdrawal) sent by this driver.
    pub gas_used: u64,
}

/// What one [`GameDriver::step`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// This side moved.
    Moved(&'static str),
    /// This side claimed the opponent's timeout.
    ClaimedTimeout,
    /// The opponent is to move and still has time.
    Waiting,
    /// It is this side's turn but the player has no move (it will be timed out).
    Stuck,
    /// The game is over.
    Resolved(GameEnd),
}

/// Plays game `game_id` for `player`.
pub struct GameDriver<P: Player> {
    client: ChainClient,
    game_id: U256,
    player: P,
    program: Arc<Program>,
    ops_tree: MerkleTree,
    referee: Game,
    next_block: u64,
    last: LogPosition,
    end: Option<(Side, u8)>,
    config: DriverConfig,
    gas_used: u64,
}

fn local(e: impl std::fmt::Display) -> ChainError {
    ChainError::Local(e.to_string())
}

impl<P: Player> GameDriver<P> {
    /// Finds game `game_id` on chain and opens the local referee over `program` (the
    /// disputed model's; its id is checked against the claim's) and `weights_root`.
    pub async fn new(
        client: ChainClient,
        game_id: U256,
        program: Arc<Program>,
        weights_root: inference::merkle::H256,
        player: P,
        config: DriverConfig,
    ) -> Result<Self> {
        let games = client.addresses().games;
        let filter = Filter::new()
            .address(games)
            .event_signature(DisputeGame::GameOpened::SIGNATURE_HASH)
            .topic1(B256::from(game_id));
        let log = client
            .first_log("getLogs GameOpened", &filter, config.from_block)
            .await?
            .ok_or_else(|| {
                ChainError::Inconsistent(format!("game {game_id} has no GameOpened event"))
            })?;
        let opened =
            DisputeGame::GameOpened::decode_log(&log.inner).map_err(|e| ChainError::Decode {
                op: "GameOpened",
                message: e.to_string(),
            })?;
        let block = log.block_number.unwrap_or_default();
        let opened_at = client.block_timestamp(block).await?;
        let g = client.games();
        let read = |op: &'static str, e: alloy::contract::Error| classify_contract(op, &e);
        let degree = g
            .degree()
            .call()
            .await
            .map_err(|e| read("games.degree", e))?;
        let tensor_levels = g
            .tensorLevels()
            .call()
            .await
            .map_err(|e| read("games.tensorLevels", e))?;
        let clock_seconds = g
            .clockSeconds()
            .call()
            .await
            .map_err(|e| read("games.clockSeconds", e))?;
        let burn_bps = g
            .burnBps()
            .call()
            .await
            .map_err(|e| read("games.burnBps", e))?;
        let rules = GameConfig {
            degree: DissectionDegree::new(degree)
                .ok_or_else(|| ChainError::Inconsistent(format!("degree {degree}")))?,
            tensor_levels,
            clock_seconds,
            challenger_bond: opened.challengerBond,
            defender_bond: opened.defenderBond,
            burn_bps,
        };
        let c = game_claim(&opened.claim);
        let claim = Claim {
            request_id: c.request_id,
            model_id: c.model_id,
            input_hash: c.input_hash,
            output_hash: c.output_hash,
        };
        let referee = Game::open(rules, program.clone(), weights_root, claim, opened_at)
            .map_err(|e| ChainError::Inconsistent(format!("game {game_id}: {e}")))?;
        if to_b256(referee.initial_state()) != opened.s0 {
            return Err(ChainError::Inconsistent(format!(
                "game {game_id}: the chain's s0 {} is not the referee's {}",
                opened.s0,
                referee.initial_state()
            )));
        }
        let ops_tree = program.ops_tree().map_err(local)?;
        Ok(Self {
            client,
            game_id,
            player,
            program,
            ops_tree,
            referee,
            next_block: block,
            last: LogPosition {
                block,
                log_index: log.log_index.unwrap_or_default(),
                tx: log.transaction_hash.unwrap_or_default(),
            },
            end: None,
            config,
            gas_used: 0,
        })
    }

    /// The game id.
    pub fn game_id(&self) -> U256 {
        self.game_id
    }

    /// The local referee, in step with the chain as of the last sync.
    pub fn referee(&self) -> &Game {
        &self.referee
    }

    /// The player.
    pub fn player(&self) -> &P {
        &self.player
    }

    /// Replays the game's new moves from the chain into the local referee.
    pub async fn sync(&mut self) -> Result<()> {
        let head = self.client.head().await?;
        if self.next_block > head {
            return Ok(());
        }
        let filter = Filter::new()
            .address(self.client.addresses().games)
            .topic1(B256::from(self.game_id));
        let logs = self
            .client
            .logs("getLogs game", &filter, self.next_block, Some(head))
            .await?;
        for log in logs {
            let pos = LogPosition {
                block: log.block_number.unwrap_or_default(),
                log_index: log.log_index.unwrap_or_default(),
                tx: log.transaction_hash.unwrap_or_default(),
            };
            if pos.block < self.last.block
                || (pos.block == self.last.block && pos.log_index <= self.last.log_index)
            {
                continue;
            }
            let topic0 = log.topics().first().copied().unwrap_or_default();
            if topic0 == DisputeGame::GameResolved::SIGNATURE_HASH {
                let e = DisputeGame::GameResolved::decode_log(&log.inner).map_err(|e| {
                    ChainError::Decode {
                        op: "GameResolved",
                        message: e.to_string(),
                    }
                })?;
                let winner = if e.winner == 0 {
                    Side::Defender
                } else {
                    Side::Challenger
                };
                self.end = Some((winner, e.reason));
            } else if super::follower::is_move_event(topic0) {
                let now = self.client.block_timestamp(pos.block).await?;
                let mv = self.decode_move(pos.tx).await?;
                let side = self.referee.turn().ok_or_else(|| {
                    ChainError::Inconsistent(format!(
                        "game {}: a move after the referee resolved the game",
                        self.game_id
                    ))
                })?;
                self.referee.apply(side, mv, now).map_err(|e| {
                    ChainError::Inconsistent(format!(
                        "game {}: the referee refuses a move the chain accepted ({}): {e}",
                        self.game_id, pos.tx
                    ))
                })?;
            }
            self.last = pos;
        }
        self.next_block = head;
        Ok(())
    }

    /// The referee's move carried by transaction `tx` (a direct call to the games).
    async fn decode_move(&self, tx: B256) -> Result<Move> {
        let input = self.client.tx_input(tx).await?;
        let call =
            DisputeGame::DisputeGameCalls::abi_decode(&input).map_err(|e| ChainError::Decode {
                op: "game move calldata",
                message: format!("{tx}: {e}"),
            })?;
        use DisputeGame::DisputeGameCalls as C;
        let h = |b: &B256| inference::merkle::H256(b.0);
        let hs = |v: &[B256]| v.iter().map(h).collect::<Vec<_>>();
        Ok(match call {
            C::revealFinal(c) => Move::RevealFinal {
                activations_root: h(&c.activationsRoot_),
                output_siblings: hs(&c.outputSiblings_),
            },
            C::dissect(c) => Move::Dissect {
                states: hs(&c.states_),
            },
            C::pick(c) => Move::Pick { part: c.part_ },
            C::revealStep(c) => Move::RevealStep {
                prev_activations_root: h(&c.step_.prevActivationsRoot),
                activations_root: h(&c.step_.activationsRoot),
                slot_siblings: hs(&c.step_.slotSiblings),
                data_root: h(&c.step_.dataRoot),
            },
            C::revealNodes(c) => Move::RevealNodes {
                nodes: hs(&c.nodes_),
            },
            C::pickNode(c) => Move::PickNode { child: c.child_ },
            C::revealLeaf(c) => Move::RevealLeaf { leaf: h(&c.leaf_) },
            _ => {
                return Err(ChainError::Decode {
                    op: "game move calldata",
                    message: format!("{tx} is not a move the driver replays"),
                });
            }
        })
    }

    /// The encoding of op `op` (1-based) with its proof against `opsRoot`.
    fn op_with_proof(&self, op: u64) -> Result<(Bytes, Vec<B256>)> {
        let encoding = self.program.op_encoding(op as usize).map_err(local)?;
        let proof = self.ops_tree.prove(op as usize - 1).map_err(local)?;
        Ok((
            Bytes::from(encoding),
            proof.siblings.iter().map(|s| to_b256(*s)).collect(),
        ))
    }

    /// Sends `mv`, made in the current phase; returns its name and the gas it used.
    async fn send(&self, mv: Move) -> Result<(&'static str, u64)> {
        let gas: u64;
        let id = self.game_id;
        let to = self.client.addresses().games;
        let b = |v: &[inference::merkle::H256]| v.iter().map(|x| to_b256(*x)).collect::<Vec<_>>();
        let c = &self.client;
        let z = U256::ZERO;
        let name = match (self.referee.phase(), mv) {
            (
                _,
                Move::RevealFinal {
                    activations_root,
                    output_siblings,
                },
            ) => {
                let call = DisputeGame::revealFinalCall {
                    gameId_: id,
                    activationsRoot_: to_b256(activations_root),
                    outputSiblings_: b(&output_siblings),
                };
                gas = c.transact("revealFinal", to, &call, z).await?.gas_used;
                "revealFinal"
            }
            (_, Move::Dissect { states }) => {
                let call = DisputeGame::dissectCall {
                    gameId_: id,
                    states_: b(&states),
                };
                gas = c.transact("dissect", to, &call, z).await?.gas_used;
                "dissect"
            }
            (Phase::AwaitPick { states, .. }, Move::Pick { part }) => {
                let interior = &states[1..states.len() - 1];
                let call = DisputeGame::pickCall {
                    gameId_: id,
                    part_: part,
                    states_: b(interior),
                };
                gas = c.transact("pick", to, &call, z).await?.gas_used;
                "pick"
            }
            (
                Phase::AwaitStep { op, .. },
                Move::RevealStep {
                    prev_activations_root,
                    activations_root,
                    slot_siblings,
                    data_root,
                },
            ) => {
                let (op_bytes, op_siblings) = self.op_with_proof(*op)?;
                let call = DisputeGame::revealStepCall {
                    gameId_: id,
                    step_: DisputeGame::StepReveal {
                        prevActivationsRoot: to_b256(prev_activations_root),
                        activationsRoot: to_b256(activations_root),
                        slotSiblings: b(&slot_siblings),
                        dataRoot: to_b256(data_root),
                        op: op_bytes,
                        opSiblings: op_siblings,
                    },
                };
                gas = c.transact("revealStep", to, &call, z).await?.gas_used;
                "revealStep"
            }
            (_, Move::RevealNodes { nodes }) => {
                let call = DisputeGame::revealNodesCall {
                    gameId_: id,
                    nodes_: b(&nodes),
                };
                gas = c.transact("revealNodes", to, &call, z).await?.gas_used;
                "revealNodes"
            }
            (Phase::AwaitNodePick { nodes, .. }, Move::PickNode { child }) => {
                let call = DisputeGame::pickNodeCall {
                    gameId_: id,
                    child_: child,
                    nodes_: b(nodes),
                };
                gas = c.transact("pickNode", to, &call, z).await?.gas_used;
                "pickNode"
            }
            (_, Move::RevealLeaf { leaf }) => {
                let call = DisputeGame::revealLeafCall {
                    gameId_: id,
                    leaf_: to_b256(leaf),
                };
                gas = c.transact("revealLeaf", to, &call, z).await?.gas_used;
                "revealLeaf"
            }
            (Phase::AwaitOneStep { op, .. }, Move::OneStep { element, operands }) => {
                let node = &self.program.ops[*op as usize - 1];
                let (op_bytes, _) = self.op_with_proof(*op)?;
                let mut openings = Vec::with_capacity(operands.len());
                for (operand, opening) in node.inputs.iter().zip(&operands) {
                    let ty = match *operand {
                        Operand::Slot(s) => self.program.slot_type(s).map_err(local)?,
                        Operand::Weight(w) => self
                            .program
                            .weights
                            .get(w as usize)
                            .ok_or_else(|| local(format!("weight {w} does not exist")))?,
                    };
                    openings.push(IOneStepVerifier::Opening {
                        tensorType: Bytes::from(encode_type(ty).map_err(local)?),
                        dataRoot: to_b256(opening.data_root),
                        membership: b(&opening.membership.siblings),
                        ranges: opening
                            .ranges
                            .iter()
                            .map(|r| IOneStepVerifier::LeafRange {
                                start: r.start,
                                leaves: b(&r.leaves),
                            })
                            .collect(),
                        siblings: b(&opening.siblings),
                    });
                }
                let call = DisputeGame::oneStepCall {
                    gameId_: id,
                    element_: element,
                    op_: op_bytes,
                    operands_: openings,
                };
                gas = c.transact("oneStep", to, &call, z).await?.gas_used;
                "oneStep"
            }
            (phase, mv) => {
                return Err(ChainError::Local(format!(
                    "the player made {mv:?} in phase {phase:?}"
                )));
            }
        };
        Ok((name, gas))
    }

    /// Syncs, then moves, claims a timeout, or waits, once.
    pub async fn step(&mut self) -> Result<StepOutcome> {
        self.sync().await?;
        if let Some((winner, reason)) = self.end {
            return Ok(StepOutcome::Resolved(GameEnd {
                game_id: self.game_id,
                winner,
                reason,
                moves: self.referee.moves(),
                withdrawn: U256::ZERO,
                gas_used: self.gas_used,
            }));
        }
        let Some(turn) = self.referee.turn() else {
            // Resolved locally (a one-step) but its event not seen yet: wait for it.
            return Ok(StepOutcome::Waiting);
        };
        let me = self.player.side();
        if turn == me {
            let Some(mv) = self.player.next_move(&self.referee) else {
                return Ok(StepOutcome::Stuck);
            };
            let (name, gas) = self.send(mv).await?;
            self.gas_used += gas;
            tracing::info!(target: "chain::driver", game = %self.game_id, side = ?me, op = name, "moved");
            return Ok(StepOutcome::Moved(name));
        }
        let head = self.client.head().await?;
        let now = self.client.block_timestamp(head).await?;
        if self.referee.clone().claim_timeout(me, now).is_ok() {
            let call = DisputeGame::claimTimeoutCall {
                gameId_: self.game_id,
            };
            match self
                .client
                .transact(
                    "claimTimeout",
                    self.client.addresses().games,
                    &call,
                    U256::ZERO,
                )
                .await
            {
                Ok(receipt) => {
                    self.gas_used += receipt.gas_used;
                    return Ok(StepOutcome::ClaimedTimeout);
                }
                // The next block may not be past the clock yet: try again later.
                Err(ChainError::Reverted { reason, .. }) if reason.contains("NotTimedOut") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(StepOutcome::Waiting)
    }

    /// Withdraws this account's game credit, if any: the amount (from the `Withdrawn`
    /// event) and the gas used. Games of the same account that end together race for the
    /// credit: one withdraws it all, the others find nothing left (not an error).
    async fn withdraw(&mut self) -> Result<(U256, u64)> {
        let account = self.client.account();
        if self.client.games_credit(account).await?.is_zero() {
            return Ok((U256::ZERO, 0));
        }
        let sent = self
            .client
            .transact(
                "games.withdraw",
                self.client.addresses().games,
                &DisputeGame::withdrawCall {},
                U256::ZERO,
            )
            .await;
        let receipt = match sent {
            Ok(r) => r,
            Err(ChainError::Reverted { reason, .. }) if reason.contains("NothingToWithdraw") => {
                return Ok((U256::ZERO, 0));
            }
            Err(e) => return Err(e),
        };
        let amount = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<DisputeGame::Withdrawn>().ok())
            .map(|l| l.inner.data.amount)
            .unwrap_or_default();
        self.gas_used += receipt.gas_used;
        Ok((amount, receipt.gas_used))
    }

    /// Gas used by this driver's transactions so far.
    pub fn gas_used(&self) -> u64 {
        self.gas_used
    }

    /// Plays until the game is resolved; withdraws the winnings if configured. Temporary
    /// errors are retried after the poll interval; critical ones end the drive.
    pub async fn run(&mut self) -> Result<GameEnd> {
        loop {
            match self.step().await {
                Ok(StepOutcome::Resolved(mut end)) => {
                    if end.winner == self.player.side() && self.config.withdraw {
                        let (amount, gas) = self.withdraw().await?;
                        end.withdrawn = amount;
                        end.gas_used += gas;
                    }
                    tracing::info!(target: "chain::driver", game = %self.game_id, winner = ?end.winner, reason = end.reason, moves = end.moves, "game over");
                    return Ok(end);
                }
                Ok(StepOutcome::Moved(_)) | Ok(StepOutcome::ClaimedTimeout) => {}
                Ok(StepOutcome::Waiting) | Ok(StepOutcome::Stuck) => {
                    tokio::time::sleep(self.config.poll_interval).await
                }
                Err(e) if e.is_temporary() => {
                    tracing::warn!(target: "chain::driver", game = %self.game_id, error = %e, "temporary error");
                    tokio::time::sleep(self.config.poll_interval).await
                }
                Err(e) => return Err(e),
            }
        }
    }
}
