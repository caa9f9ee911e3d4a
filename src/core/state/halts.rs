//! The ledger's halts: set (durably), extended, cleared, and counted. Which halt ends how is
//! `core::halt`'s; setting and lifting them with their events is `core::halt_store`'s.
//!
//! Never: decides a halt.

use super::orders::date_bounds;
use super::*;

impl State {
    pub fn active_halts(&self) -> Result<Vec<Halt>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT reason, detail, since, until FROM halts WHERE cleared_at IS NULL ORDER BY since, id",
            )
            .map_err(sql("reading halts"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(sql("reading halts"))?;
        let mut halts = Vec::new();
        for row in rows {
            let (reason, detail, since, until) = row.map_err(sql("reading halts"))?;
            // An unknown reason (a newer build's, or a hand edit) still halts: fail closed.
            let reason = HaltReason::parse(&reason).unwrap_or(HaltReason::StateError);
            let since = clock::parse_ts(&since).map_err(bad_row("halts.since"))?;
            let until = until.as_deref().map(clock::parse_ts).transpose().map_err(bad_row("halts.until"))?;
            halts.push(Halt { reason, detail, since, until });
        }
        Ok(halts)
    }

    /// Sets a halt; returns whether it is new. An active halt of the same reason keeps its
    /// `since`, takes the new detail and the later `until` (a halt without an end keeps none).
    /// Durable (`durably`): a halt the operator was told about survives a power cut.
    pub fn set_halt(&self, halt: &Halt) -> Result<bool, StateError> {
        let until = halt.until.map(clock::db_ts);
        self.durably("setting a halt", |tx| {
            let inserted = tx
                .run(
                    "INSERT INTO halts (reason, detail, since, until) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (reason) WHERE cleared_at IS NULL DO NOTHING",
                    params![halt.reason.as_str(), halt.detail, clock::db_ts(halt.since), until],
                )
                .map_err(sql("setting a halt"))?;
            if inserted == 0 {
                tx.run(
                    "UPDATE halts SET detail = ?2,
                         until = CASE WHEN until IS NULL OR ?3 IS NULL THEN NULL ELSE max(until, ?3) END
                     WHERE reason = ?1 AND cleared_at IS NULL",
                    params![halt.reason.as_str(), halt.detail, until],
                )
                .map_err(sql("extending a halt"))?;
            }
            Ok(inserted == 1)
        })
    }

    /// Clears the active halt of `reason`; returns whether there was one.
    pub fn clear_halt(&self, reason: HaltReason, by: &str, now: Timestamp) -> Result<bool, StateError> {
        let n = self
            .conn
            .run(
                "UPDATE halts SET cleared_at = ?2, cleared_by = ?3 WHERE reason = ?1 AND cleared_at IS NULL",
                params![reason.as_str(), clock::db_ts(now), by],
            )
            .map_err(sql("clearing a halt"))?;
        Ok(n > 0)
    }

    /// Halts set during a New York trading date, by reason.
    pub fn halts_on(&self, date: Date) -> Result<Vec<(String, u32)>, StateError> {
        let (from, to) = date_bounds(date);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT reason, count(*) FROM halts WHERE since >= ?1 AND since < ?2 GROUP BY reason ORDER BY reason",
            )
            .map_err(sql("counting the day's halts"))?;
        let rows =
            stmt.query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("counting the day's halts"))?;
        rows.collect::<Result<_, _>>().map_err(sql("counting the day's halts"))
    }

    /// How many halts were ever set, by reason.
    pub fn halt_counts(&self) -> Result<Vec<(String, u32)>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT reason, count(*) FROM halts GROUP BY reason ORDER BY reason")
            .map_err(sql("counting halts"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("counting halts"))?;
        rows.collect::<Result<_, _>>().map_err(sql("counting halts"))
    }
}
