//! The bank: transfers move money between accounts atomically, so every snapshot of all
//! accounts — strong or eventual, by key or by range — holds every account and adds up to
//! the total. A torn commit, a transfer applied twice or a skipped check (two transfers
//! spending one balance) shows up as a snapshot with the wrong sum.

use super::{Anomaly, AnomalyKind};
use crate::history::{Op, Outcome};

/// A bank operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BankCall {
    /// Move `amount` from account `from` to `to` (if `from` holds enough).
    Transfer {
        /// Debited account.
        from: usize,
        /// Credited account.
        to: usize,
        /// How much.
        amount: u64,
    },
    /// Read every account in one snapshot.
    Read {
        /// Through a list of the accounts' prefix rather than a read of each key.
        by_range: bool,
        /// An eventual read (a replica may answer).
        eventual: bool,
    },
}

/// What a bank operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankRet {
    /// The transfer committed.
    Transferred,
    /// `from` held less than the amount; nothing written.
    Insufficient,
    /// The balances, by account (`None`: the account was missing).
    Balances(Vec<Option<u64>>),
}

/// Every anomaly of `history`, for a bank of `accounts` accounts holding `total` in all.
pub fn check(history: &[Op<BankCall, BankRet>], accounts: usize, total: u64) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    for op in history {
        let Outcome::Ok(BankRet::Balances(balances)) = &op.outcome else { continue };
        let present: Vec<u64> = balances.iter().flatten().copied().collect();
        let sum: u128 = present.iter().map(|b| u128::from(*b)).sum();
        if balances.len() != accounts || present.len() != accounts || sum != u128::from(total) {
            anomalies.push(Anomaly::new(
                AnomalyKind::WrongTotal,
                format!(
                    "{:?} by client {} at {} ms saw {balances:?}: {} of {accounts} accounts, \
                     sum {sum}, expected {total}",
                    op.call,
                    op.client,
                    op.invoke / 1_000_000,
                    present.len()
                ),
            ));
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(balances: Vec<Option<u64>>) -> Op<BankCall, BankRet> {
        Op {
            client: 0,
            invoke: 0,
            complete: Some(1),
            call: BankCall::Read { by_range: false, eventual: false },
            outcome: Outcome::Ok(BankRet::Balances(balances)),
        }
    }

    #[test]
    fn every_snapshot_must_add_up() {
        assert!(check(&[read(vec![Some(50), Some(50)])], 2, 100).is_empty());
        let torn = check(&[read(vec![Some(40), Some(50)])], 2, 100);
        assert_eq!(torn.len(), 1);
        assert_eq!(torn[0].kind, AnomalyKind::WrongTotal);
        let missing = check(&[read(vec![Some(100), None])], 2, 100);
        assert_eq!(missing[0].kind, AnomalyKind::WrongTotal);
    }
}
