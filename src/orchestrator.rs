//! The orchestrator: one iteration of the five-step loop.
//!
//! 1. initialize — the ledger's files checked (still the ones opened: `State::files_changed`), the
//!    account, the day-start reference (moved by the day's deposits and withdrawals:
//!    `services::transfers`), the market session; then our orders are
//!    followed to their fills, and (at start-up and every `runner.reconcile_every_iterations`)
//!    owned positions are reconciled with the broker's and the broker's recent orders are held
//!    against the ledger (`services::lost_orders`: orders of ours it does not know halt entries);
//! 2. ExitBot — kill conditions, halts, and the daily-loss cancel and flatten;
//! 3. PortfolioBot — each bot's budget for the trading date;
//! 4. execution — each bot's exits (always), then its entries (only when allowed);
//! 5. finalize — the `loop_summary` event and a loop-run row (and, once a trading date, the
//!    daily backup of the ledger when `backup.folder` is set; at most every 15 s the metrics
//!    file when `metrics.textfile_path` is).
//!
//! Owns: all the loop's state between iterations (the one place that does), and the fail-closed
//! rule: an iteration in which a step failed sends no entry when `safety.fail_closed` is set, and
//! an iteration unsure of its halts, orders or positions sends none whatever the setting; and the
//! check that the ledger is the broker account's (`confirm_account`): until it is known, an
//! iteration reads the account and does nothing else.
//!
//! Never: sleeps, handles signals or decides how often it runs (that is the runner's), and never
//! lets an error escape an iteration: errors become events, halts and a summary.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use crate::bots::Bot;
use crate::core::clock::{self, Clock};
use crate::core::config::Config;
use crate::core::config_diff;
use crate::core::decimal::Dec;
use crate::core::halt::{self, Halt, HaltReason};
use crate::core::halt_file;
use crate::core::halt_store;
use crate::core::health::FailureWindow;
use crate::core::ledger_account::{self, Claim, LedgerAccount};
use crate::core::risk;
use crate::core::risk::Budget;
use crate::core::state::{BudgetRow, DayStart, LoopRun, State, StateError};
use crate::event;
use crate::services::broker::{Account, Broker};
use crate::services::daily_backup::DailyBackup;
use crate::services::daily_report::DailyReporter;
use crate::services::execution::{ExecError, Execution, Step};
use crate::services::exitbot::{self, Readings};
use crate::services::lost_orders::{self, Check};
use crate::services::market_session::BrokerSession;
use crate::services::metrics::{MetricsFile, Totals};
use crate::services::notify;
use crate::services::portfolio;
use crate::services::transfers::Transfers;
use crate::sim::sim_broker::SIM_ACCOUNT_ID;

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

impl LoopSummary {
    /// The console's heartbeat line (`logging.console: events`), stamped `at` like the events
    /// around it (`logging::now`: the clock the daemon trades by; a simulation adds the wall
    /// time): `2026-12-02 07:31:00 heartbeat  equity $100012.34  day +0.01 % (+$12.34)  positions
    /// 2  halts none  market open  #612`.
    pub fn heartbeat(
        &self,
        at: Timestamp,
        positions: Option<usize>,
        tz: &jiff::tz::TimeZone,
        simulated: bool,
    ) -> String {
        let when = at.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d %H:%M:%S");
        let equity = self.equity.map_or("unknown".to_string(), |e| format!("${e:.2}"));
        let day = match (self.equity, self.day_start_equity, self.daily_pnl_pct) {
            (Some(e), Some(d), Some(p)) => format!("{p:+.2} % ({})", crate::services::status::signed_money(e - d)),
            _ => "unknown".to_string(),
        };
        let positions = positions.map_or("?".to_string(), |n| n.to_string());
        let halts = if self.halts.is_empty() && !self.halted {
            "none".to_string()
        } else if self.halts.is_empty() {
            "unknown (halted)".to_string()
        } else {
            self.halts.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(",")
        };
        let market = if self.market_open { "open" } else { "closed" };
        let wall = if simulated {
            format!("  (simulated; wall {})", self.started_at.to_zoned_datetime(tz.clone()).strftime("%H:%M:%S"))
        } else {
            String::new()
        };
        format!(
            "{when} heartbeat  equity {equity}  day {day}  positions {positions}  halts {halts}  market {market}  #{}{wall}",
            self.iteration
        )
    }
}

/// How far apart a person's console gets its heartbeat lines, in the clock the daemon trades by:
/// a minute of the wall clock's time (a simulation's `speed` minutes of its own), rounded down to
/// a whole step of 1, 2, 5, 10, 15, 30 or 60 minutes and never more than an hour. So a simulation
/// at 60× beats once a simulated hour (once a real minute), and one at 3600× still once a
/// simulated hour (once a real second) rather than once in sixty simulated hours.
pub fn heartbeat_pace(speed: f64) -> SignedDuration {
    let wanted = 60.0 * speed.max(1.0);
    let step = [60, 30, 15, 10, 5, 2, 1].into_iter().find(|m| f64::from(*m) * 60.0 <= wanted).unwrap_or(1);
    SignedDuration::from_mins(i64::from(step))
}

/// Whether the heartbeat is due at `now`: the first line, then the first iteration past each whole
/// step of `pace` (on the clock's own boundaries: :00, :15, … of its time), so the lines keep a
/// fixed pace in that clock, however the iterations fall.
pub fn heartbeat_due(last: Option<Timestamp>, now: Timestamp, pace: SignedDuration) -> bool {
    let step = pace.as_secs().max(1);
    last.is_none_or(|last| now.as_second().div_euclid(step) > last.as_second().div_euclid(step))
}

pub struct Orchestrator {
    cfg: Config,
    state: State,
    clock: Box<dyn Clock>,
    broker: Box<dyn Broker>,
    bots: Vec<Box<dyn Bot>>,
    session: BrokerSession,
    execution: Execution,
    health: FailureWindow,
    /// Whether the health window was tripped at the last look: repeated API errors are notified
    /// once each time it trips, not once an iteration.
    api_errors_notified: bool,
    iteration: u64,
    previous_equity: Option<f64>,
    /// Symbols whose quotes were stale in the last execution step.
    stale: Vec<String>,
    /// Today's budgets, computed once per trading date and shared with each iteration's step 4
    /// (not copied every minute).
    budgets: Option<(Date, Rc<[Budget]>)>,
    reporter: DailyReporter,
    /// Failed broker calls of this iteration, for the daily report.
    failures: u32,
    /// Halts the ledger could not store (disk full, read-only, I/O error): they stop entries
    /// like stored ones, and are stored once the ledger takes writes again.
    held_halts: Vec<Halt>,
    /// The texts of `settings.yaml` and `bots.yaml` the configuration was read from, for the
    /// changes a `reload` logs (`keep_texts`).
    texts: Option<(String, String)>,
    /// The last `reload` request seen in the ledger (`None`: not looked yet).
    reload_seen: Option<Option<String>>,
    /// Whether the ledger is known to be the broker account's (`ledger_account::claim`).
    account: AccountCheck,
    /// Whether owned positions were reconciled with the broker's since start-up: until then,
    /// every iteration tries again.
    reconciled: bool,
    /// The check for orders of ours the ledger does not know (`services::lost_orders`).
    lost: LostWatch,
    /// The day's copy of the ledger (`backup.folder`).
    daily_backup: DailyBackup,
    /// The trading date's deposits and withdrawals (`services::transfers`), and their net at the
    /// last iteration (for the equity-jump check).
    transfers: Transfers,
    transfers_seen: Option<(Date, Dec)>,
    /// The ledger's files were found changed (`State::files_changed`): said once, and what the
    /// connection holds is folded into the database file after every iteration.
    files_changed: bool,
    /// A halt file (`core::halt_file`) was seen at the last iteration: its `halt` is logged once.
    halt_file_seen: bool,
    /// The metrics file (`metrics.textfile_path`), and the totals it reports.
    metrics: MetricsFile,
    totals: Totals,
    /// The broker's positions at the last reconcile, by market value (for Alpaca's closing-only
    /// restriction).
    position_values: Vec<(String, f64)>,
}

/// Where the check for lost orders stands. It runs with each reconcile; at start-up until it
/// has once succeeded (no entry goes before: the iteration is unsure of its state), and every
/// iteration while it finds any (so the `ledger_behind` halt lifts as soon as none is left).
#[derive(Debug, Default)]
struct LostWatch {
    checked: bool,
    /// The ids the last check found: `ledger_behind` is logged when they change.
    found: Vec<String>,
}

/// Whether the ledger belongs to the account the broker trades (`Orchestrator::confirm_account`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AccountCheck {
    /// Not yet known (the account could not be read so far): an iteration reads the account and
    /// nothing else, so nothing is followed, cancelled, reconciled or sent in a ledger that may be
    /// another account's.
    Unconfirmed,
    /// The ledger is this account's.
    Confirmed,
    /// The ledger is another account's: the runner stops (exit 2) with this message.
    Refused(String),
}

/// The ledger's kv keys of `reload`: the request the command writes, the answer the daemon
/// writes back, and the configuration folder the daemon reads (for the command to compare).
pub const RELOAD_REQUEST_KEY: &str = "reload_request";
pub const RELOAD_RESULT_KEY: &str = "reload_result";
pub const CONFIG_DIR_KEY: &str = "config_dir";

impl Orchestrator {
    /// With the bots of the configuration.
    pub fn new(cfg: Config, state: State, clock: Box<dyn Clock>, broker: Box<dyn Broker>) -> Orchestrator {
        let bots = crate::bots::from_config(&cfg);
        Orchestrator::with_bots(cfg, state, clock, broker, bots)
    }

    /// With the given bots (tests bring their own).
    pub fn with_bots(
        cfg: Config,
        state: State,
        clock: Box<dyn Clock>,
        broker: Box<dyn Broker>,
        bots: Vec<Box<dyn Bot>>,
    ) -> Orchestrator {
        let h = &cfg.settings.health;
        let window = SignedDuration::from_secs(h.api_failure_window_seconds as i64);
        let health = FailureWindow::new(h.max_api_failures_in_window, window);
        let skew_allowed = SignedDuration::from_secs(h.max_clock_skew_seconds as i64);
        Orchestrator {
            cfg,
            state,
            clock,
            broker,
            bots,
            session: BrokerSession::new(skew_allowed),
            execution: Execution::new(),
            health,
            api_errors_notified: false,
            iteration: 0,
            previous_equity: None,
            stale: Vec::new(),
            budgets: None,
            reporter: DailyReporter::new(),
            failures: 0,
            held_halts: Vec::new(),
            texts: None,
            reload_seen: None,
            account: AccountCheck::Unconfirmed,
            reconciled: false,
            lost: LostWatch::default(),
            daily_backup: DailyBackup::default(),
            transfers: Transfers::default(),
            transfers_seen: None,
            files_changed: false,
            halt_file_seen: false,
            metrics: MetricsFile::default(),
            totals: Totals::default(),
            position_values: Vec::new(),
        }
    }

    /// Keeps the texts the configuration was read from, so a `reload` can log what changed.
    pub fn keep_texts(&mut self, settings: String, bots: String) {
        self.texts = Some((settings, bots));
    }

    /// Between iterations: another process's commit is noticed (kept reads are read afresh), and
    /// a `reload` it asked for is applied or refused. Cheap when nothing was written: one
    /// `PRAGMA data_version`.
    pub fn between_iterations(&mut self) {
        if let Err(e) = self.look_for_other_writers() {
            self.reload_failed(&e);
        }
    }

    /// A ledger error while looking for or answering a `reload`: logged; the loop goes on (the
    /// next look tries again, and the command says it had no answer).
    fn reload_failed(&self, e: &StateError) {
        event!(Warn, "iteration_error", iteration = self.iteration, step = "reload", error = e.to_string().as_str());
    }

    fn look_for_other_writers(&mut self) -> Result<(), StateError> {
        if self.state.notice_other_writers()? || self.reload_seen.is_none() {
            let request = self.state.kv_get(RELOAD_REQUEST_KEY)?;
            match &self.reload_seen {
                // The first look: a request older than this process is not ours to answer (the
                // files were just read anyway).
                None => self.reload_seen = Some(request),
                Some(seen) if *seen != request => {
                    self.reload_seen = Some(request.clone());
                    if let Some(id) = request {
                        self.reload(&id);
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// `reload`: the configuration folder read and validated again; applied whole when it is
    /// valid and changes nothing that needs a restart, else refused whole (logged, notified, the
    /// running configuration kept). The answer goes back to the command through the ledger.
    fn reload(&mut self, request: &str) {
        let now = self.clock.now();
        let dir = self.cfg.dir.clone();
        let read = Config::read_texts(&dir).and_then(|(s, b)| Ok((Config::from_texts(&dir, &s, &b)?, s, b)));
        let (applied, detail, changes) = match read {
            Err(e) => (false, format!("{e}; nothing was reloaded, the running configuration is kept"), Vec::new()),
            Ok((new, s, b)) => {
                let restart = self.cfg.restart_needed(&new);
                let doubled = self.positions_a_reload_would_double(&new);
                if let Some(why) = doubled {
                    (false, format!("{why}; nothing was reloaded, the running configuration is kept"), Vec::new())
                } else if restart.is_empty() {
                    let changes = match &self.texts {
                        Some((old_s, old_b)) => {
                            let mut c = config_diff::changes("settings.yaml", old_s, &s);
                            c.extend(config_diff::changes("bots.yaml", old_b, &b));
                            c
                        }
                        None => vec!["(the files read at start-up were not kept: what changed is not known)".into()],
                    };
                    self.apply_config(new);
                    self.texts = Some((s, b));
                    (true, format!("{} change(s), in force from the next iteration", changes.len()), changes)
                } else {
                    let what = restart.join(", ");
                    let detail = format!(
                        "{what} changed, which a running daemon cannot take: restart it for that (systemctl restart trading-hydra); nothing was reloaded, the running configuration is kept"
                    );
                    (false, detail, Vec::new())
                }
            }
        };
        if applied {
            event!(
                Info,
                "config_reloaded",
                changes = changes.join("; "),
                count = changes.len(),
                detail = detail.as_str()
            );
            // A bot or symbol that left is now an orphan: exits only, by its stored rules.
            self.warn_of_orphans();
        } else {
            event!(Error, "reload_refused", detail = detail.as_str());
            notify::send(notify::Note {
                event: "reload_refused",
                title: "Trading Hydra: reload refused".into(),
                text: detail.clone(),
            });
        }
        let answer = serde_json::json!({"request": request, "applied": applied, "detail": detail, "changes": changes});
        if let Err(e) = self.state.kv_set(RELOAD_RESULT_KEY, &answer.to_string(), now) {
            self.reload_failed(&e);
        }
    }

    /// Why `new` may not be put in force over what the ledger holds, or `None`: a bot of `new`
    /// would trade a symbol on which another bot id holds a position (a bot renamed, or a symbol
    /// moved to another bot, while held): that id starts with no position, no trade count and no
    /// loss used, and would open a second position on top. A ledger that cannot be read refuses
    /// too.
    fn positions_a_reload_would_double(&self, new: &Config) -> Option<String> {
        let owned = match self.state.owned_positions() {
            Ok(o) => o,
            Err(e) => return Some(format!("the ledger's positions cannot be read to check the change ({e})")),
        };
        let bots = crate::bots::from_config(new);
        let clashes: Vec<String> = owned
            .iter()
            .filter_map(|p| {
                let other = bots.iter().find(|b| b.id() != p.bot && b.watches(&p.symbol))?;
                Some(format!("{} would trade {}, which {} holds ({})", other.id(), p.symbol, p.bot, p.qty))
            })
            .collect();
        (!clashes.is_empty()).then(|| {
            format!(
                "bots.yaml: {}: a second position would open on top of the first. Keep the holding bot's id for \
                 that symbol, or close its position first",
                clashes.join("; ")
            )
        })
    }

    /// Puts a reloaded configuration in force: its bots (a bot or symbol that left keeps its
    /// positions under the keeper, exits only), and today's budgets again by its rules (the
    /// day's realised P&L and trades are the ledger's, kept).
    fn apply_config(&mut self, new: Config) {
        self.bots = crate::bots::from_config(&new);
        self.session.set_tolerance(SignedDuration::from_secs(new.settings.health.max_clock_skew_seconds as i64));
        self.cfg = new;
        self.budgets = None;
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Claims the ledger for the broker's account `a` (`ledger_account::claim`), once per process:
    /// at start-up, or at the first account read that succeeds. `Err` (the ledger is another
    /// account's, nothing written) carries the operator's message; the runner exits 2 with it.
    pub fn confirm_account(&mut self, a: &Account, now: Timestamp) -> Result<(), String> {
        if self.account == AccountCheck::Confirmed {
            return Ok(());
        }
        let running = if a.id == SIM_ACCOUNT_ID {
            LedgerAccount::Simulated
        } else {
            LedgerAccount::Broker { id: a.id.clone(), number: a.number.clone() }
        };
        match ledger_account::claim(&self.state, &running, now) {
            Ok(Claim::Other(ledger)) => {
                let why = ledger_account::refusal(self.state.path(), &ledger, &running.to_string());
                self.account = AccountCheck::Refused(why.clone());
                Err(why)
            }
            Ok(claim) => {
                if claim != Claim::Same {
                    let how = if claim == Claim::Adopted { "adopted" } else { "new" };
                    event!(Info, "ledger_account", account = running.to_string().as_str(), claim = how);
                }
                self.account = AccountCheck::Confirmed;
                Ok(())
            }
            // Not known yet: the next account read tries again (nothing is sent until then).
            Err(e) => {
                self.iteration_error("initialize", &e);
                Ok(())
            }
        }
    }

    /// The message of a ledger found to be another account's: the runner stops with it.
    pub fn refused(&self) -> Option<&str> {
        match &self.account {
            AccountCheck::Refused(why) => Some(why),
            _ => None,
        }
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
        self.failures += stats.failures.len() as u32;
        self.totals.api_errors += stats.failures.len() as u64;
        self.totals.requests += u64::from(stats.requests);
        for at in stats.failures {
            self.health.record_failure(at);
        }
        stats.requests
    }

    /// Repeated API errors are worth a message even with `api_failure_halt` off (then no halt
    /// message says so): one each time the health window trips.
    fn notify_repeated_api_errors(&mut self, now: Timestamp) {
        let tripped = self.health.tripped(now);
        if tripped && !self.api_errors_notified {
            notify::send(notify::Note {
                event: "api_errors",
                title: "Trading Hydra: repeated API errors".into(),
                text: format!(
                    "{} failed broker calls within {} s; the api_error events in the log say which",
                    self.health.count(now),
                    self.health.window().as_secs()
                ),
            });
        }
        self.api_errors_notified = tripped;
    }

    /// Runs the five steps once.
    pub fn run_iteration(&mut self) -> LoopSummary {
        let started = Instant::now();
        let wall = Timestamp::now();
        self.iteration += 1;
        // The market's time: the local clock, or the broker's when they disagree beyond
        // `health.max_clock_skew_seconds` (an NTP step): every decision of the iteration, its
        // exits' time rules above all, goes by it.
        let local = self.clock.now();
        let now = self.session.market_time(local);
        let mut errors: Vec<String> = Vec::new();
        // Unsure of state: no entry, whatever `safety.fail_closed` says.
        let mut unsure = false;

        // 1. Initialize. The ledger's files must still be the ones the daemon opened: with its
        // journal deleted under it, what it records from now on (an order before it is sent
        // included) would be lost at its next start.
        if let Some(why) = self.state.files_changed() {
            unsure = true;
            self.ledger_files_changed(&why, now, &mut errors);
        }
        // Rows another process committed since the last iteration are read afresh (and a
        // `reload` it asked for is applied first).
        if let Err(e) = self.look_for_other_writers() {
            unsure = true;
            self.step_failed("initialize", &e, now, &mut errors);
        }
        let trading_date = clock::trading_date(now);
        let (account, account_error) = match self.broker.account() {
            Ok(a) => (Some(a), None),
            Err(e) => {
                self.step_failed("initialize", &e, now, &mut errors);
                (None, Some(e))
            }
        };
        // The ledger must be this account's before anything is read into it or sent: confirmed
        // at start-up, or here by the first account read that succeeds. Until then (and once it
        // is found to be another account's) an iteration ends at the account read.
        if let Some(a) = &account {
            // A refusal is kept in `self.account`: the runner reads it and stops.
            let _ = self.confirm_account(a, now);
        }
        if self.account != AccountCheck::Confirmed {
            return self.unconfirmed(started, wall, now, errors);
        }
        let equity = account.as_ref().map(|a| a.equity.to_f64());
        let day_start = match &account {
            // Alpaca's previous close when it gives one, else the first equity seen; never
            // replaced within the trading date.
            Some(a) => {
                let (value, source) = match a.last_equity {
                    Some(last) => (last, "last_equity"),
                    None => (a.equity, "first_seen"),
                };
                match self.state.record_day_start(trading_date, value.to_f64(), source, now) {
                    Ok(d) => Ok(Some(d)),
                    // A ledger that takes no writes still has a day start to measure the loss by:
                    // the one it holds, else this one (the daily-loss check must not lapse).
                    Err(e) => {
                        self.step_failed("initialize", &e, now, &mut errors);
                        let held = self.state.day_start(trading_date).ok().flatten();
                        Ok(held.or(Some(DayStart {
                            trading_date,
                            equity: value.to_f64(),
                            source: source.to_string(),
                            recorded_at: None,
                        })))
                    }
                }
            }
            None => self.state.day_start(trading_date),
        };
        let day_start = match day_start {
            Ok(d) => d,
            Err(e) => {
                self.step_failed("initialize", &e, now, &mut errors);
                None
            }
        };
        let every = u64::from(self.cfg.settings.runner.reconcile_every_iterations);
        let reconcile_due = !self.reconciled || self.iteration.is_multiple_of(every);
        // Deposits and withdrawals are not P&L: the day's reference moves with them.
        let day_start_equity =
            day_start.map(|d| d.equity + self.transfers_net(&d, equity, reconcile_due, now, &mut errors));
        let daily_pnl_pct = equity.zip(day_start_equity).and_then(|(e, d)| risk::daily_pnl_pct(e, d));
        let session = self.session.session_at(self.broker.as_mut(), local);
        if let Err(e) = self.execution.orders.sync_orders(&mut self.state, self.broker.as_mut(), &self.cfg, now) {
            unsure = true;
            self.step_failed("initialize", &e, now, &mut errors);
        }
        if reconcile_due {
            match self.execution.orders.reconcile(&mut self.state, self.broker.as_mut(), now) {
                Ok(()) => {
                    self.reconciled = true;
                    self.position_values = self
                        .state
                        .broker_positions()
                        .map(|rows| {
                            let value = |r: &crate::core::state::BrokerPositionRow| {
                                let price = r.current_price.unwrap_or(r.avg_entry_price).to_f64();
                                r.qty.to_f64() * price * crate::core::instrument::multiplier(&r.symbol) as f64
                            };
                            rows.iter().map(|r| (r.symbol.clone(), value(r))).collect()
                        })
                        .unwrap_or_default();
                }
                Err(e) => {
                    unsure = true;
                    self.step_failed("initialize", &e, now, &mut errors);
                }
            }
        }
        // Before any entry: orders of ours at the broker that the ledger does not know (a
        // restored backup, a lost journal) would have the bots buy again on top of them.
        let mut ledger = Check::NotRun;
        if reconcile_due || !self.lost.checked || !self.lost.found.is_empty() {
            match self.check_lost() {
                Ok(check) => ledger = check,
                Err(e) => {
                    unsure = true;
                    self.step_failed("initialize", &e, now, &mut errors);
                }
            }
        }
        if self.iteration == 1 {
            self.warn_of_orphans();
        }
        let mut requests = self.collect_call_stats();
        self.notify_repeated_api_errors(now);

        // 2. ExitBot. If the halts cannot be read the daemon is unsure of its state: halted.
        let readings = Readings {
            account: account.as_ref(),
            account_error: account_error.as_ref(),
            day_start_equity,
            previous_equity: self.previous_equity,
            clock_skew_seconds: self.session.take_skew(),
            stale: &self.stale,
            market_open: session.is_open,
            ledger,
            position_values: &self.position_values,
        };
        // Halts held in memory are stored as soon as the ledger takes writes again.
        let _ = halt_store::store_held(&self.state, &mut self.held_halts);
        let outcome = exitbot::run(
            &mut self.state,
            &self.cfg,
            &mut self.health,
            self.broker.as_mut(),
            &mut self.execution.orders,
            &mut self.held_halts,
            &readings,
            now,
        );
        if let Some(e) = &outcome.error {
            self.step_failed("exitbot", e, now, &mut errors);
        }
        let mut halts: Vec<HaltReason> = outcome.halts.into_iter().map(|h| h.reason).collect();
        let halts_known = outcome.halts_known;
        // A step's state error above is a halt too, held in memory if the ledger refused it.
        for h in &self.held_halts {
            if !halts.contains(&h.reason) {
                halts.push(h.reason);
            }
        }
        // A halt the operator could not write to the ledger, delivered through its file.
        if self.halt_by_file(now) && !halts.contains(&HaltReason::Manual) {
            halts.push(HaltReason::Manual);
        }
        let halted = !halts_known || !halts.is_empty();
        self.previous_equity = equity.or(self.previous_equity);

        // 3. PortfolioBot.
        let budgets = match day_start_equity {
            Some(d) => match self.budgets_for(trading_date, d, now) {
                Ok(b) => b,
                Err(e) => {
                    self.step_failed("portfolio", &e, now, &mut errors);
                    Rc::from([])
                }
            },
            None => Rc::from([]),
        };

        // 4. Execution: exits always; entries only when nothing is halted, nothing is unsure and,
        // fail-closed, no step failed.
        let fail_closed = self.cfg.settings.safety.fail_closed;
        let stopped =
            halt::entries_stopped(halts_known, &halts, unsure, errors.first().map(String::as_str), fail_closed);
        let entries_allowed = stopped.is_none();
        let why_stopped = stopped.unwrap_or_default();
        let step = Step {
            cfg: &self.cfg,
            bots: &self.bots,
            budgets: &budgets,
            session,
            entries_allowed,
            why_stopped: &why_stopped,
            account: account.as_ref(),
            now,
        };
        let outcome = self.execution.run_bots(&mut self.state, self.broker.as_mut(), &step);
        let orders_submitted = match outcome {
            Ok(report) => {
                self.stale = report.stale;
                if let Some(e) = report.data_error {
                    self.iteration_error("execution", &e);
                    errors.push(format!("execution: {e}"));
                }
                if let Some(why) = report.account_refused {
                    let halt = Halt {
                        reason: HaltReason::AccountBlocked,
                        detail: format!("the broker refused an order: {why}"),
                        since: now,
                        until: None,
                    };
                    let (change, failed) = halt_store::set_or_hold(&self.state, &mut self.held_halts, &halt);
                    notify::announce(change);
                    if let Some(e) = failed {
                        self.step_failed("execution", &e, now, &mut errors);
                    }
                }
                report.orders_submitted
            }
            Err(e) => {
                self.step_failed("execution", &e, now, &mut errors);
                0
            }
        };
        requests += self.collect_call_stats();
        // A write the ledger refused while sending (the exits still went out) halts like any
        // state error, in memory if need be.
        // The summary says so: that halt, and no entry (execution stopped them at the failure).
        let mut entries_allowed = entries_allowed;
        let mut halted = halted;
        if let Some(why) = self.execution.orders.take_ledger_failure() {
            self.ledger_refused("execution", &why, now, &mut errors);
            entries_allowed = false;
        }
        for h in &self.held_halts {
            if !halts.contains(&h.reason) {
                halts.push(h.reason);
                halted = true;
            }
        }

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
            market_open: session.is_open,
            entries_allowed,
            orders_submitted,
            requests,
            duration_ms: started.elapsed().as_millis() as u64,
            error: errors.into_iter().next(),
        };
        self.finalize(&summary);
        if self.files_changed
            && let Err(e) = self.state.fold_journal()
        {
            self.iteration_error("fold_journal", &e);
        }
        self.daily_backup.after_iteration(&self.state, &self.cfg.settings.backup, trading_date);
        self.totals.orders_refused = self.execution.orders.refused();
        let interval = self.cfg.settings.runner.loop_interval_seconds;
        self.metrics.after_iteration(
            &self.state,
            self.cfg.settings.metrics.textfile_path.as_deref(),
            interval,
            self.totals,
        );
        // After the close (or the date's end for crypto alone), the day's report.
        let stocks = self.bots.iter().any(|b| b.kind() != crate::core::config::BotKind::Crypto);
        let failures = std::mem::take(&mut self.failures);
        if let Err(e) =
            self.reporter.after_iteration(&self.state, now, summary.equity, summary.day_start_equity, failures, stocks)
        {
            self.iteration_error("daily_report", &e);
        }
        summary
    }

    /// The net of the trading date's deposits and withdrawals that moved the equity after
    /// `day_start` was taken (`services::transfers`), in dollars. The broker is asked with each
    /// reconcile; when the equity moved by a quarter of the day's loss limit or more since the
    /// last iteration (a deposit shows as such a jump, and must not widen the limit for long);
    /// and whenever the daily loss would be breached without a transfer not yet known (a
    /// withdrawal is never read as a loss). A transfer new since the last iteration moves the
    /// equity-jump reference with it.
    fn transfers_net(
        &mut self,
        day_start: &DayStart,
        equity: Option<f64>,
        ask: bool,
        now: Timestamp,
        errors: &mut Vec<String>,
    ) -> f64 {
        let limit = self.cfg.settings.risk.global_max_daily_loss_pct;
        let breached = |net: Dec| {
            equity
                .and_then(|e| risk::daily_pnl_pct(e, day_start.equity + net.to_f64()))
                .is_some_and(|p| risk::daily_loss_breached(p, limit))
        };
        let step = day_start.equity * limit / 100.0 / 4.0;
        let jumped = equity.zip(self.previous_equity).is_some_and(|(e, p)| (e - p).abs() >= step);
        let ask = ask || jumped;
        let (mut net, mut failed) = self.transfers.net(&self.state, self.broker.as_mut(), day_start, ask, now);
        if !ask && breached(net) {
            (net, failed) = self.transfers.net(&self.state, self.broker.as_mut(), day_start, true, now);
        }
        if let Some(e) = failed {
            self.step_failed("initialize", &e, now, errors);
        }
        let moved = match self.transfers_seen {
            Some((date, seen)) if date == day_start.trading_date => net.checked_sub(seen).unwrap_or(Dec::ZERO),
            _ => Dec::ZERO,
        };
        if !moved.is_zero() {
            self.previous_equity = self.previous_equity.map(|p| p + moved.to_f64());
        }
        self.transfers_seen = Some((day_start.trading_date, net));
        net.to_f64()
    }

    /// The ledger's files are not the ones the daemon opened (`State::files_changed`): said once
    /// (`ledger_files_changed`, notified), a `state_error` halt, and from now on what the
    /// connection holds is folded into the database file after every iteration, so a restart
    /// loses nothing of it.
    fn ledger_files_changed(&mut self, why: &str, now: Timestamp, errors: &mut Vec<String>) {
        let detail = format!(
            "{why}. Entries are halted; exits go on, and what the daemon holds is folded into the database file \
             after every iteration. Restart the daemon (systemctl restart trading-hydra) so it opens the ledger \
             with a journal of its own, check `trading-hydra status`, then `trading-hydra resume`"
        );
        if !self.files_changed {
            self.files_changed = true;
            event!(Error, "ledger_files_changed", detail = detail.as_str());
            // No other process may open the ledger while this one runs on it (`halt` goes
            // through its file instead).
            if let Err(e) = crate::core::state::mark_journal_lost(self.state.path(), &detail) {
                self.iteration_error("journal_lost_mark", &e);
            }
            notify::send(notify::Note {
                event: "ledger_files_changed",
                title: "Trading Hydra: the ledger's files changed under the daemon".into(),
                text: detail.clone(),
            });
            if let Err(e) = self.state.fold_journal() {
                self.iteration_error("fold_journal", &e);
            }
        }
        self.ledger_refused("initialize", &detail, now, errors);
    }

    /// Whether a halt file (`core::halt_file`) beside the ledger holds a halt: a `manual` halt
    /// for as long as it is there, logged (`halt`, `from_file`) and notified when first seen.
    fn halt_by_file(&mut self, now: Timestamp) -> bool {
        if !self.state.on_disk() {
            return false;
        }
        let Some(h) = halt_file::read(self.state.path(), now) else {
            self.halt_file_seen = false;
            return false;
        };
        if !self.halt_file_seen {
            self.halt_file_seen = true;
            let file = halt_file::path(self.state.path()).display().to_string();
            event!(Warn, "halt", reason = h.reason.as_str(), detail = h.detail.as_str(), from_file = file.as_str());
            notify::send(notify::Note {
                event: "halt",
                title: "Trading Hydra halted: manual".into(),
                text: format!("{} (from {file}); exits of the daemon's positions go on", h.detail),
            });
        }
        true
    }

    /// Looks for orders of ours at the broker that the ledger does not know
    /// (`lost_orders::find`), against what the broker held at the last reconcile; logs
    /// `ledger_behind` when what it finds changes.
    fn check_lost(&mut self) -> Result<Check, ExecError> {
        let held: BTreeMap<String, Dec> =
            self.state.broker_positions()?.into_iter().map(|p| (p.symbol, p.qty)).collect();
        let orders = &self.execution.orders;
        let lost = lost_orders::find(&self.state, self.broker.as_mut(), &held, &|id| orders.holds_unrecorded(id))?;
        self.lost.checked = true;
        let ids: Vec<String> = lost.iter().map(|l| l.order.client_order_id.clone()).collect();
        if lost.is_empty() {
            self.lost.found.clear();
            return Ok(Check::Clean);
        }
        let detail = lost_orders::describe(&lost, &held);
        if ids != self.lost.found {
            event!(
                Error,
                "ledger_behind",
                orders = lost.len(),
                client_order_ids = ids.join(","),
                detail = detail.as_str()
            );
        }
        self.lost.found = ids;
        Ok(Check::Behind(detail))
    }

    /// An iteration whose broker account is not confirmed as the ledger's: the failed account
    /// read is counted (the health window, `api_error`, the notification of repeated errors) and
    /// the summary written; nothing is followed, cancelled, reconciled or sent.
    fn unconfirmed(&mut self, started: Instant, wall: Timestamp, now: Timestamp, errors: Vec<String>) -> LoopSummary {
        let why = match &self.account {
            AccountCheck::Refused(_) => "the ledger belongs to another account: nothing is sent".to_string(),
            _ => {
                "the broker's account could not be read yet, so whether the ledger is its is unknown: nothing is sent \
                  until it is"
                    .to_string()
            }
        };
        let requests = self.collect_call_stats();
        self.notify_repeated_api_errors(now);
        let summary = LoopSummary {
            iteration: self.iteration,
            market_time: now,
            started_at: wall,
            equity: None,
            day_start_equity: None,
            daily_pnl_pct: None,
            halts: Vec::new(),
            // Unsure of state: fail closed.
            halted: true,
            market_open: false,
            entries_allowed: false,
            orders_submitted: 0,
            requests,
            duration_ms: started.elapsed().as_millis() as u64,
            error: Some(errors.into_iter().next().unwrap_or(why)),
        };
        self.finalize(&summary);
        summary
    }

    /// Today's budgets: computed and stored at the first iteration of a trading date.
    fn budgets_for(&mut self, date: Date, day_start: f64, now: Timestamp) -> Result<Rc<[Budget]>, StateError> {
        if let Some((d, b)) = &self.budgets
            && *d == date
        {
            return Ok(b.clone());
        }
        let from = date.checked_sub(jiff::Span::new().days(portfolio::LOOKBACK_DAYS)).unwrap_or(date);
        let yesterday = date.yesterday().unwrap_or(date);
        let mut pnl = std::collections::BTreeMap::new();
        for slot in portfolio::slots(&self.cfg, |_| 0.0) {
            pnl.insert(slot.bot.clone(), self.state.realized_between(&slot.bot, from, yesterday)?);
        }
        let slots = portfolio::slots(&self.cfg, |bot| pnl.get(bot).copied().unwrap_or(0.0));
        let budgets = portfolio::allocate(&self.cfg, day_start, &slots);
        for b in &budgets {
            let row = BudgetRow {
                trading_date: date,
                bot: b.bot.clone(),
                daily_loss_limit: b.daily_loss_limit,
                max_open_risk: b.max_open_risk,
                max_trades: b.max_trades,
                max_positions: b.max_positions,
                realized_pnl: 0.0,
                trades: self.state.entries_on(&b.bot, date)?,
            };
            self.state.put_budget(&row, now)?;
            event!(
                Info,
                "budget",
                bot = b.bot.as_str(),
                daily_loss_limit = b.daily_loss_limit,
                max_open_risk = b.max_open_risk,
                max_trades = b.max_trades,
                max_positions = b.max_positions,
            );
        }
        let budgets: Rc<[Budget]> = budgets.into();
        self.budgets = Some((date, budgets.clone()));
        Ok(budgets)
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

    /// At start-up, one `orphan_position` warning per owned position that no enabled bot manages
    /// any more (`Config::manages`): its bot or symbol left the configuration. The execution
    /// service's keeper still closes it by the exit rules it was opened with.
    fn warn_of_orphans(&self) {
        let Ok(owned) = self.state.owned_positions() else { return };
        for p in owned.iter().filter(|p| !self.cfg.manages(&p.bot, &p.symbol)) {
            event!(
                Warn,
                "orphan_position",
                bot = p.bot.as_str(),
                symbol = p.symbol.as_str(),
                qty = p.qty.to_string(),
                detail = "its bot or symbol is no longer in the configuration: it is closed by the exit rules it was opened with, and never entered again",
            );
        }
    }

    /// A panic escaped an iteration: halt entries until an operator has looked.
    fn record_panic(&mut self, message: &str) {
        let now = Timestamp::now();
        let detail = format!("iteration {} panicked: {message}", self.iteration);
        self.iteration_error("panic", &detail);
        let halt = Halt { reason: HaltReason::InternalError, detail, since: now, until: None };
        let (change, failed) = halt_store::set_or_hold(&self.state, &mut self.held_halts, &halt);
        notify::announce(change);
        if let Some(e) = failed {
            self.iteration_error("panic", &e)
        }
    }

    /// Logs `iteration_error` for this iteration's `step`.
    fn iteration_error(&self, step: &str, error: &dyn std::fmt::Display) {
        event!(Error, "iteration_error", iteration = self.iteration, step = step, error = error.to_string());
    }

    /// Records a failed step. A state-database error is also a `state_error` halt (if the
    /// database still takes writes): the daemon is unsure of what it owns. A broker error is not:
    /// the health window counts those.
    fn step_failed(&mut self, step: &'static str, e: &dyn StepError, now: Timestamp, errors: &mut Vec<String>) {
        let text = format!("{step}: {e}");
        self.iteration_error(step, &e);
        if e.is_state_error() {
            self.hold_state_error(&text, now);
        }
        errors.push(text);
    }

    /// A write the ledger refused inside a step that carried on (an exit sent all the same, a
    /// best price not kept): an `iteration_error` and a `state_error` halt.
    fn ledger_refused(&mut self, step: &'static str, why: &str, now: Timestamp, errors: &mut Vec<String>) {
        let text = format!("{step}: {why}");
        self.iteration_error(step, &why);
        self.hold_state_error(&text, now);
        errors.push(text);
    }

    /// The `state_error` halt: stored, or held in memory (and notified) when the ledger cannot
    /// store it.
    fn hold_state_error(&mut self, detail: &str, now: Timestamp) {
        let halt = Halt { reason: HaltReason::StateError, detail: detail.to_string(), since: now, until: None };
        let (change, failed) = halt_store::set_or_hold(&self.state, &mut self.held_halts, &halt);
        notify::announce(change);
        if let Some(e) = failed {
            self.iteration_error("halt", &e);
        }
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
            market_time: Some(s.market_time),
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

/// A step's error: its text, and whether it came from the state database.
trait StepError: std::fmt::Display {
    fn is_state_error(&self) -> bool;
}

impl StepError for StateError {
    fn is_state_error(&self) -> bool {
        true
    }
}

impl StepError for crate::services::broker::BrokerError {
    fn is_state_error(&self) -> bool {
        false
    }
}

impl StepError for ExecError {
    fn is_state_error(&self) -> bool {
        matches!(self, ExecError::State(_))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> LoopSummary {
        LoopSummary {
            iteration: 612,
            market_time: "2026-11-25T15:31:00Z".parse().unwrap(),
            started_at: "2026-11-25T15:31:02Z".parse().unwrap(),
            equity: Some(100_012.34),
            day_start_equity: Some(100_000.0),
            daily_pnl_pct: Some(0.012_34),
            halts: Vec::new(),
            halted: false,
            market_open: true,
            entries_allowed: true,
            orders_submitted: 0,
            requests: 2,
            duration_ms: 3,
            error: None,
        }
    }

    #[test]
    fn the_heartbeat_keeps_a_fixed_pace_in_the_daemons_own_clock() {
        let mins = |m: i64| SignedDuration::from_mins(m);
        assert_eq!(heartbeat_pace(1.0), mins(1));
        assert_eq!(heartbeat_pace(10.0), mins(10));
        assert_eq!(heartbeat_pace(20.0), mins(15));
        assert_eq!(heartbeat_pace(60.0), mins(60));
        assert_eq!(heartbeat_pace(3600.0), mins(60), "never more than an hour apart");
        assert_eq!(heartbeat_pace(0.5), mins(1));
        // At 3600× an iteration every 5 simulated seconds: one line per simulated hour, on the hour.
        let start: Timestamp = "2026-12-07T14:30:00Z".parse().unwrap();
        let mut last = None;
        let mut beats = Vec::new();
        for i in 0..(6 * 720) {
            let now = start + SignedDuration::from_secs(5 * i);
            if heartbeat_due(last, now, mins(60)) {
                beats.push(now);
                last = Some(now);
            }
        }
        assert_eq!(beats.len(), 7, "the first, then one past each of six whole hours: {beats:?}");
        assert!(beats[1..].iter().all(|t| t.as_second() % 3600 == 0), "{beats:?}");
    }

    #[test]
    fn the_heartbeat_line_says_equity_day_pnl_to_the_cent_positions_and_halts() {
        let tz = clock::time_zone("America/New_York").unwrap();
        assert_eq!(
            summary().heartbeat(summary().market_time, Some(2), &tz, false),
            "2026-11-25 10:31:00 heartbeat  equity $100012.34  day +0.01 % (+$12.34)  positions 2  halts none  market open  #612"
        );
        // A simulation's line is stamped by its clock, with the wall time after it.
        assert!(
            summary()
                .heartbeat(summary().market_time, Some(2), &tz, true)
                .starts_with("2026-11-25 10:31:00 heartbeat ")
                && summary()
                    .heartbeat(summary().market_time, Some(2), &tz, true)
                    .ends_with("#612  (simulated; wall 10:31:02)"),
            "{}",
            summary().heartbeat(summary().market_time, Some(2), &tz, true)
        );
        let down = LoopSummary {
            equity: Some(99_750.5),
            daily_pnl_pct: Some(-0.2495),
            halts: vec![HaltReason::DailyLoss, HaltReason::Manual],
            halted: true,
            market_open: false,
            ..summary()
        };
        let line = down.heartbeat(down.market_time, None, &tz, false);
        assert!(line.contains("day -0.25 % (-$249.50)  positions ?  halts daily_loss,manual  market closed"), "{line}");
        let blind = LoopSummary { equity: None, halts: Vec::new(), halted: true, ..summary() };
        assert!(
            blind
                .heartbeat(blind.market_time, Some(0), &tz, false)
                .contains("equity unknown  day unknown  positions 0  halts unknown (halted)")
        );
    }
}
