//! The ledger's deposits and withdrawals: each of the broker's transfer activities recorded once,
//! with the trading date whose P&L it is taken out of (`services::transfers` decides which).
//!
//! Never: counts one twice (the broker's activity id is the key), or reads them as P&L.

use super::*;

/// One deposit or withdrawal as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRow {
    /// The broker's activity id.
    pub id: String,
    pub trading_date: Date,
    /// `CSD`, `CSW` or `JNLC`.
    pub kind: String,
    /// + into the account, - out of it.
    pub amount: Dec,
    pub at: Timestamp,
}

impl State {
    /// Records a transfer unless it is recorded already; `true` when it is new.
    pub fn record_transfer(&self, t: &TransferRow, now: Timestamp) -> Result<bool, StateError> {
        let n = self
            .conn
            .run(
                "INSERT INTO transfers (id, trading_date, kind, amount, at, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO NOTHING",
                params![t.id, t.trading_date.to_string(), t.kind, t.amount.to_string(), clock::db_ts(t.at), clock::db_ts(now)],
            )
            .map_err(sql("recording a transfer"))?;
        Ok(n > 0)
    }

    /// The transfers recorded against `date`, oldest first.
    pub fn transfers_on(&self, date: Date) -> Result<Vec<TransferRow>, StateError> {
        let what = "reading the transfers";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, kind, amount, at FROM transfers WHERE trading_date = ?1 ORDER BY at, id")
            .map_err(sql(what))?;
        let rows = stmt
            .query_map([date.to_string()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })
            .map_err(sql(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, amount, at) = row.map_err(sql(what))?;
            let amount = amount.parse().map_err(|e: crate::core::decimal::DecError| StateError::BadRow {
                what: "transfers.amount",
                detail: format!("{amount:?}: {e}"),
            })?;
            let at = clock::parse_ts(&at).map_err(bad_row("transfers.at"))?;
            out.push(TransferRow { id, trading_date: date, kind, amount, at });
        }
        Ok(out)
    }
}
