//! The ledger's money per day: the day-start equity (never replaced within its date), each bot's
//! budget and realised P&L per trading date, and a bot's day so far (`bot_day`).
//!
//! Never: invents a budget.

use super::*;

/// One day's reference equity.
#[derive(Debug, Clone, PartialEq)]
pub struct DayStart {
    pub trading_date: Date,
    pub equity: f64,
    /// `last_equity` (the broker's previous close) or `first_seen`.
    pub source: String,
    /// When it was recorded (`None` for one not recorded: the ledger took no write).
    pub recorded_at: Option<Timestamp>,
}

/// One bot's budget for one trading date.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub trading_date: Date,
    pub bot: String,
    pub daily_loss_limit: f64,
    pub max_open_risk: f64,
    pub max_trades: u32,
    pub max_positions: u32,
    pub realized_pnl: f64,
    pub trades: u32,
}

/// A bot's trading date so far (`State::bot_day`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BotDay {
    pub realized_pnl: f64,
    pub entries: u32,
}

/// Adds realised P&L to a bot's day (the order's trading date), creating the day's row if needed.
/// The sums are stored as REAL and rounded to nine decimals at each addition, so a day of exact
/// fills reads back as the exact decimal sum (no float noise builds up in the cents).
pub(super) fn add_realized(
    tx: &rusqlite::Transaction<'_>,
    date: Option<&str>,
    bot: &str,
    realized: Dec,
    now: Timestamp,
) -> Result<(), StateError> {
    if realized.is_zero() {
        return Ok(());
    }
    let date = date.map_or_else(|| clock::trading_date(now).to_string(), str::to_string);
    tx.run(
        "INSERT INTO budgets (trading_date, bot, daily_loss_limit, max_open_risk, max_trades, max_positions,
                              realized_pnl, trades, updated_at)
         VALUES (?1, ?2, 0, 0, 0, 0, ?3, 0, ?4)
         ON CONFLICT (trading_date, bot) DO UPDATE SET realized_pnl = round(realized_pnl + excluded.realized_pnl, 9),
             updated_at = excluded.updated_at",
        params![date, bot, realized.to_f64(), clock::db_ts(now)],
    )
    .map(drop)
    .map_err(sql("recording realised P&L"))
}

impl State {
    pub fn day_start(&self, date: Date) -> Result<Option<DayStart>, StateError> {
        self.read_or_kept(|k| &k.day_start, &[Table::DayStartEquity], date, || self.read_day_start(date))
    }

    pub(super) fn read_day_start(&self, date: Date) -> Result<Option<DayStart>, StateError> {
        let row: Option<(f64, String, String)> = self
            .conn
            .row(
                "SELECT equity, source, recorded_at FROM day_start_equity WHERE trading_date = ?1",
                [date.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql("reading the day-start equity"))?;
        let Some((equity, source, at)) = row else { return Ok(None) };
        let recorded_at = clock::parse_ts(&at).map_err(bad_row("day_start_equity.recorded_at"))?;
        Ok(Some(DayStart { trading_date: date, equity, source, recorded_at: Some(recorded_at) }))
    }

    /// Records the day-start equity of `date` unless one is already recorded, and returns the one
    /// that stands. Once set it is never replaced within the day, whatever the account's size.
    pub fn record_day_start(
        &self,
        date: Date,
        equity: f64,
        source: &str,
        now: Timestamp,
    ) -> Result<DayStart, StateError> {
        // Read first: every iteration asks, and a write that changes nothing still takes the
        // file's write lock.
        if let Some(stands) = self.day_start(date)? {
            return Ok(stands);
        }
        self.conn
            .run(
                "INSERT INTO day_start_equity (trading_date, equity, source, recorded_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (trading_date) DO NOTHING",
                params![date.to_string(), equity, source, clock::db_ts(now)],
            )
            .map_err(sql("recording the day-start equity"))?;
        self.day_start(date)?.ok_or_else(|| StateError::BadRow {
            what: "day_start_equity",
            detail: "the row just written is missing".into(),
        })
    }

    /// A bot's trading date so far, in one read: what it realised (0 before its budget row is
    /// written) and its entries (`entries_on`).
    pub fn bot_day(&self, bot: &str, date: Date) -> Result<BotDay, StateError> {
        self.read_or_kept(
            |k| &k.days,
            &[Table::Budgets, Table::Orders],
            (bot.to_string(), date),
            || self.read_bot_day(bot, date),
        )
    }

    pub(super) fn read_bot_day(&self, bot: &str, date: Date) -> Result<BotDay, StateError> {
        self.conn
            .row(
                "SELECT (SELECT realized_pnl FROM budgets WHERE trading_date = ?1 AND bot = ?2),
                        (SELECT count(*) FROM orders WHERE trading_date = ?1 AND bot = ?2 AND intent = 'entry'
                         AND status NOT IN ('rejected', 'abandoned'))",
                params![date.to_string(), bot],
                |r| Ok(BotDay { realized_pnl: r.get::<_, Option<f64>>(0)?.unwrap_or(0.0), entries: r.get(1)? }),
            )
            .map_err(sql("reading a bot's day"))
    }

    pub fn put_budget(&self, b: &BudgetRow, now: Timestamp) -> Result<(), StateError> {
        self.conn
            .run(
                "INSERT INTO budgets (trading_date, bot, daily_loss_limit, max_open_risk, max_trades, max_positions, realized_pnl, trades, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (trading_date, bot) DO UPDATE SET
                     daily_loss_limit = excluded.daily_loss_limit, max_open_risk = excluded.max_open_risk,
                     max_trades = excluded.max_trades, max_positions = excluded.max_positions,
                     trades = excluded.trades, updated_at = excluded.updated_at",
                params![
                    b.trading_date.to_string(),
                    b.bot,
                    b.daily_loss_limit,
                    b.max_open_risk,
                    b.max_trades,
                    b.max_positions,
                    b.realized_pnl,
                    b.trades,
                    clock::db_ts(now)
                ],
            )
            .map(drop)
            .map_err(sql("writing a budget"))
    }

    pub fn budgets(&self, date: Date) -> Result<Vec<BudgetRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT bot, daily_loss_limit, max_open_risk, max_trades, max_positions, realized_pnl, trades
                 FROM budgets WHERE trading_date = ?1 ORDER BY bot",
            )
            .map_err(sql("reading budgets"))?;
        let rows = stmt
            .query_map([date.to_string()], |r| {
                Ok(BudgetRow {
                    trading_date: date,
                    bot: r.get(0)?,
                    daily_loss_limit: r.get(1)?,
                    max_open_risk: r.get(2)?,
                    max_trades: r.get(3)?,
                    max_positions: r.get(4)?,
                    realized_pnl: r.get(5)?,
                    trades: r.get(6)?,
                })
            })
            .map_err(sql("reading budgets"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading budgets"))
    }

    /// A bot's realised P&L over the trading dates `from` to `to`, both included.
    pub fn realized_between(&self, bot: &str, from: Date, to: Date) -> Result<f64, StateError> {
        self.conn
            .row(
                "SELECT coalesce(sum(realized_pnl), 0) FROM budgets WHERE bot = ?1 AND trading_date BETWEEN ?2 AND ?3",
                params![bot, from.to_string(), to.to_string()],
                |r| r.get(0),
            )
            .map_err(sql("summing realised P&L"))
    }
}
