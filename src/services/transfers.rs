//! Deposits and withdrawals, kept out of the daily P&L.
//!
//! Owns: reading the account's transfers from the broker (Alpaca's activities `CSD`, `CSW`,
//! `JNLC`), recording each once in the ledger against the trading date it counts for, logging
//! `transfer`, and the net of a date's transfers that moved the equity since the day's reference
//! was taken (`counts`). The loop adds that net to the day-start equity before the daily loss is
//! measured: a $1,500 withdrawal is not a loss, a deposit does not widen the day's loss limit.
//!
//! Never: flattens, halts or sends anything, and never reads a transfer as a gain or a loss.

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::clock;
use crate::core::decimal::Dec;
use crate::core::state::{DayStart, State, TransferRow};
use crate::event;
use crate::services::broker::Broker;
use crate::services::order_lifecycle::ExecError;

/// Whether a transfer at `at` moved the equity after `day_start` was taken, so the day's P&L must
/// be measured without it. The broker's previous close (`last_equity`) was taken before any
/// transfer of the date; the first equity seen (`first_seen`) already holds those made before it
/// was recorded.
pub fn counts(day_start: &DayStart, at: Timestamp) -> bool {
    let after_midnight = at >= clock::start_of_date(day_start.trading_date);
    let after_recorded = day_start.source != "first_seen" || day_start.recorded_at.is_none_or(|r| at > r);
    after_midnight && after_recorded
}

/// The net of `rows` that `counts` against `day_start`, exactly.
pub fn net(day_start: &DayStart, rows: &[TransferRow]) -> Dec {
    rows.iter().filter(|t| counts(day_start, t.at)).fold(Dec::ZERO, |a, t| a.checked_add(t.amount).unwrap_or(a))
}

/// The date's transfers as the loop last knew them.
#[derive(Debug, Default)]
pub struct Transfers {
    /// The trading date `rows` are of (`None`: not read yet).
    date: Option<Date>,
    rows: Vec<TransferRow>,
}

impl Transfers {
    /// The net of the trading date's transfers that counts against `day_start` (+ in). Asks the
    /// broker when `ask` is set or the date is new, recording each new transfer once (logged as
    /// `transfer`); otherwise the transfers already known. On a failure the known ones stand,
    /// and the error comes back beside them: the daily loss is measured all the same.
    pub fn net(
        &mut self,
        state: &State,
        broker: &mut dyn Broker,
        day_start: &DayStart,
        ask: bool,
        now: Timestamp,
    ) -> (Dec, Option<ExecError>) {
        let date = day_start.trading_date;
        let new_date = self.date != Some(date);
        if new_date {
            self.date = Some(date);
            match state.transfers_on(date) {
                Ok(rows) => self.rows = rows,
                Err(e) => {
                    // Read again next time; the broker is asked meanwhile.
                    self.date = None;
                    self.rows.clear();
                    let _ = self.ask(state, broker, day_start, now);
                    return (net(day_start, &self.rows), Some(e.into()));
                }
            }
        }
        let failed = if ask || new_date { self.ask(state, broker, day_start, now).err() } else { None };
        (net(day_start, &self.rows), failed)
    }

    fn ask(
        &mut self,
        state: &State,
        broker: &mut dyn Broker,
        day_start: &DayStart,
        now: Timestamp,
    ) -> Result<(), ExecError> {
        let date = day_start.trading_date;
        let mut failed: Option<ExecError> = None;
        for t in broker.transfers(clock::start_of_date(date))? {
            if self.rows.iter().any(|r| r.id == t.id) || clock::trading_date(t.at) != date {
                continue;
            }
            let row = TransferRow { id: t.id, trading_date: date, kind: t.kind, amount: t.amount, at: t.at };
            // Counted even when the ledger takes no write: a withdrawal is never a loss.
            let recorded = state.record_transfer(&row, now);
            let counted = counts(day_start, row.at);
            self.rows.push(row.clone());
            let new = match recorded {
                Ok(new) => new,
                Err(e) => {
                    failed.get_or_insert(ExecError::State(e));
                    true
                }
            };
            if new {
                let what = if row.amount.is_negative() { "a withdrawal" } else { "a deposit" };
                let detail = if counted {
                    format!(
                        "{what}: taken out of the day's P&L (its reference is now {} + {})",
                        day_start.equity,
                        net(day_start, &self.rows)
                    )
                } else {
                    format!("{what} made before the day's reference equity was taken: already in it")
                };
                event!(
                    Info,
                    "transfer",
                    id = row.id.as_str(),
                    kind = row.kind.as_str(),
                    amount = row.amount.to_string(),
                    at = clock::db_ts(row.at),
                    detail = detail.as_str()
                );
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn day(source: &str, recorded_at: Option<&str>) -> DayStart {
        DayStart {
            trading_date: jiff::civil::date(2026, 11, 25),
            equity: 100_000.0,
            source: source.into(),
            recorded_at: recorded_at.map(ts),
        }
    }

    fn row(id: &str, amount: &str, at: &str) -> TransferRow {
        TransferRow {
            id: id.into(),
            trading_date: jiff::civil::date(2026, 11, 25),
            kind: "CSW".into(),
            amount: amount.parse().unwrap(),
            at: ts(at),
        }
    }

    #[test]
    fn the_transfers_after_the_reference_count_and_only_they() {
        let rows = [
            row("a", "-1500", "2026-11-25T15:00:00Z"),
            row("b", "250.25", "2026-11-25T16:00:00Z"),
            // Before New York's midnight: the day before's.
            row("c", "-999", "2026-11-25T04:59:59Z"),
        ];
        assert_eq!(net(&day("last_equity", Some("2026-11-25T14:31:00Z")), &rows), "-1249.75".parse().unwrap());
        // The first equity seen at 15:30 already holds the withdrawal of 15:00.
        assert_eq!(net(&day("first_seen", Some("2026-11-25T15:30:00Z")), &rows), "250.25".parse().unwrap());
    }
}
