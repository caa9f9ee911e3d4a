//! The rows kept for the operator: key/value pairs, loop runs (pruned to `LOOP_RUNS_KEPT`), why
//! each bot is not entering (`bot_activity`) and the daily reports.
//!
//! Never: written by a backtest's ledger (`keeps_status_rows`), which nobody can read.

use super::*;

/// How many loop runs are kept: about 28 hours at the default 5 s interval. Older rows are deleted
/// as new ones arrive, so months of running do not fill a small SD card.
pub const LOOP_RUNS_KEPT: i64 = 20_000;

/// One iteration of the loop, as step 5 records it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopRun {
    pub iteration: u64,
    /// The wall clock's time: what `status` measures the daemon's liveness by.
    pub started_at: Timestamp,
    /// The market's time the iteration decided on (simulated in `--sim`; `None` in the rows of
    /// builds before schema 15).
    pub market_time: Option<Timestamp>,
    pub duration_ms: u64,
    pub equity: Option<f64>,
    pub day_start_equity: Option<f64>,
    pub daily_pnl_pct: Option<f64>,
    pub halted: bool,
    pub orders_submitted: u32,
    pub requests: u32,
    pub error: Option<String>,
}

/// Why a bot was not entering when the loop last noted it (`reason` `None`: it had just entered).
#[derive(Debug, Clone, PartialEq)]
pub struct BotActivity {
    pub bot: String,
    pub causes: Vec<Cause>,
    pub reason: Option<String>,
    pub since: Timestamp,
    pub updated_at: Timestamp,
}

impl State {
    pub fn kv_get(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn
            .row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql("reading a key"))
    }

    pub fn kv_set(&self, key: &str, value: &str, now: Timestamp) -> Result<(), StateError> {
        self.conn
            .run(
                "INSERT INTO kv (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, value, clock::db_ts(now)],
            )
            .map(drop)
            .map_err(sql("writing a key"))
    }

    /// Records the report of a trading date; `false` when that date already has one.
    pub fn insert_daily_report(
        &self,
        date: Date,
        equity: Option<f64>,
        day_start: Option<f64>,
        pnl_pct: Option<f64>,
        report: &str,
        now: Timestamp,
    ) -> Result<bool, StateError> {
        let n = self
            .conn
            .run(
                "INSERT INTO daily_reports (trading_date, equity, day_start, pnl_pct, report, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (trading_date) DO NOTHING",
                params![date.to_string(), equity, day_start, pnl_pct, report, clock::db_ts(now)],
            )
            .map_err(sql("recording a daily report"))?;
        Ok(n == 1)
    }

    pub fn daily_report(&self, date: Date) -> Result<Option<String>, StateError> {
        self.conn
            .row("SELECT report FROM daily_reports WHERE trading_date = ?1", [date.to_string()], |r| r.get(0))
            .optional()
            .map_err(sql("reading a daily report"))
    }

    /// Whether this ledger keeps the rows only `status` reads (loop runs, bot activity): not a
    /// backtest's ledger in memory. A caller need not prepare what would not be written.
    pub fn keeps_status_rows(&self) -> bool {
        self.for_status
    }

    /// Notes why `bot` is not entering (`None`: it sent an entry) since `since`.
    pub fn put_bot_activity(
        &self,
        bot: &str,
        idle: Option<&Idle>,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<(), StateError> {
        if !self.for_status {
            return Ok(());
        }
        let reason = idle.map(|i| i.detail.to_string());
        self.conn
            .run(
                "INSERT INTO bot_activity (bot, causes, reason, since, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (bot) DO UPDATE SET causes = excluded.causes, reason = excluded.reason,
                     since = excluded.since, updated_at = excluded.updated_at",
                params![bot, idle.map(Idle::causes_text), reason, clock::db_ts(since), clock::db_ts(now)],
            )
            .map(drop)
            .map_err(sql("writing a bot's activity"))
    }

    /// Every bot's last noted activity, by bot id.
    pub fn bot_activity(&self) -> Result<Vec<BotActivity>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bot, causes, reason, since, updated_at FROM bot_activity ORDER BY bot")
            .map_err(sql("reading the bots' activity"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sql("reading the bots' activity"))?;
        let mut out = Vec::new();
        for row in rows {
            let (bot, causes, reason, since, updated_at) = row.map_err(sql("reading the bots' activity"))?;
            out.push(BotActivity {
                bot,
                causes: causes.as_deref().map(Idle::parse_causes).unwrap_or_default(),
                reason,
                since: clock::parse_ts(&since).map_err(bad_row("bot_activity.since"))?,
                updated_at: clock::parse_ts(&updated_at).map_err(bad_row("bot_activity.updated_at"))?,
            });
        }
        Ok(out)
    }

    pub fn insert_loop_run(&self, run: &LoopRun) -> Result<(), StateError> {
        if !self.for_status {
            return Ok(());
        }
        self.conn.run(
            "INSERT INTO loop_runs (iteration, started_at, duration_ms, equity, day_start_equity, daily_pnl_pct, halted,
                                        orders_submitted, requests, error, market_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
            run.iteration as i64,
            clock::db_ts(run.started_at),
            run.duration_ms as i64,
            run.equity,
            run.day_start_equity,
            run.daily_pnl_pct,
            run.halted,
            run.orders_submitted,
            run.requests,
            run.error,
            run.market_time.map(clock::db_ts)
            ],
        )
        .map_err(sql("recording a loop run"))?;
        let id = self.conn.last_insert_rowid();
        // Pruning in batches keeps the cost off most iterations.
        if id % 1000 == 0 {
            self.conn
                .run("DELETE FROM loop_runs WHERE id <= ?1", [id - LOOP_RUNS_KEPT])
                .map_err(sql("pruning old loop runs"))?;
        }
        Ok(())
    }

    /// The market times of the iterations kept (`loop_runs`, the newest `LOOP_RUNS_KEPT`) on New
    /// York date `date`, oldest first, each with its equity: the steps `replay` runs a day at.
    pub fn iterations_on(&self, date: Date) -> Result<Vec<(Timestamp, Option<f64>)>, StateError> {
        let what = "reading the day's iterations";
        let (from, to) = super::orders::date_bounds(date);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT market_time, equity FROM loop_runs WHERE market_time >= ?1 AND market_time < ?2 ORDER BY id",
            )
            .map_err(sql(what))?;
        let rows = stmt
            .query_map(params![from, to], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?)))
            .map_err(sql(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (at, equity) = row.map_err(sql(what))?;
            out.push((clock::parse_ts(&at).map_err(bad_row("loop_runs.market_time"))?, equity));
        }
        Ok(out)
    }

    pub fn last_loop_run(&self) -> Result<Option<LoopRun>, StateError> {
        let row = self
            .conn
            .row(
                "SELECT iteration, started_at, duration_ms, equity, day_start_equity, daily_pnl_pct, halted, orders_submitted, requests, error,
                        market_time
                 FROM loop_runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("reading the last loop run"))?;
        let Some((
            iteration,
            started,
            duration_ms,
            equity,
            day_start_equity,
            daily_pnl_pct,
            halted,
            orders_submitted,
            requests,
            error,
            market_time,
        )) = row
        else {
            return Ok(None);
        };
        let market_time =
            market_time.map(|t| clock::parse_ts(&t)).transpose().map_err(bad_row("loop_runs.market_time"))?;
        Ok(Some(LoopRun {
            iteration: iteration.max(0) as u64,
            started_at: clock::parse_ts(&started).map_err(bad_row("loop_runs.started_at"))?,
            market_time,
            duration_ms: duration_ms.max(0) as u64,
            equity,
            day_start_equity,
            daily_pnl_pct,
            halted,
            orders_submitted,
            requests,
            error,
        }))
    }

    pub fn loop_run_count(&self) -> Result<i64, StateError> {
        self.conn.row("SELECT count(*) FROM loop_runs", [], |r| r.get(0)).map_err(sql("counting loop runs"))
    }
}
