//! The orchestrator: one iteration of the five-step loop.
//!
//! 1. initialize — account equity and the day-start reference;
//! 2. ExitBot — health and kill conditions, halts;
//! 3. PortfolioBot — risk budgets per bot;
//! 4. execution — each bot manages its positions, then may look for entries;
//! 5. finalize — the `loop_summary` event and a loop-run row.
//!
//! Owns: all the loop's state between iterations (the one place that does), and the fail-closed
//! rule: an iteration in which a step failed sends no entry when `safety.fail_closed` is set, and
//! an iteration unsure of its halts sends none whatever the setting.
//!
//! Never: sleeps, handles signals or decides how often it runs (that is the runner's), and never
//! lets an error escape an iteration: errors become events, halts and a summary.
//!
//! Steps 3 and 4 (budgets, bots) arrive with the loop and bots issues; until then no order is sent.

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

use crate::core::clock::{self, Clock};
use crate::core::config::Config;
use crate::core::halt::{self, Halt, HaltReason};
use crate::core::health::FailureWindow;
use crate::core::risk;
use crate::core::state::{LoopRun, State};
use crate::event;
use crate::services::broker::Broker;
use crate::services::exitbot;
use crate::services::market_session::BrokerSession;

/// What one iteration did; also what step 5 logs and records.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSummary {
    pub iteration: u64,
    /// The market's time (simulated in `--sim`): what the steps decided on.
    pub market_time: Timestamp,
    /// The wall clock's time: what `status` measures the daemon's liveness by.
    pub started_at: Timestamp,
    pub equity: Option<f64>,
    pub day_start_equity: Option<f64>,
    pub daily_pnl_pct: Option<f64>,
    pub halts: Vec<HaltReason>,
    /// True when a halt is active or the halts could not be read (fail closed).
    pub halted: bool,
    /// The stock market, by the broker's clock (crypto trades regardless).
    pub market_open: bool,
    pub entries_allowed: bool,
    pub orders_submitted: u32,
    pub requests: u32,
    pub duration_ms: u64,
    /// The first step error of the iteration, if any.
    pub error: Option<String>,
}

pub struct Orchestrator {
    cfg: Config,
    state: State,
    clock: Box<dyn Clock>,
    broker: Box<dyn Broker>,
    session: BrokerSession,
    health: FailureWindow,
    iteration: u64,
}

impl Orchestrator {
    pub fn new(cfg: Config, state: State, clock: Box<dyn Clock>, broker: Box<dyn Broker>) -> Orchestrator {
        let h = &cfg.settings.health;
        let window = SignedDuration::from_secs(h.api_failure_window_seconds as i64);
        let health = FailureWindow::new(h.max_api_failures_in_window, window);
        Orchestrator { cfg, state, clock, broker, session: BrokerSession::new(), health, iteration: 0 }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The health window. The broker's failed calls are added to it every iteration.
    pub fn health_mut(&mut self) -> &mut FailureWindow {
        &mut self.health
    }

    /// Moves the broker's call statistics into the health window; returns the requests made.
    fn collect_call_stats(&mut self) -> u32 {
        let stats = self.broker.take_call_stats();
        for at in stats.failures {
            self.health.record_failure(at);
        }
        stats.requests
    }

    /// Runs the five steps once.
    pub fn run_iteration(&mut self) -> LoopSummary {
        let started = Instant::now();
        let wall = Timestamp::now();
        self.iteration += 1;
        let now = self.clock.now();
        let mut errors: Vec<String> = Vec::new();

        // 1. Initialize: the account, and the day-start reference of this trading date (Alpaca's
        // previous close when it gives one, else the first equity seen). Never replaced within
        // the day.
        let trading_date = clock::trading_date(now);
        let account = match self.broker.account() {
            Ok(a) => Some(a),
            Err(e) => {
                self.step_failed("initialize", &e, false, now, &mut errors);
                None
            }
        };
        let equity = account.as_ref().map(|a| a.equity.to_f64());
        let day_start = match &account {
            Some(a) => {
                let (value, source) = match a.last_equity {
                    Some(last) => (last, "last_equity"),
                    None => (a.equity, "first_seen"),
                };
                self.state.record_day_start(trading_date, value.to_f64(), source, now).map(Some)
            }
            None => self.state.day_start(trading_date),
        };
        let day_start_equity = match day_start {
            Ok(d) => d.map(|d| d.equity),
            Err(e) => {
                self.step_failed("initialize", &e, true, now, &mut errors);
                None
            }
        };
        let daily_pnl_pct = equity.zip(day_start_equity).and_then(|(e, d)| risk::daily_pnl_pct(e, d));
        let market_open = self.session.session_at(self.broker.as_mut(), now).is_open;
        let mut requests = self.collect_call_stats();

        // 2. ExitBot. If the halts cannot be read the daemon is unsure of its state: halted.
        let (halts, unsure) = match exitbot::run(&self.state, &self.cfg, &mut self.health, now) {
            Ok(h) => (h.into_iter().map(|h| h.reason).collect::<Vec<_>>(), false),
            Err(e) => {
                self.step_failed("exitbot", &e, true, now, &mut errors);
                (Vec::new(), true)
            }
        };
        let halted = unsure || !halts.is_empty();

        // 3. PortfolioBot and 4. execution: exits would run here whatever the halts; entries only
        // when nothing is halted and, fail-closed, no step failed.
        let fail_closed = self.cfg.settings.safety.fail_closed;
        let entries_allowed = !halted && (errors.is_empty() || !fail_closed);
        let orders_submitted = 0;
        requests += self.collect_call_stats();

        // 5. Finalize.
        let summary = LoopSummary {
            iteration: self.iteration,
            market_time: now,
            started_at: wall,
            equity,
            day_start_equity,
            daily_pnl_pct,
            halts,
            halted,
            market_open,
            entries_allowed,
            orders_submitted,
            requests,
            duration_ms: started.elapsed().as_millis() as u64,
            error: errors.into_iter().next(),
        };
        self.finalize(&summary);
        summary
    }

    /// Runs one iteration under `catch_unwind`. A panic (a bug) does not end the daemon: it
    /// becomes an `iteration_error` event and an `internal_error` halt, and `None` is returned.
    pub fn run_iteration_guarded(&mut self) -> Option<LoopSummary> {
        match panic::catch_unwind(AssertUnwindSafe(|| self.run_iteration())) {
            Ok(summary) => Some(summary),
            Err(payload) => {
                self.record_panic(&panic_message(payload.as_ref()));
                None
            }
        }
    }

    /// A panic escaped an iteration: halt entries until an operator has looked.
    fn record_panic(&mut self, message: &str) {
        let now = self.clock.now();
        let detail = format!("iteration {} panicked: {message}", self.iteration);
        event!(Error, "iteration_error", iteration = self.iteration, step = "panic", error = detail.as_str());
        let halt = Halt { reason: HaltReason::InternalError, detail, since: now, until: None };
        if let Err(e) = halt::set(&self.state, &halt) {
            event!(Error, "iteration_error", iteration = self.iteration, step = "panic", error = e.to_string());
        }
    }

    /// Records a failed step. A state-database error is also a `state_error` halt (if the
    /// database still takes writes): the daemon is unsure of what it owns. A broker error is not:
    /// the health window counts those.
    fn step_failed(
        &mut self,
        step: &'static str,
        e: &dyn std::fmt::Display,
        state_error: bool,
        now: Timestamp,
        errors: &mut Vec<String>,
    ) {
        let text = format!("{step}: {e}");
        event!(Error, "iteration_error", iteration = self.iteration, step = step, error = e.to_string());
        if state_error {
            let halt = Halt { reason: HaltReason::StateError, detail: text.clone(), since: now, until: None };
            if let Err(e2) = halt::set(&self.state, &halt) {
                event!(Error, "iteration_error", iteration = self.iteration, step = "halt", error = e2.to_string());
            }
        }
        errors.push(text);
    }

    fn finalize(&mut self, s: &LoopSummary) {
        let halts: Vec<&str> = s.halts.iter().map(|r| r.as_str()).collect();
        let halts = halts.join(",");
        event!(
            Info,
            "loop_summary",
            iteration = s.iteration,
            equity = s.equity,
            day_start_equity = s.day_start_equity,
            daily_pnl_pct = s.daily_pnl_pct,
            halted = s.halted,
            halts = halts.as_str(),
            market_open = s.market_open,
            entries_allowed = s.entries_allowed,
            orders_submitted = s.orders_submitted,
            requests = s.requests,
            duration_ms = s.duration_ms,
        );
        let run = LoopRun {
            iteration: s.iteration,
            started_at: s.started_at,
            duration_ms: s.duration_ms,
            equity: s.equity,
            day_start_equity: s.day_start_equity,
            daily_pnl_pct: s.daily_pnl_pct,
            halted: s.halted,
            orders_submitted: s.orders_submitted,
            requests: s.requests,
            error: s.error.clone(),
        };
        if let Err(e) = self.state.insert_loop_run(&run) {
            event!(Error, "iteration_error", iteration = s.iteration, step = "finalize", error = e.to_string());
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}
