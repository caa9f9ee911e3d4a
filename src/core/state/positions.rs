//! The ledger's positions: what the daemon's own fills opened (`owned_positions`, moved only by a
//! fill through `move_owned`, capped by reconciliation), the best price since entry, the exit
//! rules each was opened with, and the broker's positions as last seen.
//!
//! Never: adopts a position the daemon did not open.

use super::*;

/// The exit rules stored beside each entry (`position_rules`); the type is the configuration's.
pub use crate::core::config::PositionRules;

/// One position as the broker reported it at the last reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerPositionRow {
    pub symbol: String,
    pub qty: Dec,
    pub avg_entry_price: Dec,
    pub current_price: Option<Dec>,
}

/// A position the daemon's own filled orders opened.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedPosition {
    pub bot: String,
    pub symbol: String,
    /// Negative for a short.
    pub qty: Dec,
    pub avg_entry_price: Dec,
    pub opened_at: Timestamp,
    pub high_water: Option<f64>,
}

/// Moves `bot`'s owned position in `symbol` by `signed` at `price` — the arithmetic is
/// `ledger::apply`'s, the multiplier the instrument's — and returns the P&L realised. With
/// `reduce_only` (an exit, a closing leg) it only ever lowers the position.
pub(super) fn move_owned(
    tx: &rusqlite::Transaction<'_>,
    bot: &str,
    symbol: &str,
    signed: Dec,
    price: Dec,
    reduce_only: bool,
    now: Timestamp,
) -> Result<Dec, StateError> {
    let row: Option<(String, String)> = tx
        .row(
            "SELECT qty, avg_entry_price FROM owned_positions WHERE bot = ?1 AND symbol = ?2",
            params![bot, symbol],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql("reading an owned position"))?;
    let bad = |e: crate::core::decimal::DecError| StateError::BadRow { what: "owned_positions", detail: e.to_string() };
    let before = match row {
        Some((q, a)) => {
            Some(Holding { qty: q.parse::<Dec>().map_err(bad)?, avg_entry_price: a.parse::<Dec>().map_err(bad)? })
        }
        None => None,
    };
    let fill = Fill { qty: signed, price, reduce_only };
    let applied = ledger::apply(before, fill, instrument::multiplier(symbol)).ok_or_else(|| StateError::BadRow {
        what: "owned_positions",
        detail: format!("{symbol}: {signed} at {price} is beyond the ledger's range"),
    })?;
    match applied.holding {
        None => {
            tx.run("DELETE FROM owned_positions WHERE bot = ?1 AND symbol = ?2", params![bot, symbol])
                .map_err(sql("closing an owned position"))?;
        }
        Some(h) => {
            tx.run(
                "INSERT INTO owned_positions (bot, symbol, qty, avg_entry_price, opened_at, high_water, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)
                 ON CONFLICT (bot, symbol) DO UPDATE SET qty = excluded.qty, avg_entry_price = excluded.avg_entry_price,
                     updated_at = excluded.updated_at",
                params![
                    bot,
                    symbol,
                    h.qty.to_string(),
                    h.avg_entry_price.to_string(),
                    clock::db_ts(now),
                    price.to_f64()
                ],
            )
            .map_err(sql("moving an owned position"))?;
        }
    }
    Ok(applied.realized)
}

impl State {
    /// Stores the exit rules `bot` enters `symbol` with (replacing older ones): written before
    /// the entry is recorded, so every position this build opens has them.
    pub fn put_position_rules(
        &self,
        bot: &str,
        symbol: &str,
        r: &PositionRules,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let e = &r.exits;
        self.conn
            .run(
                "INSERT INTO position_rules (bot, symbol, kind, stop_loss_pct, take_profit_pct, trailing_stop_pct,
                     time_stop_minutes, flatten_before_close_minutes, manage_until, exit_days_before_expiry, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (bot, symbol) DO UPDATE SET kind = excluded.kind, stop_loss_pct = excluded.stop_loss_pct,
                     take_profit_pct = excluded.take_profit_pct, trailing_stop_pct = excluded.trailing_stop_pct,
                     time_stop_minutes = excluded.time_stop_minutes,
                     flatten_before_close_minutes = excluded.flatten_before_close_minutes,
                     manage_until = excluded.manage_until, exit_days_before_expiry = excluded.exit_days_before_expiry,
                     recorded_at = excluded.recorded_at",
                params![
                    bot,
                    symbol,
                    r.kind.as_str(),
                    e.stop_loss_pct,
                    e.take_profit_pct,
                    e.trailing_stop_pct,
                    e.time_stop_minutes,
                    e.flatten_before_close_minutes,
                    r.manage_until.map(|t| t.to_string()),
                    r.exit_days_before_expiry,
                    clock::db_ts(now)
                ],
            )
            .map_err(sql("storing a position's exit rules"))?;
        Ok(())
    }

    /// The exit rules `bot` entered `symbol` with, if this build stored them.
    pub fn position_rules(&self, bot: &str, symbol: &str) -> Result<Option<PositionRules>, StateError> {
        let what = "reading a position's exit rules";
        let row = self
            .conn
            .row(
                "SELECT kind, stop_loss_pct, take_profit_pct, trailing_stop_pct, time_stop_minutes,
                        flatten_before_close_minutes, manage_until, exit_days_before_expiry
                 FROM position_rules WHERE bot = ?1 AND symbol = ?2",
                params![bot, symbol],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Exits {
                            stop_loss_pct: r.get(1)?,
                            take_profit_pct: r.get(2)?,
                            trailing_stop_pct: r.get(3)?,
                            time_stop_minutes: r.get(4)?,
                            flatten_before_close_minutes: r.get(5)?,
                            // A stored position's resting stop is followed through its order,
                            // not its rules.
                            broker_stop: false,
                            broker_stop_pct: None,
                        },
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<u32>>(7)?,
                    ))
                },
            )
            .optional()
            .map_err(sql(what))?;
        let Some((kind, exits, until, days)) = row else { return Ok(None) };
        let bad = |what: &'static str, detail: String| StateError::BadRow { what, detail };
        let kind = BotKind::parse(&kind).ok_or_else(|| bad("position_rules.kind", kind.clone()))?;
        let manage_until =
            until.map(|t| HhMm::parse(&t).map_err(|e| bad("position_rules.manage_until", e))).transpose()?;
        Ok(Some(PositionRules { kind, exits, manage_until, exit_days_before_expiry: days }))
    }

    pub fn owned_positions(&self) -> Result<Vec<OwnedPosition>, StateError> {
        self.read_or_kept(|k| &k.owned, &[Table::OwnedPositions], (), || self.read_owned_positions())
    }

    pub(super) fn read_owned_positions(&self) -> Result<Vec<OwnedPosition>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT bot, symbol, qty, avg_entry_price, opened_at, high_water FROM owned_positions ORDER BY bot, symbol",
            )
            .map_err(sql("reading owned positions"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                ))
            })
            .map_err(sql("reading owned positions"))?;
        let mut out = Vec::new();
        for row in rows {
            let (bot, symbol, qty, avg, opened, high_water) = row.map_err(sql("reading owned positions"))?;
            let num = |t: &str, what: &'static str| {
                t.parse::<Dec>().map_err(|e| StateError::BadRow { what, detail: e.to_string() })
            };
            out.push(OwnedPosition {
                qty: num(&qty, "owned_positions.qty")?,
                avg_entry_price: num(&avg, "owned_positions.avg_entry_price")?,
                opened_at: clock::parse_ts(&opened).map_err(bad_row("owned_positions.opened_at"))?,
                high_water,
                bot,
                symbol,
            });
        }
        Ok(out)
    }

    /// Replaces the stored picture of the broker's positions with a fresh one, in one
    /// transaction so `status` never reads half of it.
    pub fn replace_broker_positions(&mut self, rows: &[BrokerPositionRow], now: Timestamp) -> Result<(), StateError> {
        let what = "recording the broker's positions";
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(what))?;
        tx.run("DELETE FROM broker_positions", []).map_err(sql(what))?;
        for r in rows {
            tx.run(
                "INSERT INTO broker_positions (symbol, qty, avg_entry_price, current_price) VALUES (?1, ?2, ?3, ?4)",
                params![
                    r.symbol,
                    r.qty.to_string(),
                    r.avg_entry_price.to_string(),
                    r.current_price.map(|p| p.to_string())
                ],
            )
            .map_err(sql(what))?;
        }
        // Kept apart from the rows: an empty picture still says when the broker was read.
        tx.run(
            "INSERT INTO kv (key, value, updated_at) VALUES ('broker_positions_seen_at', ?1, ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            [clock::db_ts(now)],
        )
        .map_err(sql(what))?;
        tx.commit().map_err(sql(what))
    }

    pub fn broker_positions(&self) -> Result<Vec<BrokerPositionRow>, StateError> {
        let what = "reading the broker's positions";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT symbol, qty, avg_entry_price, current_price FROM broker_positions ORDER BY symbol")
            .map_err(sql(what))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(sql(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (symbol, qty, avg, price) = row.map_err(sql(what))?;
            let num = |t: &str, what: &'static str| {
                t.parse::<Dec>().map_err(|e| StateError::BadRow { what, detail: e.to_string() })
            };
            out.push(BrokerPositionRow {
                qty: num(&qty, "broker_positions.qty")?,
                avg_entry_price: num(&avg, "broker_positions.avg_entry_price")?,
                current_price: price.as_deref().map(|p| num(p, "broker_positions.current_price")).transpose()?,
                symbol,
            });
        }
        Ok(out)
    }

    /// When the broker's positions were last read, if ever.
    pub fn broker_positions_seen_at(&self) -> Result<Option<Timestamp>, StateError> {
        match self.kv_get("broker_positions_seen_at")? {
            Some(t) => clock::parse_ts(&t).map(Some).map_err(bad_row("kv.broker_positions_seen_at")),
            None => Ok(None),
        }
    }

    /// Caps (or drops, at zero) what a bot owns of a symbol: reconciliation found less at the
    /// broker than the ledger says.
    pub fn set_owned_qty(&self, bot: &str, symbol: &str, qty: Dec, now: Timestamp) -> Result<(), StateError> {
        if qty.is_zero() {
            self.conn
                .run("DELETE FROM owned_positions WHERE bot = ?1 AND symbol = ?2", params![bot, symbol])
                .map(drop)
                .map_err(sql("dropping an owned position"))
        } else {
            self.conn
                .run(
                    "UPDATE owned_positions SET qty = ?3, updated_at = ?4 WHERE bot = ?1 AND symbol = ?2",
                    params![bot, symbol, qty.to_string(), clock::db_ts(now)],
                )
                .map(drop)
                .map_err(sql("capping an owned position"))
        }
    }

    /// Re-bases `bot`'s position in `symbol` for a split (`core::corporate_action`), in one
    /// transaction: its quantity and average price become `held`'s, its best price since entry
    /// and the prices of its orders still in flight (a resting stop: its stop and limit) go by
    /// the split's inverse and their quantities by the split — as the broker adjusts a resting
    /// order. A holding that moved to a new ticker (`to` other than `symbol`) moves with its exit
    /// rules and its orders in flight. Nothing is booked: a split is no trade and realises nothing.
    pub fn rebase_split(
        &self,
        bot: &str,
        (symbol, to): (&str, &str),
        held: crate::core::ledger::Holding,
        split: crate::core::corporate_action::Split,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let what = "re-basing a position for a split";
        let bad = |detail: String| StateError::BadRow { what: "orders (split)", detail };
        let tx = self.conn.unchecked_transaction().map_err(sql(what))?;
        if to != symbol {
            for table in ["owned_positions", "position_rules"] {
                tx.run(
                    &format!("UPDATE OR REPLACE {table} SET symbol = ?3 WHERE bot = ?1 AND symbol = ?2"),
                    params![bot, symbol, to],
                )
                .map_err(sql(what))?;
            }
            tx.run(
                &format!(
                    "UPDATE orders SET symbol = ?3 WHERE bot = ?1 AND symbol = ?2 AND {}",
                    super::schema::UNFINISHED
                ),
                params![bot, symbol, to],
            )
            .map_err(sql(what))?;
        }
        let symbol = to;
        let best: Option<f64> = tx
            .row("SELECT high_water FROM owned_positions WHERE bot = ?1 AND symbol = ?2", params![bot, symbol], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql(what))?
            .flatten();
        let best = best.map(|b| b * split.old as f64 / split.new as f64);
        tx.run(
            "UPDATE owned_positions SET qty = ?3, avg_entry_price = ?4, high_water = ?5, updated_at = ?6
             WHERE bot = ?1 AND symbol = ?2",
            params![bot, symbol, held.qty.to_string(), held.avg_entry_price.to_string(), best, clock::db_ts(now)],
        )
        .map_err(sql(what))?;
        // Each order in flight: its id, and its quantity, stop and limit price as recorded.
        type InFlight = (String, Option<String>, Option<String>, Option<String>);
        let in_flight: Vec<InFlight> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT client_order_id, qty, stop_price, limit_price FROM orders
                     WHERE bot = ?1 AND symbol = ?2 AND {}",
                    super::schema::UNFINISHED
                ))
                .map_err(sql(what))?;
            let rows = stmt
                .query_map(params![bot, symbol], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(sql(what))?;
            rows.collect::<Result<_, _>>().map_err(sql(what))?
        };
        let by = |text: &Option<String>, f: &dyn Fn(Dec) -> Option<Dec>| -> Result<Option<String>, StateError> {
            text.as_deref()
                .map(|t| {
                    let d: Dec = t.parse().map_err(|_| bad(t.to_string()))?;
                    f(d).map(|d| d.to_string()).ok_or_else(|| bad(t.to_string()))
                })
                .transpose()
        };
        for (id, qty, stop, limit) in in_flight {
            tx.run(
                "UPDATE orders SET qty = ?2, stop_price = ?3, limit_price = ?4, updated_at = ?5 WHERE client_order_id = ?1",
                params![
                    id,
                    by(&qty, &|q| split.of_qty(q))?,
                    by(&stop, &|p| split.of_price(p))?,
                    by(&limit, &|p| split.of_price(p))?,
                    clock::db_ts(now)
                ],
            )
            .map_err(sql(what))?;
        }
        tx.commit().map_err(sql(what))
    }

    /// Records a price seen while holding: the best since entry is kept (the highest for a long,
    /// the lowest for a short), for trailing stops.
    pub fn record_best_price(&self, bot: &str, symbol: &str, price: f64, long: bool) -> Result<(), StateError> {
        // Only a better price changes the row.
        let sql_text = if long {
            "UPDATE owned_positions SET high_water = ?3
             WHERE bot = ?1 AND symbol = ?2 AND (high_water IS NULL OR high_water < ?3)"
        } else {
            "UPDATE owned_positions SET high_water = ?3
             WHERE bot = ?1 AND symbol = ?2 AND (high_water IS NULL OR high_water > ?3)"
        };
        self.conn.run(sql_text, params![bot, symbol, price]).map(drop).map_err(sql("recording a best price"))
    }
}
