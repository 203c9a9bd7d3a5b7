//! Which partition a command goes to, by configuration.
//!
//! Instruments and accounts are assigned to partitions explicitly; anything
//! unassigned goes to the default partition (partition 0 unless configured).
//! Engine order ids are per partition; outside the process they are made
//! globally unique by putting the partition number in the top 8 bits
//! (`globalize` / `localize`).
//!
//! Invariants: routing is a pure function of the configuration and the
//! command; a command that would need two partitions at once (a transfer
//! between accounts of different partitions) is refused with a named error,
//! never split silently.

use engine::{AccountId, Command, InstrumentId, OrderId};
use std::collections::BTreeMap;

/// Bits of a global order id that carry the partition.
pub const PARTITION_SHIFT: u32 = 56;

/// Where a command goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// One partition, with the command rewritten to local order ids.
    One(usize, Command),
    /// Every partition (time, mass cancel of an owner on all instruments).
    All(Command),
}

/// Why a command cannot be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The two accounts of a transfer live in different partitions.
    #[error("transfer {0} crosses partitions (debit in {1}, credit in {2}); cross-partition transfers are not supported yet")]
    CrossPartition(u128, usize, usize),
    /// A global order id names a partition that does not exist.
    #[error("order id {0} names partition {1}, which does not exist")]
    NoSuchPartition(u64, usize),
    /// A command only a partition's own runtime issues (its history writer).
    #[error("{0} is issued by each partition's runtime, never routed")]
    PartitionLocal(&'static str),
}

/// The partition assignment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionMap {
    partitions: usize,
    default: usize,
    instruments: BTreeMap<u32, usize>,
    accounts: BTreeMap<u128, usize>,
}

/// A global order id for a partition's local one.
pub fn globalize(partition: usize, id: OrderId) -> OrderId {
    OrderId(((partition as u64) << PARTITION_SHIFT) | id.0)
}

/// The partition and local id of a global order id.
pub fn localize(id: OrderId) -> (usize, OrderId) {
    (
        (id.0 >> PARTITION_SHIFT) as usize,
        OrderId(id.0 & ((1u64 << PARTITION_SHIFT) - 1)),
    )
}

impl PartitionMap {
    /// Everything in one partition.
    pub fn single() -> Self {
        PartitionMap {
            partitions: 1,
            ..Default::default()
        }
    }

    /// `partitions` partitions, unassigned things in `default`.
    pub fn new(partitions: usize, default: usize) -> Self {
        let partitions = partitions.max(1);
        PartitionMap {
            partitions,
            default: default.min(partitions - 1),
            ..Default::default()
        }
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    /// Assigns an instrument.
    pub fn assign_instrument(&mut self, id: InstrumentId, partition: usize) -> &mut Self {
        self.instruments
            .insert(id.0, partition.min(self.partitions - 1));
        self
    }

    /// Assigns an account.
    pub fn assign_account(&mut self, id: AccountId, partition: usize) -> &mut Self {
        self.accounts
            .insert(id.0, partition.min(self.partitions - 1));
        self
    }

    /// The partition of an instrument.
    pub fn instrument(&self, id: InstrumentId) -> usize {
        self.instruments.get(&id.0).copied().unwrap_or(self.default)
    }

    /// The partition of an account.
    pub fn account(&self, id: AccountId) -> usize {
        self.accounts.get(&id.0).copied().unwrap_or(self.default)
    }

    fn local(&self, id: OrderId) -> Result<(usize, OrderId), RouteError> {
        let (p, local) = localize(id);
        if p >= self.partitions {
            return Err(RouteError::NoSuchPartition(id.0, p));
        }
        Ok((p, local))
    }

    /// Routes a command (order ids in it are global).
    pub fn route(&self, command: Command) -> Result<Route, RouteError> {
        Ok(match command {
            Command::AddInstrument(s) => Route::One(self.instrument(s.id), command),
            Command::NewOrder(o) => Route::One(self.instrument(o.instrument), command),
            Command::Halt { instrument }
            | Command::Resume { instrument }
            | Command::QueryBook { instrument, .. } => {
                Route::One(self.instrument(instrument), command)
            }
            Command::MassCancel {
                instrument: Some(i),
                ..
            } => Route::One(self.instrument(i), command),
            Command::MassCancel {
                instrument: None, ..
            }
            | Command::Time { .. }
            | Command::QueryOpenOrders {
                instrument: None, ..
            } => Route::All(command),
            Command::QueryOpenOrders {
                instrument: Some(i),
                ..
            } => Route::One(self.instrument(i), command),
            Command::Cancel { owner, order_id } => {
                let (p, local) = self.local(order_id)?;
                Route::One(
                    p,
                    Command::Cancel {
                        owner,
                        order_id: local,
                    },
                )
            }
            Command::Replace {
                owner,
                order_id,
                price,
                qty,
                requeue,
            } => {
                let (p, local) = self.local(order_id)?;
                Route::One(
                    p,
                    Command::Replace {
                        owner,
                        order_id: local,
                        price,
                        qty,
                        requeue,
                    },
                )
            }
            // A client order id names no partition: every partition looks
            // (an owner's client order ids are unique per partition; at most
            // one holds a live order with it unless the owner reused it).
            Command::CancelByClientId { .. } => Route::All(command),
            // Cancel-on-disconnect arms guard an owner's orders wherever they
            // rest: every partition keeps them.
            Command::CodArm { .. } | Command::CodDisarm { .. } | Command::SessionsLost => {
                Route::All(command)
            }
            Command::OpenAccount(a) => Route::One(self.account(a.id), command),
            Command::QueryBalance { account, .. } => Route::One(self.account(account), command),
            Command::GetAccountTransfers { filter, .. } => {
                Route::One(self.account(filter.account), command)
            }
            // A transfer lives with its accounts, which its id does not name:
            // every partition answers (at most one finds it).
            Command::LookupTransfer { .. } => Route::All(command),
            Command::InstallHistory { .. } => {
                return Err(RouteError::PartitionLocal("install_history"))
            }
            Command::Transfer { transfer, .. } => {
                let resolves = transfer.flags.0
                    & (engine::TransferFlags::POST_PENDING | engine::TransferFlags::VOID_PENDING)
                    != 0;
                let d = self.account(transfer.debit_account);
                let c = self.account(transfer.credit_account);
                // A post/void may leave its accounts 0 (taken from the pending transfer).
                let both_given = transfer.debit_account.0 != 0 && transfer.credit_account.0 != 0;
                if d != c && (!resolves || both_given) {
                    return Err(RouteError::CrossPartition(transfer.id.0, d, c));
                }
                let p = if resolves && transfer.debit_account.0 == 0 {
                    c
                } else {
                    d
                };
                Route::One(p, command)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::*;

    #[test]
    fn routes_by_configuration_and_rewrites_order_ids() {
        let mut m = PartitionMap::new(3, 0);
        m.assign_instrument(InstrumentId(7), 2)
            .assign_account(AccountId(10), 1)
            .assign_account(AccountId(11), 1)
            .assign_account(AccountId(20), 2);
        let halt = Command::Halt {
            instrument: InstrumentId(7),
        };
        assert_eq!(m.route(halt), Ok(Route::One(2, halt)));
        let other = Command::Halt {
            instrument: InstrumentId(8),
        };
        assert_eq!(m.route(other), Ok(Route::One(0, other)));
        let g = globalize(2, OrderId(42));
        assert_eq!(localize(g), (2, OrderId(42)));
        assert_eq!(
            m.route(Command::Cancel {
                owner: OwnerId(1),
                order_id: g
            }),
            Ok(Route::One(
                2,
                Command::Cancel {
                    owner: OwnerId(1),
                    order_id: OrderId(42)
                }
            ))
        );
        assert_eq!(
            m.route(Command::Cancel {
                owner: OwnerId(1),
                order_id: globalize(5, OrderId(1))
            }),
            Err(RouteError::NoSuchPartition(globalize(5, OrderId(1)).0, 5))
        );
        let t = |d: u128, c: u128| Command::Transfer {
            transfer: TransferSpec {
                id: TransferId(1),
                debit_account: AccountId(d),
                credit_account: AccountId(c),
                amount: Amount(1),
                code: 0,
                flags: TransferFlags(0),
                pending_id: TransferId(0),
                timeout_ns: 0,
            },
            batch_end: true,
            actor: engine::Actor::Admin,
        };
        assert!(matches!(m.route(t(10, 11)), Ok(Route::One(1, _))));
        assert_eq!(m.route(t(10, 20)), Err(RouteError::CrossPartition(1, 1, 2)));
        let time = Command::Time { now: Timestamp(5) };
        assert_eq!(m.route(time), Ok(Route::All(time)));
        assert!(matches!(
            PartitionMap::single().route(t(10, 20)),
            Ok(Route::One(0, _))
        ));
    }
}
