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
//! The broker layer (account, positions, orders) arrives with the broker issue; until then step 1
//! has no equity to read and reports `null`, and steps 3 and 4 have no bots to run.

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

use crate::core::clock::{self, Clock};
use crate::core::config::Config;
use crate::core::halt::{self, Halt, HaltReason};
use crate::core::health::FailureWindow;
use crate::core::risk;
use crate::core::state::{LoopRun, State, StateError};
use crate::event;
use crate::services::exitbot;

/// What one iteration did; also what step 5 logs and records.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSummary {
    pub iteration: u64,
    pub started_at: Timestamp,
    pub equity: Option<f64>,
    pub day_start_equity: Option<f64>,
    pub daily_pnl_pct: Option<f64>,
    pub halts: Vec<HaltReason>,
    /// True when a halt is active or the halts could not be read (fail closed).
    pub halted: bool,
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
    health: FailureWindow,
    iteration: u64,
}

impl Orchestrator {
    pub fn new(cfg: Config, state: State, clock: Box<dyn Clock>) -> Orchestrator {
        let h = &cfg.settings.health;
        let window = SignedDuration::from_secs(h.api_failure_window_seconds as i64);
        let health = FailureWindow::new(h.max_api_failures_in_window, window);
        Orchestrator { cfg, state, clock, health, iteration: 0 }
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

    /// The health window, where the broker layer reports each failed call.
    pub fn health_mut(&mut self) -> &mut FailureWindow {
        &mut self.health
    }

    /// Runs the five steps once.
    pub fn run_iteration(&mut self) -> LoopSummary {
        let started = Instant::now();
        self.iteration += 1;
        let now = self.clock.now();
        let mut errors: Vec<String> = Vec::new();

        // 1. Initialize. No broker yet: equity unknown, so no day-start is recorded either.
        let equity: Option<f64> = None;
        let day_start_equity = match self.state.day_start(clock::trading_date(now)) {
            Ok(d) => d.map(|d| d.equity),
            Err(e) => {
                self.step_failed("initialize", &e, now, &mut errors);
                None
            }
        };
        let daily_pnl_pct = equity.zip(day_start_equity).and_then(|(e, d)| risk::daily_pnl_pct(e, d));

        // 2. ExitBot. If the halts cannot be read the daemon is unsure of its state: halted.
        let (halts, unsure) = match exitbot::run(&self.state, &self.cfg, &mut self.health, now) {
            Ok(h) => (h.into_iter().map(|h| h.reason).collect::<Vec<_>>(), false),
            Err(e) => {
                self.step_failed("exitbot", &e, now, &mut errors);
                (Vec::new(), true)
            }
        };
        let halted = unsure || !halts.is_empty();

        // 3. PortfolioBot and 4. execution: exits would run here whatever the halts; entries only
        // when nothing is halted and, fail-closed, no step failed.
        let fail_closed = self.cfg.settings.safety.fail_closed;
        let entries_allowed = !halted && (errors.is_empty() || !fail_closed);
        let orders_submitted = 0;

        // 5. Finalize.
        let summary = LoopSummary {
            iteration: self.iteration,
            started_at: now,
            equity,
            day_start_equity,
            daily_pnl_pct,
            halts,
            halted,
            entries_allowed,
            orders_submitted,
            requests: 0,
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

    fn step_failed(&mut self, step: &'static str, e: &StateError, now: Timestamp, errors: &mut Vec<String>) {
        let text = format!("{step}: {e}");
        event!(Error, "iteration_error", iteration = self.iteration, step = step, error = e.to_string());
        // Every step error so far is a state error: record it as a halt if the database lets us.
        let halt = Halt { reason: HaltReason::StateError, detail: text.clone(), since: now, until: None };
        if let Err(e2) = halt::set(&self.state, &halt) {
            event!(Error, "iteration_error", iteration = self.iteration, step = "halt", error = e2.to_string());
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
