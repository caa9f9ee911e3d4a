//! The daily report: one per trading date — equity, the day's P&L, each bot's P&L, trades and
//! exits by rule (`broker_stop` for a resting stop's), the halts and the failed broker calls of
//! the day — as a `daily_report` event, a row in the
//! state database and a notification.
//!
//! Owns: deciding when a date's report is due (after the stock close, 16:00 New York, when a
//! stock or options bot is configured; for a crypto-only set-up when the date has ended) and
//! building it. Never: reports a date twice (the database keeps one row per date).

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::json;

use crate::core::clock::{self, MarketCalendar, RegularSession};
use crate::core::state::{State, StateError};
use crate::event;
use crate::services::notify;

/// What the loop tells the reporter each iteration.
#[derive(Debug, Default)]
pub struct DailyReporter {
    /// The trading date of the last iteration, its last equity and day-start equity.
    last: Option<(Date, Option<f64>, Option<f64>)>,
    /// Failed broker calls counted per trading date.
    api_errors: BTreeMap<Date, u32>,
}

impl DailyReporter {
    pub fn new() -> DailyReporter {
        DailyReporter::default()
    }

    /// Counts the iteration; writes a report when one is due. `stocks` says whether a stock or
    /// options bot is configured (their day ends at the close).
    pub fn after_iteration(
        &mut self,
        state: &State,
        now: Timestamp,
        equity: Option<f64>,
        day_start: Option<f64>,
        failures: u32,
        stocks: bool,
    ) -> Result<(), StateError> {
        let today = clock::trading_date(now);
        *self.api_errors.entry(today).or_default() += failures;
        // A date that ended since the last iteration is reported with what was last seen of it.
        if let Some((date, eq, ds)) = self.last.filter(|(d, ..)| *d < today) {
            self.report(state, date, eq, ds, now)?;
        }
        if stocks {
            let close = RegularSession.session_at(clock::start_of_date(today)).next_close;
            if clock::trading_date(close) == today && now >= close {
                self.report(state, today, equity, day_start, now)?;
            }
        }
        self.last = Some((today, equity.or(self.last.and_then(|l| l.1)), day_start));
        // Only the days not yet reported need their counts.
        self.api_errors.retain(|d, _| *d >= today.yesterday().unwrap_or(today));
        Ok(())
    }

    fn report(
        &self,
        state: &State,
        date: Date,
        equity: Option<f64>,
        day_start: Option<f64>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        if state.daily_report(date)?.is_some() {
            return Ok(());
        }
        let pnl_pct = equity.zip(day_start).and_then(|(e, d)| crate::core::risk::daily_pnl_pct(e, d));
        let mut bots = serde_json::Map::new();
        for b in state.budgets(date)?.iter() {
            let trades = state.entries_on(&b.bot, date)?;
            let exits: serde_json::Map<String, serde_json::Value> =
                state.exits_on(&b.bot, date)?.into_iter().map(|(r, n)| (r, json!(n))).collect();
            bots.insert(
                b.bot.clone(),
                json!({"realized_pnl": (b.realized_pnl * 100.0).round() / 100.0, "trades": trades, "exits": exits}),
            );
        }
        let halts: serde_json::Map<String, serde_json::Value> =
            state.halts_on(date)?.into_iter().map(|(r, n)| (r, json!(n))).collect();
        let api_errors = self.api_errors.get(&date).copied().unwrap_or(0);
        let report = json!({
            "trading_date": date.to_string(),
            "equity": equity,
            "day_start_equity": day_start,
            "day_pnl_pct": pnl_pct,
            "bots": bots,
            "halts": halts,
            "api_errors": api_errors,
        });
        if !state.insert_daily_report(date, equity, day_start, pnl_pct, &report.to_string(), now)? {
            return Ok(());
        }
        let date_text = date.to_string();
        event!(
            Info,
            "daily_report",
            trading_date = date_text.as_str(),
            equity = equity,
            day_pnl_pct = pnl_pct,
            api_errors = api_errors,
            report = report.to_string(),
        );
        let pnl = pnl_pct.map_or("unknown".to_string(), |p| format!("{p:+.2} %"));
        notify::send(notify::Note {
            event: "daily_report",
            title: format!("Trading Hydra, {date_text}: {pnl}"),
            text: report.to_string(),
        });
        Ok(())
    }
}
