//! The ledger's orders and their legs: numbering our client order ids (`ClientOrderId`),
//! recording an order durably before it is sent (`record_order`), booking the broker's reports
//! on it and its legs (`apply_order_report`, `apply_leg_reports`), and the reads of orders the
//! loop makes (unfinished, exits in flight, entries of a day, a bot's last exit).
//!
//! Never: issues a client order id twice, books a fill without its price, or keeps an answer
//! between calls (a backtest's ledger aside, `core::backtest_reads`).

use super::budgets::add_realized;
use super::positions::move_owned;
use super::schema::UNFINISHED;
use super::*;

/// One leg of a recorded multi-leg order.
#[derive(Debug, Clone, PartialEq)]
pub struct LegRecord {
    pub symbol: String,
    pub ratio: u32,
    /// `buy_to_open`, `sell_to_open`, `buy_to_close` or `sell_to_close`.
    pub position_intent: String,
}

/// One order as the daemon recorded it. Quantities stay text: the exact decimal that was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub client_order_id: String,
    pub bot: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Option<String>,
    pub notional: Option<String>,
    pub order_type: OrderType,
    /// As sent (`None` for a market order, and for orders recorded before migration 9).
    pub limit_price: Option<String>,
    pub stop_price: Option<String>,
    pub intent: Intent,
    pub status: RecordStatus,
    pub broker_order_id: Option<String>,
    pub created_at: Timestamp,
    /// The New York trading date the order belongs to.
    pub trading_date: Date,
    /// For an exit: the rule that asked for it (`stop_loss`, `daily_loss_flatten`, …).
    pub rule: Option<String>,
    pub filled_qty: Dec,
    /// The price it was decided at (`NewOrder::ref_price`); `None` before migration 17.
    pub ref_price: Option<String>,
}

/// An order about to be sent: what `State::record_order` numbers and records.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub bot: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Option<String>,
    pub notional: Option<String>,
    pub order_type: OrderType,
    pub limit_price: Option<String>,
    /// A stop or stop-limit order's trigger.
    pub stop_price: Option<String>,
    pub intent: Intent,
    /// For an exit: the rule that asked for it.
    pub rule: Option<String>,
    pub created_at: Timestamp,
    pub trading_date: Date,
    /// The legs of a multi-leg order, recorded with it.
    pub legs: Vec<LegRecord>,
    /// The price the order was decided at (the quote's mid, a protective stop's trigger, a
    /// spread's limit): its fills' slippage is measured from it. `None`: not known.
    pub ref_price: Option<String>,
}

/// The parts of a client order id this build issues: `th-<bot>-<yyyymmdd>-<epoch>-<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOrderId {
    pub bot: String,
    pub date: Date,
    /// Eight random characters drawn when a daemon first numbers an order on this ledger.
    pub epoch: String,
    /// The ledger's order counter, which only grows.
    pub n: u64,
}

impl ClientOrderId {
    /// The text sent to the broker: at most 3 + 32 + 1 + 8 + 1 + 8 + 1 + 20 = 74 characters of
    /// Alpaca's 128.
    pub fn text(&self) -> String {
        format!("th-{}-{}-{}-{}", self.bot, self.date.strftime("%Y%m%d"), self.epoch, self.n)
    }

    /// Reads one back; `None` for any other format (the `th-<bot>-<yyyymmdd>-<n>` of ledgers
    /// before migration 9 included). Parsed from the right: a bot id may contain `-`.
    pub fn parse(text: &str) -> Option<ClientOrderId> {
        let rest = text.strip_prefix("th-")?;
        let mut parts = rest.rsplitn(4, '-');
        let n = parts.next()?.parse().ok()?;
        let epoch =
            parts.next().filter(|e| e.len() == 8 && e.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))?;
        let date = parts.next().filter(|d| d.len() == 8)?;
        let date = Date::strptime("%Y%m%d", date).ok()?;
        let bot = parts.next().filter(|b| !b.is_empty())?;
        Some(ClientOrderId { bot: bot.to_string(), date, epoch: epoch.to_string(), n })
    }

    /// The id of an exit sent while the ledger takes no writes (disk full, read-only, I/O error),
    /// when no counter can be saved: derived from what the exit closes, so the same exit decided
    /// again — the next iteration, or after a restart on the same ledger — carries the same id,
    /// and Alpaca's refusal of a duplicate id (resolved to the order only if it matches) stops a
    /// second one. The epoch is `x` and seven characters of a hash of `closes` (FNV-1a: the same
    /// on every build and machine; a drawn epoch never starts with `x`); `n` is the attempt, 1
    /// and then one more after each refusal.
    pub fn derived(bot: &str, date: Date, closes: &str, attempt: u64) -> ClientOrderId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in closes.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let epoch = std::iter::once('x').chain(base36(h).take(7)).collect();
        ClientOrderId { bot: bot.to_string(), date, epoch, n: attempt }
    }

    /// Whether this id was derived (`derived`) rather than numbered by the ledger's counter.
    pub fn is_derived(&self) -> bool {
        self.epoch.starts_with('x')
    }
}

/// The base-36 digits of `x`, lowest first, forever (zeros once `x` is used up).
pub(super) fn base36(mut x: u64) -> impl Iterator<Item = char> {
    std::iter::from_fn(move || {
        let digit = (x % 36) as u32;
        x /= 36;
        char::from_digit(digit, 36)
    })
}

/// A New York trading date as the stored timestamps that bound it: [its start, the next's).
pub(super) fn date_bounds(date: Date) -> (String, String) {
    let next = date.tomorrow().unwrap_or(date);
    (clock::db_ts(clock::start_of_date(date)), clock::db_ts(clock::start_of_date(next)))
}

/// Whether an order of this id is recorded (on the connection, or inside a transaction of it).
fn is_recorded(conn: &rusqlite::Connection, client_order_id: &str, what: &'static str) -> Result<bool, StateError> {
    let n: i64 = conn
        .row("SELECT count(*) FROM orders WHERE client_order_id = ?1", [client_order_id], |r| r.get(0))
        .map_err(sql(what))?;
    Ok(n > 0)
}

/// Inserts an order and its legs as `recorded`, inside the caller's transaction.
/// Writes one booked fill (`fills`): what `core::round_trip` reads a trade's prices and times from.
fn insert_fill(
    tx: &rusqlite::Transaction<'_>,
    client_order_id: &str,
    symbol: &str,
    signed: Dec,
    price: Dec,
    realized: Dec,
    at: Timestamp,
) -> Result<(), StateError> {
    tx.run(
        "INSERT INTO fills (client_order_id, symbol, qty, price, realized_pnl, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![client_order_id, symbol, signed.to_string(), price.to_string(), realized.to_string(), clock::db_ts(at)],
    )
    .map(drop)
    .map_err(sql("recording a fill"))
}

pub(super) fn insert_order(tx: &rusqlite::Transaction<'_>, id: &str, o: &NewOrder) -> Result<(), StateError> {
    let what = "recording an order";
    tx.run(
        "INSERT INTO orders (client_order_id, bot, symbol, side, qty, notional, order_type, limit_price, intent,
                             status, filled_qty, created_at, updated_at, rule, trading_date, stop_price, ref_price)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'recorded', '0', ?10, ?10, ?11, ?12, ?13, ?14)",
        params![
            id,
            o.bot,
            o.symbol,
            o.side.as_str(),
            o.qty,
            o.notional,
            o.order_type.as_str(),
            o.limit_price,
            o.intent.as_str(),
            clock::db_ts(o.created_at),
            o.rule,
            o.trading_date.to_string(),
            o.stop_price,
            o.ref_price
        ],
    )
    .map_err(sql(what))?;
    for l in &o.legs {
        tx.run(
            "INSERT INTO order_legs (client_order_id, symbol, ratio, position_intent) VALUES (?1, ?2, ?3, ?4)",
            params![id, l.symbol, l.ratio, l.position_intent],
        )
        .map_err(sql("recording an order leg"))?;
    }
    Ok(())
}

/// The newest order's creation time: the end of the index `orders_by_created` (schema 18), not a
/// scan of every order (a test reads the plan).
pub(super) const NEWEST_ORDER: &str = "SELECT max(created_at) FROM orders";

/// A bot's filled exits of one day by rule, through the partial index `orders_filled_exits`
/// (schema 18; SQLite uses a partial index only for a query that repeats its condition).
pub(super) const EXITS_ON: &str = "SELECT coalesce(rule, ''), count(*) FROM orders
     WHERE bot = ?1 AND intent = 'exit' AND filled_qty IS NOT NULL AND filled_qty <> '0'
       AND updated_at >= ?2 AND updated_at < ?3
     GROUP BY rule ORDER BY rule";

/// The exits in flight, through the index `orders_unfinished` (a test reads the plan: a partial
/// index of every exit was once taken for it instead, a scan of every exit a minute).
pub(super) fn exits_in_flight_query() -> String {
    format!(
        "SELECT bot, symbol FROM orders WHERE {UNFINISHED}
         AND intent = 'exit' AND coalesce(rule, '') <> '{BROKER_STOP}'"
    )
}

/// The epoch of a throw-away ledger's ids (`State::open_scratch`, `State::open_memory`).
pub(super) const SCRATCH_EPOCH: &str = "backtest";

/// Eight characters of `0-9a-z`, the first never `x` (about 41 bits), from the operating
/// system's randomness — std's hash keys come from getrandom(2), which works in an empty chroot
/// too — mixed with the time and the process id.
pub(super) fn draw_epoch(now: Timestamp) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i128(now.as_nanosecond());
    h.write_u32(std::process::id());
    let x = h.finish();
    // The first character from `0-9a-w` only: an epoch starting with `x` is a derived id's.
    let first = char::from_digit((x % 33) as u32, 36).unwrap_or('0');
    std::iter::once(first).chain(base36(x / 33).take(7)).collect()
}

/// What one fill changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FillDelta {
    pub bot: String,
    pub symbol: String,
    /// Signed: positive bought, negative sold.
    pub qty: Dec,
    pub price: Dec,
    /// Realised on the part that reduced the position, exactly (`ledger::apply`).
    pub realized_pnl: Dec,
}

/// When a broker's report is booked (`booked`: the order's `updated_at`, what the day's counts and
/// cooldowns go by) and when the broker says the order filled (`filled`, Alpaca's `filled_at`:
/// the time its fills are recorded with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTime {
    pub booked: Timestamp,
    pub filled: Option<Timestamp>,
}

impl FillTime {
    /// Booked at `now`, the broker's fill time not known.
    pub fn booked(now: Timestamp) -> FillTime {
        FillTime { booked: now, filled: None }
    }

    /// The broker's fill time, else when it was booked.
    pub fn filled(self) -> Timestamp {
        self.filled.unwrap_or(self.booked)
    }
}

/// One booked fill as the ledger keeps it (`fills`, since migration 17): a multi-leg order's by
/// leg. What `core::round_trip` folds into trades.
#[derive(Debug, Clone, PartialEq)]
pub struct FillRecord {
    pub id: i64,
    pub client_order_id: String,
    /// The leg's symbol for a multi-leg order.
    pub symbol: String,
    /// Signed: positive bought, negative sold.
    pub qty: Dec,
    pub price: Dec,
    pub realized_pnl: Dec,
    /// The broker's fill time, or when the daemon booked it.
    pub at: Timestamp,
}

/// What one report on a multi-leg order booked (`State::apply_leg_reports`).
#[derive(Debug, Clone, PartialEq)]
pub struct LegBooking {
    /// Each leg's new fill, with its price.
    pub fills: Vec<FillDelta>,
    /// Every leg carries, priced, what the parent reports filled. While false the order is kept
    /// unfinished and asked again.
    pub settled: bool,
}

/// Keeps the broker's id of one of our orders, when the answer gave one, and nothing else.
pub(super) fn learn_broker_id(
    tx: &rusqlite::Transaction<'_>,
    client_order_id: &str,
    broker_order_id: Option<&str>,
) -> Result<(), StateError> {
    tx.run(
        "UPDATE orders SET broker_order_id = coalesce(?2, broker_order_id) WHERE client_order_id = ?1",
        params![client_order_id, broker_order_id],
    )
    .map(drop)
    .map_err(sql("recording an order's broker id"))
}

pub(super) fn add_order_realized(
    tx: &rusqlite::Transaction<'_>,
    client_order_id: &str,
    realized: Dec,
) -> Result<(), StateError> {
    if realized.is_zero() {
        return Ok(());
    }
    tx.run(
        "UPDATE orders SET realized_pnl = round(realized_pnl + ?2, 9) WHERE client_order_id = ?1",
        params![client_order_id, realized.to_f64()],
    )
    .map(drop)
    .map_err(sql("recording an order's P&L"))
}

impl State {
    /// Runs `f` in one write transaction that is on disk when this returns: committed with
    /// `synchronous=FULL`, so SQLite fsyncs the WAL before the commit completes. For what must
    /// survive a power cut — an order recorded before it is sent, a halt. Everything else commits
    /// with NORMAL (durable across a crash of the process, not of the machine).
    pub(super) fn durably<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        if self.durable {
            self.conn.pragma_update(None, "synchronous", "FULL").map_err(sql(what))?;
        }
        let result = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(sql(what))
            .and_then(|tx| {
                let value = f(&tx)?;
                tx.commit().map_err(sql(what))?;
                Ok(value)
            });
        if self.durable {
            // Back to the everyday level even when the transaction failed (it rolled back).
            self.conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql(what))?;
        }
        result
    }

    /// Numbers an order and records it, with its legs, in one durable transaction (`durably`)
    /// before it is sent; returns its client order id, `th-<bot>-<yyyymmdd>-<epoch>-<n>`
    /// (`ClientOrderId`). `n` is the ledger's counter (kv `order_seq`), which only grows; the
    /// epoch is drawn the first time this process numbers an order and recorded in `id_epochs`
    /// with it. So a new ledger, a moved or restored one, or one that lost its last transactions
    /// never issues an id this account has seen: Alpaca refuses a reused id forever, and an order
    /// found under one of ours is checked against this record before it is believed.
    pub fn record_order(&mut self, o: &NewOrder) -> Result<String, StateError> {
        let what = "recording an order";
        let fresh = self.epoch.is_none();
        let epoch = self.epoch.clone().unwrap_or_else(|| draw_epoch(o.created_at));
        let at = clock::db_ts(o.created_at);
        let client_order_id = self.durably(what, |tx| {
            if fresh {
                tx.run("INSERT INTO id_epochs (epoch, started_at) VALUES (?1, ?2)", params![epoch, at])
                    .map_err(sql(what))?;
            }
            // Counted, then read back, in this transaction. (Not `RETURNING value`: SQLite
            // gathers returned rows in a temporary table of their own, which cost as much as
            // recording the order itself.)
            tx.run(
                "INSERT INTO kv (key, value, updated_at) VALUES ('order_seq', '1', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, updated_at = excluded.updated_at",
                [&at],
            )
            .map_err(sql(what))?;
            let n: String =
                tx.row("SELECT value FROM kv WHERE key = 'order_seq'", [], |r| r.get(0)).map_err(sql(what))?;
            let n: u64 = n.parse().map_err(|_| StateError::BadRow { what: "kv.order_seq", detail: n.clone() })?;
            let id = ClientOrderId { bot: o.bot.clone(), date: o.trading_date, epoch: epoch.clone(), n }.text();
            insert_order(tx, &id, o)?;
            Ok(id)
        })?;
        self.epoch = Some(epoch);
        Ok(client_order_id)
    }

    /// Records an order that was sent under `client_order_id` while the ledger took no writes (an
    /// exit with an id derived from what it closes, `ClientOrderId::derived`), once it takes them
    /// again. `false` when an order of that id is already recorded (a second flush is harmless).
    pub fn record_order_as(&mut self, client_order_id: &str, o: &NewOrder) -> Result<bool, StateError> {
        let what = "recording an order sent while the ledger took no writes";
        self.durably(what, |tx| {
            if is_recorded(tx, client_order_id, what)? {
                return Ok(false);
            }
            insert_order(tx, client_order_id, o)?;
            Ok(true)
        })
    }

    /// Records an order of ours found at the broker that the ledger had lost (`trading-hydra
    /// recover`, an operator's act: `services::lost_orders`), as the broker holds it — its
    /// broker id, so it is followed and booked like any order of ours — and its epoch as one of
    /// this ledger's. `false` when an order of that id is recorded already.
    pub fn record_recovered(
        &mut self,
        client_order_id: &str,
        o: &NewOrder,
        broker_order_id: &str,
        epoch: &str,
    ) -> Result<bool, StateError> {
        let what = "recording an order recovered from the broker";
        self.durably(what, |tx| {
            if is_recorded(tx, client_order_id, what)? {
                return Ok(false);
            }
            tx.run(
                "INSERT OR IGNORE INTO id_epochs (epoch, started_at) VALUES (?1, ?2)",
                params![epoch, clock::db_ts(o.created_at)],
            )
            .map_err(sql(what))?;
            insert_order(tx, client_order_id, o)?;
            learn_broker_id(tx, client_order_id, Some(broker_order_id))?;
            Ok(true)
        })
    }

    /// Whether an order of this id is recorded.
    pub fn knows_order(&self, client_order_id: &str) -> Result<bool, StateError> {
        is_recorded(&self.conn, client_order_id, "looking up an order")
    }

    /// Whether this ledger drew (or recovered) `epoch`, and its order counter (kv `order_seq`, 0
    /// before its first order): what says whether an id of ours it does not know is another
    /// ledger's or its own lost one.
    pub fn id_standing(&self, epoch: &str) -> Result<(bool, u64), StateError> {
        let what = "reading the ledger's id epochs";
        let drawn: i64 = self
            .conn
            .row("SELECT count(*) FROM id_epochs WHERE epoch = ?1", [epoch], |r| r.get(0))
            .map_err(sql(what))?;
        let counter = match self.kv_get("order_seq")? {
            Some(n) => n.parse().map_err(|_| StateError::BadRow { what: "kv.order_seq", detail: n.clone() })?,
            None => 0,
        };
        Ok((drawn > 0, counter))
    }

    /// When the newest recorded order was created (`None`: no order yet).
    pub fn newest_order_at(&self) -> Result<Option<Timestamp>, StateError> {
        let what = "reading the newest order";
        let at: Option<String> = self.conn.row(NEWEST_ORDER, [], |r| r.get(0)).map_err(sql(what))?;
        at.map(|t| clock::parse_ts(&t).map_err(|e| StateError::BadRow { what: "orders.created_at", detail: e }))
            .transpose()
    }

    pub fn order_legs(&self, client_order_id: &str) -> Result<Vec<LegRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT symbol, ratio, position_intent FROM order_legs WHERE client_order_id = ?1 ORDER BY rowid",
            )
            .map_err(sql("reading order legs"))?;
        let rows = stmt
            .query_map([client_order_id], |r| {
                Ok(LegRecord { symbol: r.get(0)?, ratio: r.get(1)?, position_intent: r.get(2)? })
            })
            .map_err(sql("reading order legs"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading order legs"))
    }

    /// Like `apply_order_report`, for a multi-leg order: each leg's cumulative fill moves its own
    /// owned position (a leg that closes never flips one), all in one transaction. A leg is
    /// booked with its price or not at all. The order is final only when its legs are: each leg
    /// must carry, priced, the strategy units the parent reports filled (all of them once the
    /// parent says `filled`) times its ratio. Alpaca can report the parent `filled` while a leg
    /// still shows `filled_qty` 0 or no price, or answer without the legs: then the order keeps
    /// its status (unfinished, still followed), `LegBooking::settled` is false, and the next
    /// report books what is missing — never the parent's fill, which would invent a position.
    pub fn apply_leg_reports(
        &mut self,
        client_order_id: &str,
        status: &OrderStatus,
        broker_order_id: Option<&str>,
        filled_qty: Dec,
        legs: &[(String, Dec, Option<Dec>)],
        at: FillTime,
    ) -> Result<LegBooking, StateError> {
        let now = at.booked;
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql("recording a fill"))?;
        let row: Option<(String, Option<String>, Option<String>)> = tx
            .row("SELECT bot, trading_date, qty FROM orders WHERE client_order_id = ?1", [client_order_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(sql("recording a fill"))?;
        let Some((bot, date, ordered)) = row else { return Ok(LegBooking { fills: Vec::new(), settled: true }) };
        let recorded: Vec<(String, String, u32, String)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT symbol, position_intent, ratio, filled_qty FROM order_legs WHERE client_order_id = ?1
                     ORDER BY rowid",
                )
                .map_err(sql("recording a leg fill"))?;
            let rows = stmt
                .query_map([client_order_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(sql("recording a leg fill"))?;
            rows.collect::<Result<_, _>>().map_err(sql("recording a leg fill"))?
        };
        let bad = |what: &'static str| {
            move |e: crate::core::decimal::DecError| StateError::BadRow { what, detail: e.to_string() }
        };
        // The strategy units filled: the parent's count, and all that were ordered once it says
        // `filled` (whatever count it gives beside that word).
        let mut units = filled_qty;
        if *status == OrderStatus::Filled {
            let ordered: Dec = ordered.as_deref().unwrap_or("0").parse().map_err(bad("orders.qty"))?;
            units = units.max(ordered);
        }
        let mut settled = true;
        let mut deltas = Vec::new();
        let mut realized_total = Dec::ZERO;
        // Only the legs we sent are ours to book.
        for (symbol, intent, ratio, before) in recorded {
            let before: Dec = before.parse().map_err(bad("order_legs.filled_qty"))?;
            // What this leg must carry for the parent's report to be whole. (Overflow cannot
            // happen at real sizes; if it did, the leg is taken as short of it.)
            let due = units.checked_mul_int(i64::from(ratio));
            let Some((_, leg_filled, price)) = legs.iter().find(|(s, ..)| *s == symbol) else {
                settled &= due.is_some_and(|due| before >= due);
                continue;
            };
            let new = leg_filled.checked_sub(before).unwrap_or(Dec::ZERO);
            let priced = price.filter(|_| new > Dec::ZERO);
            let booked = if priced.is_some() { *leg_filled } else { before };
            settled &= due.is_some_and(|due| booked >= due);
            let Some(price) = priced else { continue };
            tx.run(
                "UPDATE order_legs SET filled_qty = ?3 WHERE client_order_id = ?1 AND symbol = ?2",
                params![client_order_id, symbol, leg_filled.to_string()],
            )
            .map_err(sql("recording a leg fill"))?;
            let signed = if intent.starts_with("buy") { new } else { Dec::ZERO.checked_sub(new).unwrap_or(Dec::ZERO) };
            let closing = intent.ends_with("_to_close");
            let realized = move_owned(&tx, &bot, &symbol, signed, price, closing, now)?;
            insert_fill(&tx, client_order_id, &symbol, signed, price, realized, at.filled())?;
            realized_total = realized_total.checked_add(realized).unwrap_or(realized_total);
            deltas.push(FillDelta { bot: bot.clone(), symbol, qty: signed, price, realized_pnl: realized });
        }
        if settled {
            tx.run(
                "UPDATE orders SET status = ?2, broker_order_id = coalesce(?3, broker_order_id), filled_qty = ?4,
                     updated_at = ?5 WHERE client_order_id = ?1",
                params![client_order_id, status.as_str(), broker_order_id, filled_qty.to_string(), clock::db_ts(now)],
            )
            .map_err(sql("recording a fill"))?;
        } else {
            learn_broker_id(&tx, client_order_id, broker_order_id)?;
        }
        add_realized(&tx, date.as_deref(), &bot, realized_total, now)?;
        add_order_realized(&tx, client_order_id, realized_total)?;
        tx.commit().map_err(sql("recording a fill"))?;
        Ok(LegBooking { fills: deltas, settled })
    }

    pub fn update_order_status(
        &self,
        client_order_id: &str,
        status: &RecordStatus,
        broker_order_id: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StateError> {
        let n = self
            .conn
            .run(
                "UPDATE orders SET status = ?2, broker_order_id = coalesce(?3, broker_order_id), updated_at = ?4
                 WHERE client_order_id = ?1",
                params![client_order_id, status.as_str(), broker_order_id, clock::db_ts(now)],
            )
            .map_err(sql("updating an order"))?;
        Ok(n > 0)
    }

    pub(super) fn read_orders(&self, filter: &str, arg: &str) -> Result<Vec<OrderRecord>, StateError> {
        let query = format!(
            "SELECT client_order_id, bot, symbol, side, qty, notional, order_type, intent, status, broker_order_id,
                    created_at, trading_date, rule, filled_qty, limit_price, stop_price, ref_price
             FROM orders WHERE {filter} ORDER BY created_at, rowid"
        );
        let mut stmt = self.conn.prepare_cached(&query).map_err(sql("reading orders"))?;
        let rows = stmt
            .query_map([arg], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                    (r.get::<_, Option<String>>(4)?, r.get::<_, Option<String>>(5)?, r.get::<_, String>(6)?),
                    (r.get::<_, String>(7)?, r.get::<_, String>(8)?, r.get::<_, Option<String>>(9)?),
                    (r.get::<_, String>(10)?, r.get::<_, Option<String>>(11)?, r.get::<_, Option<String>>(12)?),
                    (r.get::<_, Option<String>>(13)?, r.get::<_, Option<String>>(14)?, r.get::<_, Option<String>>(15)?),
                    r.get::<_, Option<String>>(16)?,
                ))
            })
            .map_err(sql("reading orders"))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                (coid, bot, symbol, side),
                (qty, notional, order_type),
                (intent, status, broker_id),
                (created, date, rule),
                (filled, limit_price, stop_price),
                ref_price,
            ) = row.map_err(sql("reading orders"))?;
            let created_at = clock::parse_ts(&created).map_err(bad_row("orders.created_at"))?;
            let trading_date = match date {
                Some(d) => d.parse().map_err(|_| StateError::BadRow { what: "orders.trading_date", detail: d })?,
                None => clock::trading_date(created_at),
            };
            let filled_qty = filled
                .as_deref()
                .map(str::parse::<Dec>)
                .transpose()
                .map_err(|e| StateError::BadRow { what: "orders.filled_qty", detail: e.to_string() })?
                .unwrap_or(Dec::ZERO);
            // Text only at this edge: a side, type or intent this build cannot read is a row it
            // cannot trust (the iteration is then unsure); an unknown status reads as not final.
            let word = |what: &'static str, text: &str| StateError::BadRow { what, detail: text.to_string() };
            out.push(OrderRecord {
                client_order_id: coid,
                bot,
                symbol,
                side: Side::parse(&side).ok_or_else(|| word("orders.side", &side))?,
                qty,
                notional,
                order_type: OrderType::parse(&order_type).ok_or_else(|| word("orders.order_type", &order_type))?,
                limit_price,
                stop_price,
                intent: Intent::parse(&intent).ok_or_else(|| word("orders.intent", &intent))?,
                status: RecordStatus::parse(&status),
                broker_order_id: broker_id,
                created_at,
                trading_date,
                rule,
                filled_qty,
                ref_price,
            });
        }
        Ok(out)
    }

    pub fn order(&self, client_order_id: &str) -> Result<Option<OrderRecord>, StateError> {
        Ok(self.read_orders("client_order_id = ?1", client_order_id)?.into_iter().next())
    }

    /// Every order, oldest first, with the P&L each realised: for reports.
    pub fn all_orders(&self) -> Result<Vec<(OrderRecord, f64)>, StateError> {
        let orders = self.read_orders("?1 = ?1", "")?;
        let mut out = Vec::with_capacity(orders.len());
        for o in orders {
            let pnl: f64 = self
                .conn
                .row("SELECT realized_pnl FROM orders WHERE client_order_id = ?1", [&o.client_order_id], |r| r.get(0))
                .map_err(sql("reading an order's P&L"))?;
            out.push((o, pnl));
        }
        Ok(out)
    }

    /// Every booked fill, oldest first (`fills`; the ledger kept none before migration 17).
    pub fn fills(&self) -> Result<Vec<FillRecord>, StateError> {
        let what = "reading fills";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, client_order_id, symbol, qty, price, realized_pnl, at FROM fills ORDER BY id")
            .map_err(sql(what))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    [r.get::<_, String>(3)?, r.get::<_, String>(4)?, r.get::<_, String>(5)?],
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(sql(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, client_order_id, symbol, [qty, price, pnl], at) = row.map_err(sql(what))?;
            let dec = |what: &'static str, t: &str| {
                t.parse::<Dec>().map_err(|e| StateError::BadRow { what, detail: e.to_string() })
            };
            out.push(FillRecord {
                id,
                client_order_id,
                symbol,
                qty: dec("fills.qty", &qty)?,
                price: dec("fills.price", &price)?,
                realized_pnl: dec("fills.realized_pnl", &pnl)?,
                at: clock::parse_ts(&at).map_err(bad_row("fills.at"))?,
            });
        }
        Ok(out)
    }

    /// `bot`'s exits that filled (some or all) during trading date `date`, counted by rule (a
    /// protective stop's fill is `broker_stop`, whenever it was placed).
    pub fn exits_on(&self, bot: &str, date: Date) -> Result<Vec<(String, u32)>, StateError> {
        let (from, to) = date_bounds(date);
        let what = "counting the day's exits";
        let mut stmt = self.conn.prepare_cached(EXITS_ON).map_err(sql(what))?;
        let rows = stmt.query_map(params![bot, from, to], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql(what))?;
        rows.collect::<Result<_, _>>().map_err(sql(what))
    }

    /// Orders that may still change: not in a final status.
    pub fn unfinished_orders(&self) -> Result<Vec<OrderRecord>, StateError> {
        // `?1` is unused but keeps one reader for every filter.
        let read = || self.read_orders(&format!("{UNFINISHED} AND ?1 = ?1"), "");
        self.read_or_kept(|k| &k.unfinished, &[Table::Orders], (), read)
    }

    /// (bot, symbol) of every exit order still in flight, protective stops aside (a resting
    /// stop is no exit in flight: an exit of the daemon's own clears it first); a pair may come
    /// twice. The narrow read of `unfinished_orders` the loop asks once a bot a minute. (No
    /// `DISTINCT`: with it SQLite walks a whole index of orders instead of the unfinished ones.)
    pub fn exits_in_flight(&self) -> Result<Vec<(String, String)>, StateError> {
        self.read_or_kept(|k| &k.exits, &[Table::Orders], (), || self.read_exits_in_flight())
    }

    pub(super) fn read_exits_in_flight(&self) -> Result<Vec<(String, String)>, StateError> {
        let mut stmt = self.conn.prepare_cached(&exits_in_flight_query()).map_err(sql("reading exits in flight"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("reading exits in flight"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading exits in flight"))
    }

    /// Entry orders a bot sent (or tried to) on a trading date: its trades of the day.
    pub fn entries_on(&self, bot: &str, date: Date) -> Result<u32, StateError> {
        Ok(self.bot_day(bot, date)?.entries)
    }

    /// Records a broker's report on one of our orders and, in the same transaction, moves the
    /// owned position by what newly filled and writes that fill (`fills`, at `at.filled()`). Returns the change, if any. Fills are cumulative
    /// (`filled_qty` is the order's total so far), so a report seen twice changes nothing.
    pub fn apply_order_report(
        &mut self,
        client_order_id: &str,
        status: &OrderStatus,
        broker_order_id: Option<&str>,
        filled_qty: Dec,
        avg_price: Option<Dec>,
        at: FillTime,
    ) -> Result<Option<FillDelta>, StateError> {
        let now = at.booked;
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql("recording a fill"))?;
        let row: Option<[Option<String>; 6]> = tx
            .row(
                "SELECT bot, symbol, side, coalesce(filled_qty, '0'), trading_date, intent FROM orders
                 WHERE client_order_id = ?1",
                [client_order_id],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?]),
            )
            .optional()
            .map_err(sql("recording a fill"))?;
        let Some([Some(bot), Some(symbol), Some(side), Some(before), date, intent]) = row else { return Ok(None) };
        let exit = intent.as_deref() == Some("exit");
        let before: Dec = before.parse().map_err(|e: crate::core::decimal::DecError| StateError::BadRow {
            what: "orders.filled_qty",
            detail: e.to_string(),
        })?;
        let new = filled_qty.checked_sub(before).unwrap_or(Dec::ZERO);
        if new > Dec::ZERO && avg_price.is_none() {
            // More filled, but the answer has no price: a fill is booked with its price or not at
            // all. Nothing moves — not the quantity, not the status, so the order stays unfinished
            // and its next report books the fill.
            learn_broker_id(&tx, client_order_id, broker_order_id)?;
            tx.commit().map_err(sql("recording a fill"))?;
            return Ok(None);
        }
        tx.run(
            "UPDATE orders SET status = ?2, broker_order_id = coalesce(?3, broker_order_id), filled_qty = ?4,
                 updated_at = ?5 WHERE client_order_id = ?1",
            params![
                client_order_id,
                status.as_str(),
                broker_order_id,
                filled_qty.max(before).to_string(),
                clock::db_ts(now)
            ],
        )
        .map_err(sql("recording a fill"))?;
        let delta = match (new > Dec::ZERO, avg_price) {
            (true, Some(price)) => {
                let signed = if side == "buy" { new } else { Dec::ZERO.checked_sub(new).unwrap_or(Dec::ZERO) };
                let realized = move_owned(&tx, &bot, &symbol, signed, price, exit, now)?;
                insert_fill(&tx, client_order_id, &symbol, signed, price, realized, at.filled())?;
                add_realized(&tx, date.as_deref(), &bot, realized, now)?;
                add_order_realized(&tx, client_order_id, realized)?;
                Some(FillDelta { bot, symbol, qty: signed, price, realized_pnl: realized })
            }
            _ => None,
        };
        tx.commit().map_err(sql("recording a fill"))?;
        Ok(delta)
    }

    /// When a bot's last exit in `symbol` (partly) filled, for its cooldown.
    pub fn last_exit(&self, bot: &str, symbol: &str) -> Result<Option<Timestamp>, StateError> {
        let at: Option<String> = self
            .conn
            .row(
                // Newest first down the index, to the first that filled: not `max()`, which
                // reads every exit of the pair.
                "SELECT updated_at FROM orders WHERE bot = ?1 AND symbol = ?2 AND intent = 'exit'
                 AND filled_qty IS NOT NULL AND filled_qty <> '0' ORDER BY updated_at DESC LIMIT 1",
                params![bot, symbol],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading the last exit"))?;
        at.as_deref().map(clock::parse_ts).transpose().map_err(bad_row("orders.updated_at"))
    }
}
