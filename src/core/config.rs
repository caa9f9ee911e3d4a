//! The two YAML files, `settings.yaml` and `bots.yaml`, with the Python daemon's keys and shapes.
//!
//! Owns: the typed shape of both files, every default (each section's `Default` lists them all),
//! and the checks that turn a parsed file into a `Config` the rest of the daemon may trust.
//!
//! Never: accepts a key it does not know (every struct denies unknown fields: the Python
//! successor's audit found misspelt keys silently ignored), falls back to a default for a bad
//! value, reads secrets (those come from the environment only), or writes anything.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::core::clock::{self, HhMm};
use crate::core::signal::{CRYPTO_MODES as CRYPTO_SIGNAL_MODES, MOMENTUM_MODES as MOMENTUM_SIGNAL_MODES};

pub const SETTINGS_FILE: &str = "settings.yaml";
pub const BOTS_FILE: &str = "bots.yaml";
/// The folder used when neither `--config` nor `TRADING_HYDRA_CONFIG` names one.
pub const DEFAULT_CONFIG_DIR: &str = "config";

/// One enabled bot of the configuration (`Config::enabled_bots`).
#[derive(Debug, Clone, Copy)]
pub enum EnabledBot<'a> {
    Momentum(&'a MomentumBot),
    Options(&'a OptionsBot),
    Crypto(&'a CryptoBot),
}

impl EnabledBot<'_> {
    pub fn id(&self) -> &str {
        match self {
            EnabledBot::Momentum(m) => &m.bot_id,
            EnabledBot::Options(o) => &o.bot_id,
            EnabledBot::Crypto(c) => &c.bot_id,
        }
    }

    pub fn kind(&self) -> BotKind {
        match self {
            EnabledBot::Momentum(_) => BotKind::Momentum,
            EnabledBot::Options(_) => BotKind::Options,
            EnabledBot::Crypto(_) => BotKind::Crypto,
        }
    }

    /// What it trades: a ticker, the options' underlyings, the crypto pairs.
    pub fn symbols(&self) -> Vec<String> {
        match self {
            EnabledBot::Momentum(m) => vec![m.ticker.clone()],
            EnabledBot::Options(o) => o.tickers.clone(),
            EnabledBot::Crypto(c) => c.pairs.clone(),
        }
    }

    /// Its parsed signal. An options bot without one (the Python daemon's file has none) gets a
    /// placeholder: it must not start trading spreads by surprise.
    pub fn signal(&self) -> crate::core::signal::Signal {
        match self {
            EnabledBot::Momentum(m) => m.signal.parsed(),
            EnabledBot::Options(o) => {
                o.signal.as_ref().map_or(crate::core::signal::Signal::Placeholder, Signal::parsed)
            }
            EnabledBot::Crypto(c) => c.signal.parsed(),
        }
    }

    /// `risk.max_trades_per_day` and `risk.max_concurrent_positions`.
    pub fn limits(&self) -> (u32, u32) {
        match self {
            EnabledBot::Momentum(m) => (m.risk.max_trades_per_day, m.risk.max_concurrent_positions),
            EnabledBot::Options(o) => (o.risk.max_trades_per_day, o.risk.max_concurrent_positions),
            EnabledBot::Crypto(c) => (c.risk.max_trades_per_day, c.risk.max_concurrent_positions),
        }
    }
}

/// The three kinds of bot a configuration holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotKind {
    Momentum,
    Options,
    Crypto,
}

impl BotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BotKind::Momentum => "momentum",
            BotKind::Options => "options",
            BotKind::Crypto => "crypto",
        }
    }

    pub fn parse(text: &str) -> Option<BotKind> {
        [BotKind::Momentum, BotKind::Options, BotKind::Crypto].into_iter().find(|k| k.as_str() == text)
    }
}

/// Both files, parsed and validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub settings: Settings,
    pub bots: Bots,
    /// `system.timezone`, resolved: the zone the bots' session windows and displayed times use.
    pub timezone: TimeZone,
}

/// What can be wrong with the configuration. Every variant names the file; `Invalid` names each
/// key and its value.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    /// Malformed YAML, an unknown key, or a value of the wrong type. The parser's message starts
    /// with the key path (`risk.global_max_daily_loss_pct: invalid type ...`).
    Parse {
        file: PathBuf,
        detail: String,
    },
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One value that parsed but is not allowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub value: String,
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, error } => {
                write!(
                    f,
                    "cannot read {}: {error} (pass the folder holding {SETTINGS_FILE} and {BOTS_FILE} with --config DIR)",
                    file.display()
                )
            }
            ConfigError::Parse { file, detail } => {
                write!(f, "{}: {detail}; fix the file and run `trading-hydra check-config`", file.display())
            }
            ConfigError::Invalid { file, problems } => {
                write!(f, "{}: ", file.display())?;
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{} = {}: {}", p.key, p.value, p.rule)?;
                }
                f.write_str("; fix the file and run `trading-hydra check-config`")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// settings.yaml
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub system: System,
    pub runner: Runner,
    pub safety: Safety,
    pub risk: Risk,
    pub development: Development,
    pub health: Health,
    /// Added by this port.
    pub alpaca: Alpaca,
    /// Added by this port.
    pub logging: Logging,
    /// Added by this port.
    pub sim: Sim,
    /// Added by this port: webhook notifications (the URL comes from TRADING_HYDRA_WEBHOOK_URL).
    pub notify: Notify,
    /// Added by this port: the daily backup of the ledger.
    pub backup: Backup,
    /// Added by this port: the metrics file for node_exporter's textfile collector.
    pub metrics: Metrics,
}

/// `metrics`: the Prometheus text file (`services::metrics`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Where the file goes (`None`: none), for example
    /// `/var/lib/node_exporter/textfile_collector/trading_hydra.prom`.
    pub textfile_path: Option<PathBuf>,
}

/// `backup`: a consistent copy of the ledger once per New York trading date
/// (`services::daily_backup`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backup {
    /// The folder the copies go to (`None`: no daily backup).
    pub folder: Option<PathBuf>,
    /// How many daily copies are kept; older ones are deleted.
    pub keep: u32,
}

impl Default for Backup {
    fn default() -> Backup {
        Backup { folder: None, keep: 7 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notify {
    pub format: NotifyFormat,
    /// The dead-man's switch: pinged after a healthy iteration, at most once a minute
    /// (`services::notify::beat`). Never logged: it may hold a token.
    pub heartbeat_url: Option<String>,
    /// Pinged instead while halted or unhealthy (default: `heartbeat_url` + `/fail`, healthchecks'
    /// form).
    pub heartbeat_fail_url: Option<String>,
}

impl Notify {
    /// The heartbeat's two URLs (healthy, failing), when it is set.
    pub fn heartbeat(&self) -> Option<(String, String)> {
        let ok = self.heartbeat_url.clone()?;
        let fail = self.heartbeat_fail_url.clone().unwrap_or_else(|| format!("{}/fail", ok.trim_end_matches('/')));
        Some((ok, fail))
    }
}

/// The body a notification is posted in (`services::notify` writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// `{"event": …, "title": …, "text": …}`
    #[default]
    Json,
    /// `{"text": "*title*\ntext"}`
    Slack,
    /// `{"content": "**title**\ntext"}`
    Discord,
    /// The text as the body, the title in a `Title` header.
    Ntfy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct System {
    pub timezone: String,
    pub log_path: PathBuf,
    pub state_db_path: PathBuf,
}

impl Default for System {
    fn default() -> System {
        System {
            timezone: "America/Los_Angeles".into(),
            log_path: "./logs/app.jsonl".into(),
            state_db_path: "./state/trading_state.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runner {
    pub loop_interval_seconds: u64,
    /// Added: positions and orders are reconciled with the broker at start-up and every this
    /// many iterations.
    pub reconcile_every_iterations: u32,
}

impl Default for Runner {
    fn default() -> Runner {
        Runner { loop_interval_seconds: 5, reconcile_every_iterations: 60 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Safety {
    pub fail_closed: bool,
    pub allow_budget_fallback: bool,
    pub global_cooldown_minutes: u32,
}

impl Default for Safety {
    fn default() -> Safety {
        Safety { fail_closed: true, allow_budget_fallback: false, global_cooldown_minutes: 390 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Risk {
    pub global_max_daily_loss_pct: f64,
    pub max_orders_per_minute: u32,
    /// Added by this port: on a daily-loss halt, also close the daemon's own positions.
    pub flatten_on_daily_loss: bool,
    /// Added: an entry order still open after this long has its unfilled rest cancelled.
    pub entry_order_timeout_seconds: u64,
}

impl Default for Risk {
    fn default() -> Risk {
        Risk {
            global_max_daily_loss_pct: 1.0,
            max_orders_per_minute: 10,
            flatten_on_daily_loss: true,
            entry_order_timeout_seconds: 120,
        }
    }
}

/// The Python daemon's development switches. They load so its files keep working; this port
/// replaces mock data with `--sim` and warns when a file turns it on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Development {
    pub enable_mock_data: bool,
    pub mock_market_hours: bool,
    pub mock_price_movement: bool,
    /// Writes debug-level lines to the JSONL log.
    pub enhanced_logging: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    pub max_price_staleness_seconds: u64,
    pub max_api_failures_in_window: u32,
    pub api_failure_window_seconds: u64,
    /// Added: the local clock further than this from the broker's is an anomaly (a Raspberry Pi
    /// boots with a stale clock until NTP syncs).
    pub max_clock_skew_seconds: u64,
    /// Added: equity moving more than this percentage between two iterations is an anomaly.
    pub max_equity_jump_pct: f64,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            max_price_staleness_seconds: 15,
            max_api_failures_in_window: 5,
            api_failure_window_seconds: 60,
            max_clock_skew_seconds: 30,
            max_equity_jump_pct: 20.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFeed {
    /// Free and real time.
    Iex,
    /// Paid; on the free plan only data older than 15 minutes.
    Sip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alpaca {
    /// The second half of the live-trading opt-in; the first is `ALPACA_PAPER=false`.
    pub live_trading_confirmed: bool,
    pub data_feed: DataFeed,
    /// The client's own request budget (Alpaca allows 200 a minute per account).
    pub requests_per_minute: u32,
    /// One HTTP exchange, connect to last byte.
    pub request_timeout_seconds: u64,
    /// Attempts of one call that fails transiently (GETs and DELETEs; an order is never re-sent
    /// without first asking Alpaca for its client order id).
    pub max_attempts: u32,
}

impl Default for Alpaca {
    fn default() -> Alpaca {
        Alpaca {
            live_trading_confirmed: false,
            data_feed: DataFeed::Iex,
            // Alpaca allows 200 a minute per account, every tool on the key together: a quarter
            // is left to the others.
            requests_per_minute: 150,
            request_timeout_seconds: 4,
            max_attempts: 3,
        }
    }
}

/// The embedded simulated broker of `run --sim`. Added by this port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sim {
    /// Cash of a new simulated account.
    pub starting_cash: f64,
    /// Simulated seconds per real second, unless `--speed` says otherwise.
    pub speed: f64,
    /// Market orders fill this many basis points worse than the price.
    pub slippage_bps: f64,
    /// Commission per stock share and per option contract, in dollars.
    pub fee_per_share: f64,
    pub fee_per_contract: f64,
    /// Crypto fee in basis points of the notional.
    pub crypto_fee_bps: f64,
    /// Annualised volatility of the simulated prices and of the option pricing.
    pub volatility: f64,
}

impl Default for Sim {
    fn default() -> Sim {
        Sim {
            starting_cash: 100_000.0,
            speed: 60.0,
            slippage_bps: 2.0,
            fee_per_share: 0.0,
            fee_per_contract: 0.65,
            crypto_fee_bps: 15.0,
            volatility: 0.25,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// The JSONL file is rotated when it would grow past this size.
    pub max_file_mb: u64,
    /// How many rotated files (`app.jsonl.1` …) are kept; older ones are deleted.
    pub keep_files: u32,
    /// What `run` prints on stderr (the JSONL file always has everything).
    pub console: Console,
}

impl Default for Logging {
    fn default() -> Logging {
        Logging { max_file_mb: 10, keep_files: 5, console: Console::Auto }
    }
}

/// `logging.console`: what `run` prints on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Console {
    /// `events` on a terminal, `full` otherwise (the journal under systemd).
    #[default]
    Auto,
    /// The events that matter as they happen, and a heartbeat line a minute instead of every
    /// iteration's `loop_summary`.
    Events,
    /// Every event, each iteration's `loop_summary` included.
    Full,
}

// ---------------------------------------------------------------------------------------------
// bots.yaml
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bots {
    pub exitbot: ExitBot,
    pub portfoliobot: PortfolioBot,
    pub momentum_bots: Vec<MomentumBot>,
    pub optionsbot: Option<OptionsBot>,
    pub cryptobot: Option<CryptoBot>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExitBot {
    pub enabled: bool,
    /// How long an API-failure halt lasts after the last failure.
    pub cooloff_minutes: u32,
    pub kill_conditions: KillConditions,
}

impl Default for ExitBot {
    fn default() -> ExitBot {
        ExitBot { enabled: true, cooloff_minutes: 390, kill_conditions: KillConditions::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KillConditions {
    pub api_failure_halt: bool,
    pub data_stale_halt: bool,
    pub max_daily_loss_halt: bool,
    pub anomaly_halt: bool,
}

impl Default for KillConditions {
    fn default() -> KillConditions {
        KillConditions { api_failure_halt: true, data_stale_halt: true, max_daily_loss_halt: true, anomaly_halt: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortfolioBot {
    pub enabled: bool,
    pub cash_reserve_pct: f64,
    pub buckets: Buckets,
    pub guardrails: Guardrails,
}

impl Default for PortfolioBot {
    fn default() -> PortfolioBot {
        PortfolioBot {
            enabled: true,
            cash_reserve_pct: 30.0,
            buckets: Buckets::default(),
            guardrails: Guardrails::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Buckets {
    pub momentum_bucket_pct_of_daily_risk: f64,
    pub options_bucket_pct_of_daily_risk: f64,
    pub crypto_bucket_pct_of_daily_risk: f64,
}

impl Default for Buckets {
    fn default() -> Buckets {
        Buckets {
            momentum_bucket_pct_of_daily_risk: 25.0,
            options_bucket_pct_of_daily_risk: 50.0,
            crypto_bucket_pct_of_daily_risk: 25.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guardrails {
    pub per_bot_min_pct_of_daily_risk: f64,
    pub per_bot_max_pct_of_daily_risk: f64,
}

impl Default for Guardrails {
    fn default() -> Guardrails {
        Guardrails { per_bot_min_pct_of_daily_risk: 5.0, per_bot_max_pct_of_daily_risk: 25.0 }
    }
}

/// When a bot may enter (`trade_start`–`trade_end`) and until when it manages what it holds
/// (`manage_until`), on the wall clock of `system.timezone`. No defaults: the times mean nothing
/// without the zone they were written for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub trade_start: HhMm,
    pub trade_end: HhMm,
    pub manage_until: HhMm,
}

/// Exit rules, shared by every bot. Percentages are of the entry price for stocks and crypto, and
/// of the credit received for option spreads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exits {
    pub stop_loss_pct: f64,
    pub take_profit_pct: f64,
    #[serde(default)]
    pub time_stop_minutes: Option<u32>,
    #[serde(default)]
    pub flatten_before_close_minutes: Option<u32>,
    /// Added by this port: a stop that follows the high-water mark since entry.
    #[serde(default)]
    pub trailing_stop_pct: Option<f64>,
    /// Added by this port: rest a protective stop order at the broker for each position (stocks
    /// and crypto; a spread cannot rest one), so it keeps a stop while the daemon is down. On
    /// unless `false`.
    #[serde(default = "yes")]
    pub broker_stop: bool,
    /// Added by this port: how far below the entry (above, for a short) that stop rests; unset,
    /// at `stop_loss_pct`.
    #[serde(default)]
    pub broker_stop_pct: Option<f64>,
}

impl Exits {
    /// Where a position's protective stop rests, in percent from its entry; `None` with
    /// `broker_stop: false`.
    pub fn resting_stop_pct(&self) -> Option<f64> {
        self.broker_stop.then(|| self.broker_stop_pct.unwrap_or(self.stop_loss_pct))
    }
}

/// Which signal a bot trades on, and its parameters (checked by the signal itself).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    pub mode: String,
    #[serde(default)]
    pub params: serde_yaml::Mapping,
    /// `mode` and `params` parsed, set by `Config::load` once both files are valid (`None` only in
    /// a `Signal` built by hand and never loaded, which then never enters).
    #[serde(skip)]
    pub parsed: Option<crate::core::signal::Signal>,
}

impl Signal {
    /// The parsed signal; a placeholder (never enters) if it was never parsed.
    pub fn parsed(&self) -> crate::core::signal::Signal {
        self.parsed.clone().unwrap_or(crate::core::signal::Signal::Placeholder)
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MomentumBot {
    pub bot_id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub ticker: String,
    /// Added: may the bot sell short on a falling signal? Long only by default.
    #[serde(default)]
    pub allow_short: bool,
    pub session: Session,
    #[serde(default)]
    pub risk: MomentumRisk,
    pub exits: Exits,
    pub signal: Signal,
    /// Added: how entries are sent.
    #[serde(default)]
    pub execution: MomentumExecution,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MomentumRisk {
    pub max_trades_per_day: u32,
    pub max_concurrent_positions: u32,
    /// Added: the most one position may cost.
    pub max_position_usd: f64,
    /// Added: minutes after an exit before the bot enters the same symbol again.
    pub cooldown_minutes: u32,
}

impl Default for MomentumRisk {
    fn default() -> MomentumRisk {
        MomentumRisk {
            max_trades_per_day: 3,
            max_concurrent_positions: 1,
            max_position_usd: 10_000.0,
            cooldown_minutes: 15,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryOrderType {
    Market,
    /// A marketable limit: the ask (bid for a short) moved `limit_offset_bps` toward the market.
    Limit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MomentumExecution {
    pub order_type: EntryOrderType,
    pub limit_offset_bps: f64,
    /// Fractional shares (Alpaca takes them as `day` market or limit orders on fractionable stocks).
    pub fractional: bool,
}

impl Default for MomentumExecution {
    fn default() -> MomentumExecution {
        MomentumExecution { order_type: EntryOrderType::Market, limit_offset_bps: 5.0, fractional: false }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsBot {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "OptionsBot::default_id")]
    pub bot_id: String,
    #[serde(default)]
    pub tickers: Vec<String>,
    pub session: Session,
    #[serde(default)]
    pub risk: OptionsRisk,
    #[serde(default)]
    pub strategies: Strategies,
    pub exits: Exits,
    #[serde(default)]
    pub chain_rules: ChainRules,
    /// Added: the direction signal on the underlying: up → bull put spread, down → bear call
    /// spread. Without one (as in the Python daemon's file) the bot never enters.
    #[serde(default)]
    pub signal: Option<Signal>,
    /// Added: how spreads are built and kept.
    #[serde(default)]
    pub execution: OptionsExecution,
}

impl OptionsBot {
    fn default_id() -> String {
        "opt_core".into()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptionsExecution {
    /// Dollars between the short and the long strike.
    pub spread_width: f64,
    /// Option quotes older than this are not priced from. Alpaca's free `indicative` feed is 15
    /// minutes delayed by design, hence 16 minutes.
    pub max_quote_age_seconds: u64,
    /// A spread is closed this many days before its expiry date at the latest: never held into
    /// expiry.
    pub exit_days_before_expiry: u32,
}

impl Default for OptionsExecution {
    fn default() -> OptionsExecution {
        OptionsExecution { spread_width: 5.0, max_quote_age_seconds: 960, exit_days_before_expiry: 1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptionsRisk {
    pub max_trades_per_day: u32,
    pub max_concurrent_positions: u32,
    pub max_position_size_usd: f64,
    pub profit_target_usd: Option<f64>,
    /// Added: minutes after a spread closes before the bot opens another on that underlying.
    pub cooldown_minutes: u32,
}

impl Default for OptionsRisk {
    fn default() -> OptionsRisk {
        OptionsRisk {
            max_trades_per_day: 3,
            max_concurrent_positions: 3,
            max_position_size_usd: 500.0,
            profit_target_usd: None,
            cooldown_minutes: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Strategies {
    pub bull_put_spread: CreditSpread,
    pub bear_call_spread: CreditSpread,
    pub iron_condor: CreditSpread,
    pub straddle: Straddle,
}

impl Default for Strategies {
    fn default() -> Strategies {
        Strategies {
            bull_put_spread: CreditSpread::default(),
            bear_call_spread: CreditSpread::default(),
            iron_condor: CreditSpread {
                enabled: false,
                min_credit: 1.0,
                max_credit: 4.0,
                profit_target: 0.25,
                max_dte: 60,
            },
            straddle: Straddle::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreditSpread {
    pub enabled: bool,
    pub min_credit: f64,
    pub max_credit: f64,
    /// Fraction of the credit at which the spread is closed for profit.
    pub profit_target: f64,
    pub max_dte: u32,
}

impl Default for CreditSpread {
    fn default() -> CreditSpread {
        CreditSpread { enabled: true, min_credit: 0.5, max_credit: 3.0, profit_target: 0.5, max_dte: 45 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Straddle {
    pub enabled: bool,
    pub max_cost: f64,
    pub profit_target: f64,
}

impl Default for Straddle {
    fn default() -> Straddle {
        Straddle { enabled: false, max_cost: 10.0, profit_target: 0.3 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainRules {
    pub dte_min: u32,
    pub dte_max: u32,
    pub delta_min: f64,
    pub delta_max: f64,
    pub min_volume: u64,
    pub min_open_interest: u64,
}

impl Default for ChainRules {
    fn default() -> ChainRules {
        ChainRules { dte_min: 7, dte_max: 60, delta_min: 0.10, delta_max: 0.70, min_volume: 50, min_open_interest: 100 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoBot {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "CryptoBot::default_id")]
    pub bot_id: String,
    #[serde(default)]
    pub pairs: Vec<String>,
    pub session: Session,
    #[serde(default)]
    pub execution: CryptoExecution,
    #[serde(default)]
    pub risk: CryptoRisk,
    pub exits: Exits,
    pub signal: Signal,
}

impl CryptoBot {
    fn default_id() -> String {
        "crypto_core".into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CryptoOrderType {
    Market,
    Limit,
}

/// Alpaca takes only these two for crypto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CryptoTif {
    Gtc,
    Ioc,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoExecution {
    pub order_type: CryptoOrderType,
    pub tif: CryptoTif,
    pub use_notional: bool,
    pub default_notional_usd: f64,
    pub min_notional_usd: f64,
}

impl Default for CryptoExecution {
    fn default() -> CryptoExecution {
        CryptoExecution {
            order_type: CryptoOrderType::Limit,
            tif: CryptoTif::Gtc,
            use_notional: true,
            default_notional_usd: 50.0,
            min_notional_usd: 10.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoRisk {
    pub max_trades_per_day: u32,
    pub max_concurrent_positions: u32,
    pub min_order_size: f64,
    /// Added: minutes after an exit before the bot enters the same pair again.
    pub cooldown_minutes: u32,
}

impl Default for CryptoRisk {
    fn default() -> CryptoRisk {
        CryptoRisk { max_trades_per_day: 5, max_concurrent_positions: 3, min_order_size: 15.0, cooldown_minutes: 30 }
    }
}

/// Alpaca refuses USD-quoted crypto buys under this notional.
pub const ALPACA_MIN_CRYPTO_NOTIONAL_USD: f64 = 10.0;

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

impl Config {
    /// The folder from `--config`, else `TRADING_HYDRA_CONFIG`, else `./config`.
    pub fn resolve_dir(flag: Option<&Path>) -> PathBuf {
        match flag {
            Some(dir) => dir.to_path_buf(),
            None => match std::env::var_os("TRADING_HYDRA_CONFIG") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir),
                _ => PathBuf::from(DEFAULT_CONFIG_DIR),
            },
        }
    }

    /// Reads, parses and validates both files of `dir`.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let (settings, bots) = Config::read_texts(dir)?;
        Config::from_texts(dir, &settings, &bots)
    }

    /// The text of both files of `dir` (settings, bots), unparsed: a backtest sweep edits them
    /// before `from_texts`.
    pub fn read_texts(dir: &Path) -> Result<(String, String), ConfigError> {
        let read = |file: PathBuf| std::fs::read_to_string(&file).map_err(|error| ConfigError::Read { file, error });
        Ok((read(dir.join(SETTINGS_FILE))?, read(dir.join(BOTS_FILE))?))
    }

    /// Parses and validates the two files' texts as if read from `dir` (errors name its files).
    pub fn from_texts(dir: &Path, settings: &str, bots: &str) -> Result<Config, ConfigError> {
        let settings_file = dir.join(SETTINGS_FILE);
        let bots_file = dir.join(BOTS_FILE);
        let settings: Settings = parse_text(&settings_file, settings)?;
        let bots: Bots = parse_text(&bots_file, bots)?;
        let timezone =
            validate_settings(&settings).map_err(|problems| ConfigError::Invalid { file: settings_file, problems })?;
        validate_bots(&bots).map_err(|problems| ConfigError::Invalid { file: bots_file, problems })?;
        let mut bots = bots;
        parse_signals(&mut bots);
        Ok(Config { dir: dir.to_path_buf(), settings, bots, timezone })
    }

    /// Whether a position `bot` holds in `symbol` is still managed: an enabled bot of that id,
    /// with a real signal, trades that symbol (for an option leg, its underlying). Anything else
    /// — the bot removed, disabled or put back on a placeholder, the symbol dropped from its list —
    /// is an orphan: the configuration no longer says who closes it.
    pub fn manages(&self, bot: &str, symbol: &str) -> bool {
        let root = crate::core::instrument::OccSymbol::parse(symbol).map(|o| o.root);
        let traded = root.as_deref().unwrap_or(symbol);
        self.enabled_bots().iter().any(|b| {
            b.id() == bot
                && b.symbols().iter().any(|s| s == traded)
                && b.signal() != crate::core::signal::Signal::Placeholder
        })
    }

    /// The exit rules of the bot section with id `bot`, enabled or not (for a position opened
    /// before the rules were stored with it).
    pub fn rules_of(&self, bot: &str) -> Option<PositionRules> {
        let b = &self.bots;
        if let Some(m) = b.momentum_bots.iter().find(|m| m.bot_id == bot) {
            return Some(PositionRules {
                kind: BotKind::Momentum,
                exits: m.exits.clone(),
                manage_until: Some(m.session.manage_until),
                exit_days_before_expiry: None,
            });
        }
        if let Some(o) = b.optionsbot.iter().find(|o| o.bot_id == bot) {
            return Some(PositionRules {
                kind: BotKind::Options,
                exits: o.exits.clone(),
                manage_until: None,
                exit_days_before_expiry: Some(o.execution.exit_days_before_expiry),
            });
        }
        b.cryptobot.iter().find(|c| c.bot_id == bot).map(|c| PositionRules {
            kind: BotKind::Crypto,
            exits: c.exits.clone(),
            manage_until: None,
            exit_days_before_expiry: None,
        })
    }

    /// The enabled bots, in the one fixed order every step walks them: the momentum bots as
    /// listed, then the options bot, then the crypto bot.
    pub fn enabled_bots(&self) -> Vec<EnabledBot<'_>> {
        let b = &self.bots;
        let momentum = b.momentum_bots.iter().filter(|m| m.enabled).map(EnabledBot::Momentum);
        let options = b.optionsbot.iter().filter(|o| o.enabled).map(EnabledBot::Options);
        let crypto = b.cryptobot.iter().filter(|c| c.enabled).map(EnabledBot::Crypto);
        momentum.chain(options).chain(crypto).collect()
    }

    /// The settings `reload` cannot change in a running daemon, by name, that differ in `new`:
    /// where the ledger and the log are, the broker and its mode, the loop's pace, the
    /// notifications, the API-failure window and the simulator are set up once at start-up.
    /// Everything else — risk, safety, the rest of health and the whole of `bots.yaml` — is
    /// reloaded.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.settings, &new.settings);
        let differs = |x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| format!("{x:?}") != format!("{y:?}");
        let mut out = Vec::new();
        if differs(&a.system, &b.system) {
            out.push("system");
        }
        if differs(&a.alpaca, &b.alpaca) {
            out.push("alpaca");
        }
        if (a.health.api_failure_window_seconds, a.health.max_api_failures_in_window)
            != (b.health.api_failure_window_seconds, b.health.max_api_failures_in_window)
        {
            // The window's count of recent failures would start again from nothing.
            out.push("health.api_failure_window_seconds/max_api_failures_in_window");
        }
        if a.runner.loop_interval_seconds != b.runner.loop_interval_seconds {
            out.push("runner.loop_interval_seconds");
        }
        if differs(&a.logging, &b.logging) {
            out.push("logging");
        }
        if differs(&a.notify, &b.notify) {
            out.push("notify");
        }
        if differs(&a.sim, &b.sim) {
            out.push("sim");
        }
        out
    }

    /// Non-fatal oddities an operator should see at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let s = &self.settings;
        if s.development.enable_mock_data || s.development.mock_market_hours || s.development.mock_price_movement {
            w.push(
                "development.enable_mock_data / mock_* are ignored by this port; run with --sim for a simulated market"
                    .into(),
            );
        }
        if s.safety.allow_budget_fallback {
            w.push("safety.allow_budget_fallback is true, but this port never invents a budget: a bot without one does not enter".into());
        }
        if !s.safety.fail_closed {
            w.push("safety.fail_closed is false: entries continue in an iteration where a step failed".into());
        }
        let b = &self.bots;
        if !b.exitbot.enabled {
            w.push("exitbot.enabled is false: no kill switch will halt trading".into());
        }
        // A manage_until that some weeks falls at or after the New York close (a zone whose
        // daylight-saving dates differ from New York's): those days it is clamped to the close.
        let year = crate::core::clock::trading_date(jiff::Timestamp::now()).year();
        for m in b.momentum_bots.iter().filter(|m| m.enabled) {
            let until = m.session.manage_until;
            let days = crate::core::clock::weekdays_at_or_after_the_close(&self.timezone, until, year);
            if days > 0 {
                w.push(format!(
                    "{}: session.manage_until {until} in {} is at or after the 16:00 New York close on {days} weekdays of {year} (the zones change their clocks on different dates); on those days the bot's positions are closed 5 minutes before the broker's close instead",
                    m.bot_id, s.system.timezone
                ));
            }
        }
        // A lone option leg ends its day at the options bot's manage_until, likewise clamped.
        if let Some(o) = b.optionsbot.as_ref().filter(|o| o.enabled) {
            let until = o.session.manage_until;
            let days = crate::core::clock::weekdays_after_the_close(&self.timezone, until, year);
            if days > 0 {
                w.push(format!(
                    "{}: session.manage_until {until} in {} is after the 16:00 New York close on {days} weekdays of {year}; on those days a lone option leg is closed 5 minutes before the broker's close instead (spreads are held overnight by design)",
                    o.bot_id, s.system.timezone
                ));
            }
        }
        // Resting stops for the others, none for the spreads: say so.
        let protected = b.momentum_bots.iter().any(|m| m.enabled && m.exits.resting_stop_pct().is_some())
            || b.cryptobot.as_ref().is_some_and(|c| c.enabled && c.exits.resting_stop_pct().is_some());
        if let Some(o) = b.optionsbot.as_ref().filter(|o| o.enabled && protected) {
            w.push(format!(
                "{}: option spreads cannot rest a stop at Alpaca (multi-leg orders take none): while the daemon is down they have no stop; their protection is the daemon's own watch",
                o.bot_id
            ));
        }
        // Enabled bots whose signal is one of the Python placeholders, which never enter.
        for bot in self.enabled_bots() {
            let mode = match bot {
                EnabledBot::Momentum(m) => Some(&m.signal.mode),
                EnabledBot::Crypto(c) => Some(&c.signal.mode),
                EnabledBot::Options(o) => o.signal.as_ref().map(|sg| &sg.mode),
            };
            match mode {
                None => w.push(format!(
                    "{}: no optionsbot.signal, so it never enters (set signal.mode, e.g. ema_roc_volume_v1)",
                    bot.id()
                )),
                Some(mode) if crate::core::signal::is_placeholder_mode(mode) => {
                    w.push(format!("{}: signal mode {mode:?} never enters (the Python placeholder)", bot.id()))
                }
                Some(_) => {}
            }
        }
        w
    }
}

fn parse_text<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    // An empty file is an empty mapping: every section takes its defaults.
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_yaml::from_str(text).map_err(|e| ConfigError::Parse { file: file.to_path_buf(), detail: e.to_string() })
}

/// Collects every problem of one file, so the operator fixes them in one go.
#[derive(Default)]
struct Checks(Vec<Problem>);

impl Checks {
    fn fail(&mut self, key: impl Into<String>, value: impl fmt::Display, rule: impl Into<String>) {
        self.0.push(Problem { key: key.into(), value: value.to_string(), rule: rule.into() });
    }

    /// `lo < v <= hi` when `open_low`, else `lo <= v <= hi`. NaN fails both.
    fn range(&mut self, key: impl Into<String>, v: f64, lo: f64, hi: f64, open_low: bool) {
        let ok = if open_low { v > lo && v <= hi } else { v >= lo && v <= hi };
        if !ok {
            let low = if open_low { "above" } else { "at least" };
            self.fail(key, v, format!("must be {low} {lo} and at most {hi}"));
        }
    }

    fn within<T: PartialOrd + fmt::Display>(&mut self, key: impl Into<String>, v: T, lo: T, hi: T) {
        if v < lo || v > hi {
            self.fail(key, &v, format!("must be from {lo} to {hi}"));
        }
    }

    fn finish(self) -> Result<(), Vec<Problem>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }
}

fn validate_settings(s: &Settings) -> Result<TimeZone, Vec<Problem>> {
    let mut c = Checks::default();
    let tz = match clock::time_zone(&s.system.timezone) {
        Ok(tz) => Some(tz),
        Err(rule) => {
            c.fail("system.timezone", format!("{:?}", s.system.timezone), rule);
            None
        }
    };
    if s.system.log_path.as_os_str().is_empty() {
        c.fail("system.log_path", "\"\"", "must name a file");
    }
    if s.system.state_db_path.as_os_str().is_empty() {
        c.fail("system.state_db_path", "\"\"", "must name a file");
    }
    c.within("runner.loop_interval_seconds", s.runner.loop_interval_seconds, 1, 3600);
    c.within("runner.reconcile_every_iterations", s.runner.reconcile_every_iterations, 1, 100_000);
    c.within("risk.entry_order_timeout_seconds", s.risk.entry_order_timeout_seconds, 1, 86_400);
    c.within("health.max_clock_skew_seconds", s.health.max_clock_skew_seconds, 1, 3600);
    c.range("health.max_equity_jump_pct", s.health.max_equity_jump_pct, 0.0, 1000.0, true);
    c.within("safety.global_cooldown_minutes", s.safety.global_cooldown_minutes, 0, 10_080);
    c.range("risk.global_max_daily_loss_pct", s.risk.global_max_daily_loss_pct, 0.0, 100.0, true);
    c.within("risk.max_orders_per_minute", s.risk.max_orders_per_minute, 1, 200);
    c.within("health.max_price_staleness_seconds", s.health.max_price_staleness_seconds, 1, 86_400);
    c.within("health.max_api_failures_in_window", s.health.max_api_failures_in_window, 1, 10_000);
    c.within("health.api_failure_window_seconds", s.health.api_failure_window_seconds, 1, 86_400);
    c.within("logging.max_file_mb", s.logging.max_file_mb, 1, 1024);
    c.within("logging.keep_files", s.logging.keep_files, 0, 100);
    c.within("backup.keep", s.backup.keep, 1, 365);
    for (key, url) in
        [("notify.heartbeat_url", &s.notify.heartbeat_url), ("notify.heartbeat_fail_url", &s.notify.heartbeat_fail_url)]
    {
        // The value is not repeated: the URL may hold a token.
        if url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            c.fail(key, "(not shown)", "an http:// or https:// URL");
        }
    }
    if s.notify.heartbeat_fail_url.is_some() && s.notify.heartbeat_url.is_none() {
        c.fail("notify.heartbeat_fail_url", "(not shown)", "goes with notify.heartbeat_url");
    }
    c.within("alpaca.requests_per_minute", s.alpaca.requests_per_minute, 1, 1000);
    c.within("alpaca.request_timeout_seconds", s.alpaca.request_timeout_seconds, 1, 60);
    c.within("alpaca.max_attempts", s.alpaca.max_attempts, 1, 10);
    let sim = &s.sim;
    c.range("sim.starting_cash", sim.starting_cash, 0.0, 1e9, true);
    c.range("sim.speed", sim.speed, 0.0, 100_000.0, true);
    c.range("sim.slippage_bps", sim.slippage_bps, 0.0, 1000.0, false);
    c.range("sim.fee_per_share", sim.fee_per_share, 0.0, 10.0, false);
    c.range("sim.fee_per_contract", sim.fee_per_contract, 0.0, 100.0, false);
    c.range("sim.crypto_fee_bps", sim.crypto_fee_bps, 0.0, 1000.0, false);
    c.range("sim.volatility", sim.volatility, 0.0, 5.0, true);
    c.finish().map(|()| tz.unwrap_or(TimeZone::UTC))
}

fn validate_bots(b: &Bots) -> Result<(), Vec<Problem>> {
    let mut c = Checks::default();
    c.within("exitbot.cooloff_minutes", b.exitbot.cooloff_minutes, 0, 10_080);

    let p = &b.portfoliobot;
    c.range("portfoliobot.cash_reserve_pct", p.cash_reserve_pct, 0.0, 99.0, false);
    let bk = &p.buckets;
    let buckets = [
        ("momentum_bucket_pct_of_daily_risk", bk.momentum_bucket_pct_of_daily_risk),
        ("options_bucket_pct_of_daily_risk", bk.options_bucket_pct_of_daily_risk),
        ("crypto_bucket_pct_of_daily_risk", bk.crypto_bucket_pct_of_daily_risk),
    ];
    for (name, v) in buckets {
        c.range(format!("portfoliobot.buckets.{name}"), v, 0.0, 100.0, false);
    }
    let sum: f64 = buckets.iter().map(|(_, v)| v).sum();
    if sum > 100.0 + 1e-9 {
        c.fail("portfoliobot.buckets", sum, "the three buckets must add up to at most 100");
    }
    let g = &p.guardrails;
    c.range(
        "portfoliobot.guardrails.per_bot_min_pct_of_daily_risk",
        g.per_bot_min_pct_of_daily_risk,
        0.0,
        100.0,
        false,
    );
    c.range(
        "portfoliobot.guardrails.per_bot_max_pct_of_daily_risk",
        g.per_bot_max_pct_of_daily_risk,
        0.0,
        100.0,
        false,
    );
    if g.per_bot_min_pct_of_daily_risk > g.per_bot_max_pct_of_daily_risk {
        c.fail(
            "portfoliobot.guardrails.per_bot_min_pct_of_daily_risk",
            g.per_bot_min_pct_of_daily_risk,
            format!("must not exceed per_bot_max_pct_of_daily_risk ({})", g.per_bot_max_pct_of_daily_risk),
        );
    }

    // bot_id -> the key that first used it, for the uniqueness check across all bots.
    let mut ids: HashMap<&str, String> = HashMap::new();
    let mut tickers: HashMap<&str, &str> = HashMap::new();
    for (i, m) in b.momentum_bots.iter().enumerate() {
        let at = format!("momentum_bots[{i}]");
        bot_id(&mut c, &mut ids, &at, &m.bot_id);
        if m.enabled {
            symbol(&mut c, &format!("{at}.ticker"), &m.ticker, false);
            if let Some(other) = tickers.insert(&m.ticker, &m.bot_id) {
                c.fail(
                    format!("{at}.ticker"),
                    format!("{:?}", m.ticker),
                    format!("already traded by {other}; Alpaca nets positions per symbol, so two bots cannot own one"),
                );
            }
        }
        session(&mut c, &format!("{at}.session"), &m.session);
        c.within(format!("{at}.risk.max_trades_per_day"), m.risk.max_trades_per_day, 0, 1000);
        c.within(format!("{at}.risk.max_concurrent_positions"), m.risk.max_concurrent_positions, 0, 100);
        c.range(format!("{at}.risk.max_position_usd"), m.risk.max_position_usd, 0.0, 1e9, true);
        c.within(format!("{at}.risk.cooldown_minutes"), m.risk.cooldown_minutes, 0, 10_080);
        c.range(format!("{at}.execution.limit_offset_bps"), m.execution.limit_offset_bps, 0.0, 500.0, false);
        exits(&mut c, &format!("{at}.exits"), &m.exits, 100.0, 1000.0);
        signal(&mut c, &format!("{at}.signal"), &m.signal, MOMENTUM_SIGNAL_MODES);
    }

    if let Some(o) = &b.optionsbot {
        bot_id(&mut c, &mut ids, "optionsbot", &o.bot_id);
        if o.enabled && o.tickers.is_empty() {
            c.fail("optionsbot.tickers", "[]", "an enabled options bot needs at least one underlying");
        }
        for (i, t) in o.tickers.iter().enumerate() {
            symbol(&mut c, &format!("optionsbot.tickers[{i}]"), t, false);
        }
        session(&mut c, "optionsbot.session", &o.session);
        c.within("optionsbot.risk.max_trades_per_day", o.risk.max_trades_per_day, 0, 1000);
        c.within("optionsbot.risk.max_concurrent_positions", o.risk.max_concurrent_positions, 0, 100);
        c.range("optionsbot.risk.max_position_size_usd", o.risk.max_position_size_usd, 0.0, 1e9, true);
        c.within("optionsbot.risk.cooldown_minutes", o.risk.cooldown_minutes, 0, 10_080);
        if let Some(v) = o.risk.profit_target_usd {
            c.range("optionsbot.risk.profit_target_usd", v, 0.0, 1e9, true);
        }
        let st = &o.strategies;
        for (name, s) in [
            ("bull_put_spread", &st.bull_put_spread),
            ("bear_call_spread", &st.bear_call_spread),
            ("iron_condor", &st.iron_condor),
        ] {
            let at = format!("optionsbot.strategies.{name}");
            c.range(format!("{at}.min_credit"), s.min_credit, 0.0, 1e6, true);
            c.range(format!("{at}.max_credit"), s.max_credit, 0.0, 1e6, true);
            if s.min_credit > s.max_credit {
                c.fail(
                    format!("{at}.min_credit"),
                    s.min_credit,
                    format!("must not exceed max_credit ({})", s.max_credit),
                );
            }
            c.range(format!("{at}.profit_target"), s.profit_target, 0.0, 1.0, true);
            c.within(format!("{at}.max_dte"), s.max_dte, 1, 1000);
        }
        c.range("optionsbot.strategies.straddle.max_cost", st.straddle.max_cost, 0.0, 1e6, true);
        c.range("optionsbot.strategies.straddle.profit_target", st.straddle.profit_target, 0.0, 10.0, true);
        // Options exits are percentages of the credit: a 200 % stop is a loss of twice the credit.
        exits(&mut c, "optionsbot.exits", &o.exits, 1000.0, 100.0);
        if let Some(b) = o.exits.broker_stop_pct {
            c.fail(
                "optionsbot.exits.broker_stop_pct",
                b,
                "cannot be: a spread cannot rest a stop at Alpaca (multi-leg orders take none); remove it",
            );
        }
        let cr = &o.chain_rules;
        if cr.dte_min > cr.dte_max {
            c.fail("optionsbot.chain_rules.dte_min", cr.dte_min, format!("must not exceed dte_max ({})", cr.dte_max));
        }
        c.within("optionsbot.chain_rules.dte_max", cr.dte_max, 1, 1000);
        let ex = &o.execution;
        c.range("optionsbot.execution.spread_width", ex.spread_width, 0.0, 1000.0, true);
        c.within("optionsbot.execution.max_quote_age_seconds", ex.max_quote_age_seconds, 1, 86_400);
        c.within("optionsbot.execution.exit_days_before_expiry", ex.exit_days_before_expiry, 0, 30);
        if cr.dte_min <= ex.exit_days_before_expiry {
            c.fail(
                "optionsbot.chain_rules.dte_min",
                cr.dte_min,
                format!(
                    "must be above execution.exit_days_before_expiry ({}): a spread would be closed as it opens",
                    ex.exit_days_before_expiry
                ),
            );
        }
        if let Some(sig) = &o.signal {
            signal(&mut c, "optionsbot.signal", sig, MOMENTUM_SIGNAL_MODES);
        }
        c.range("optionsbot.chain_rules.delta_min", cr.delta_min, 0.0, 1.0, false);
        c.range("optionsbot.chain_rules.delta_max", cr.delta_max, 0.0, 1.0, false);
        if cr.delta_min > cr.delta_max {
            c.fail(
                "optionsbot.chain_rules.delta_min",
                cr.delta_min,
                format!("must not exceed delta_max ({})", cr.delta_max),
            );
        }
    }

    if let Some(k) = &b.cryptobot {
        bot_id(&mut c, &mut ids, "cryptobot", &k.bot_id);
        if k.enabled && k.pairs.is_empty() {
            c.fail("cryptobot.pairs", "[]", "an enabled crypto bot needs at least one pair such as \"BTC/USD\"");
        }
        for (i, pair) in k.pairs.iter().enumerate() {
            symbol(&mut c, &format!("cryptobot.pairs[{i}]"), pair, true);
        }
        session(&mut c, "cryptobot.session", &k.session);
        let e = &k.execution;
        let min = ALPACA_MIN_CRYPTO_NOTIONAL_USD;
        c.range("cryptobot.execution.min_notional_usd", e.min_notional_usd, min, 1e9, false);
        if e.default_notional_usd < e.min_notional_usd || !e.default_notional_usd.is_finite() {
            c.fail(
                "cryptobot.execution.default_notional_usd",
                e.default_notional_usd,
                format!("must be at least min_notional_usd ({})", e.min_notional_usd),
            );
        }
        c.range("cryptobot.risk.min_order_size", k.risk.min_order_size, 0.0, 1e9, false);
        c.within("cryptobot.risk.max_trades_per_day", k.risk.max_trades_per_day, 0, 1000);
        c.within("cryptobot.risk.max_concurrent_positions", k.risk.max_concurrent_positions, 0, 100);
        c.within("cryptobot.risk.cooldown_minutes", k.risk.cooldown_minutes, 0, 10_080);
        exits(&mut c, "cryptobot.exits", &k.exits, 100.0, 1000.0);
        signal(&mut c, "cryptobot.signal", &k.signal, CRYPTO_SIGNAL_MODES);
    }
    c.finish()
}

/// Bot ids end up in client order ids and in the database: short, plain, unique.
fn bot_id<'a>(c: &mut Checks, ids: &mut HashMap<&'a str, String>, at: &str, id: &'a str) {
    let key = format!("{at}.bot_id");
    let plain =
        !id.is_empty() && id.len() <= 32 && id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    if !plain {
        c.fail(&key, format!("{id:?}"), "must be 1 to 32 characters of letters, digits, '_' or '-'");
    } else if let Some(first) = ids.get(id) {
        c.fail(&key, format!("{id:?}"), format!("is already used by {first}; every bot needs its own id"));
    } else {
        ids.insert(id, key);
    }
}

fn symbol(c: &mut Checks, key: &str, s: &str, crypto_pair: bool) {
    let ok = if crypto_pair {
        match s.split_once('/') {
            Some((base, quote)) => [base, quote].iter().all(|p| {
                !p.is_empty() && p.len() <= 10 && p.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
            }),
            None => false,
        }
    } else {
        !s.is_empty()
            && s.len() <= 10
            && s.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '.')
    };
    if !ok {
        let rule = if crypto_pair {
            "must be a pair in capitals with a slash, such as \"BTC/USD\""
        } else {
            "must be a ticker in capitals, such as \"AAPL\""
        };
        c.fail(key, format!("{s:?}"), rule);
    }
}

fn session(c: &mut Checks, at: &str, s: &Session) {
    if s.trade_start >= s.trade_end {
        c.fail(format!("{at}.trade_start"), s.trade_start, format!("must be before trade_end ({})", s.trade_end));
    }
    if s.manage_until < s.trade_end {
        c.fail(format!("{at}.manage_until"), s.manage_until, format!("must not be before trade_end ({})", s.trade_end));
    }
}

fn exits(c: &mut Checks, at: &str, e: &Exits, max_stop: f64, max_take: f64) {
    c.range(format!("{at}.stop_loss_pct"), e.stop_loss_pct, 0.0, max_stop, true);
    c.range(format!("{at}.take_profit_pct"), e.take_profit_pct, 0.0, max_take, true);
    if let Some(m) = e.time_stop_minutes {
        c.within(format!("{at}.time_stop_minutes"), m, 1, 100_000);
    }
    if let Some(m) = e.flatten_before_close_minutes {
        c.within(format!("{at}.flatten_before_close_minutes"), m, 0, 390);
    }
    if let Some(t) = e.trailing_stop_pct {
        c.range(format!("{at}.trailing_stop_pct"), t, 0.0, 100.0, true);
    }
    if let Some(b) = e.broker_stop_pct {
        c.range(format!("{at}.broker_stop_pct"), b, 0.0, max_stop, true);
    }
}

/// Parses every bot's signal (after `validate_bots`, so parsing cannot fail; a failure would leave
/// that signal unparsed, a placeholder that never enters).
fn parse_signals(b: &mut Bots) {
    let parse = |s: &mut Signal| s.parsed = crate::core::signal::parse(&s.mode, &s.params).ok();
    b.momentum_bots.iter_mut().for_each(|m| parse(&mut m.signal));
    if let Some(sg) = b.optionsbot.as_mut().and_then(|o| o.signal.as_mut()) {
        parse(sg);
    }
    if let Some(c) = b.cryptobot.as_mut() {
        parse(&mut c.signal);
    }
}

fn signal(c: &mut Checks, at: &str, s: &Signal, known: &[&str]) {
    if !known.contains(&s.mode.as_str()) {
        c.fail(
            format!("{at}.mode"),
            format!("{:?}", s.mode),
            format!("unknown signal mode; known: {}", known.join(", ")),
        );
    } else if let Err((param, rule)) = crate::core::signal::parse(&s.mode, &s.params) {
        let value = s.params.get(param.as_str()).map_or("?".to_string(), |v| format!("{v:?}"));
        c.fail(format!("{at}.params.{param}"), value, rule);
    }
}

/// Which account the daemon trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradingMode {
    Paper,
    Live,
    Sim,
}

impl TradingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TradingMode::Paper => "paper",
            TradingMode::Live => "live",
            TradingMode::Sim => "sim",
        }
    }
}

/// Paper unless live is confirmed twice: `ALPACA_PAPER=false` in the environment *and*
/// `alpaca.live_trading_confirmed: true` in settings.yaml. `Err` is the operator's message.
pub fn trading_mode(sim: bool, alpaca_paper: Option<&str>, live_confirmed: bool) -> Result<TradingMode, String> {
    if sim {
        return Ok(TradingMode::Sim);
    }
    match alpaca_paper.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("true") | Some("1") | Some("yes") => Ok(TradingMode::Paper),
        Some("false") | Some("0") | Some("no") => {
            if live_confirmed {
                Ok(TradingMode::Live)
            } else {
                Err("ALPACA_PAPER=false asks for live trading, but alpaca.live_trading_confirmed is not true in settings.yaml; \
                     refusing to start (set both to trade real money, or unset ALPACA_PAPER for paper trading)"
                    .into())
            }
        }
        Some(other) => Err(format!("ALPACA_PAPER must be true or false, got {other:?}")),
    }
}

/// The exit rules a bot had when it entered a symbol (the ledger's `position_rules`): what closes the position
/// if the bot or the symbol later leaves the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionRules {
    pub kind: BotKind,
    pub exits: Exits,
    /// Stocks: the bot's day end, on `system.timezone`'s clock.
    pub manage_until: Option<HhMm>,
    /// Options: closed this many days before the nearest expiry.
    pub exit_days_before_expiry: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<TimeZone, String> {
        let s: Settings = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        validate_settings(&s).map_err(|p| format!("{p:?}"))
    }

    #[test]
    fn a_heartbeat_url_is_checked_and_never_repeated_in_the_error() {
        let bad = settings("notify:\n  heartbeat_url: hc-ping.com/secret-uuid\n").unwrap_err();
        assert!(bad.contains("notify.heartbeat_url") && !bad.contains("secret-uuid"), "{bad}");
        let alone = settings("notify:\n  heartbeat_fail_url: https://x/fail\n").unwrap_err();
        assert!(alone.contains("goes with notify.heartbeat_url"), "{alone}");
        assert!(settings("notify:\n  heartbeat_url: https://hc-ping.com/u\n").is_ok());
        let n = Notify { heartbeat_url: Some("https://hc-ping.com/u/".into()), ..Notify::default() };
        assert_eq!(n.heartbeat(), Some(("https://hc-ping.com/u/".into(), "https://hc-ping.com/u/fail".into())));
        assert_eq!(Notify::default().heartbeat(), None);
    }

    #[test]
    fn live_needs_both_opt_ins() {
        assert_eq!(trading_mode(false, None, false), Ok(TradingMode::Paper));
        assert_eq!(trading_mode(false, Some("true"), true), Ok(TradingMode::Paper));
        assert!(trading_mode(false, Some("false"), false).is_err());
        assert_eq!(trading_mode(false, Some("FALSE"), true), Ok(TradingMode::Live));
        assert!(trading_mode(false, Some("maybe"), true).is_err());
        assert_eq!(trading_mode(true, Some("false"), false), Ok(TradingMode::Sim));
    }

    #[test]
    fn defaults_are_the_seeds() {
        let s = Settings::default();
        assert_eq!(s.runner.loop_interval_seconds, 5);
        assert_eq!(s.system.timezone, "America/Los_Angeles");
        assert_eq!(s.risk.global_max_daily_loss_pct, 1.0);
        assert_eq!(s.health.max_api_failures_in_window, 5);
        assert!(!s.development.enable_mock_data);
        assert!(s.safety.fail_closed);
        assert!(!s.alpaca.live_trading_confirmed);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = settings("risk:\n  global_max_daily_los_pct: 1.0\n").unwrap_err();
        assert!(err.contains("risk: unknown field `global_max_daily_los_pct`"), "{err}");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err = settings("runner:\n  loop_interval_seconds: fast\n").unwrap_err();
        assert!(err.starts_with("runner.loop_interval_seconds: invalid type"), "{err}");
    }

    #[test]
    fn ranges_are_checked_and_all_reported() {
        let err = settings("runner: {loop_interval_seconds: 0}\nrisk: {global_max_daily_loss_pct: 150}\n").unwrap_err();
        assert!(err.contains("runner.loop_interval_seconds"), "{err}");
        assert!(err.contains("risk.global_max_daily_loss_pct"), "{err}");
        assert!(settings("risk: {global_max_daily_loss_pct: .nan}\n").is_err());
        assert!(settings("risk: {global_max_daily_loss_pct: 0}\n").is_err());
        assert!(settings("risk: {global_max_daily_loss_pct: 100}\n").is_ok());
    }

    #[test]
    fn bad_zone_is_refused() {
        let err = settings("system: {timezone: America/Los_Angles}\n").unwrap_err();
        assert!(err.contains("system.timezone"), "{err}");
    }

    fn bots(yaml: &str) -> Result<(), String> {
        let b: Bots = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        validate_bots(&b).map_err(|p| format!("{p:?}"))
    }

    const MOM: &str = "  - bot_id: mom_A\n    ticker: AAPL\n    session: {trade_start: \"06:35\", trade_end: \"09:30\", manage_until: \"12:55\"}\n    exits: {stop_loss_pct: 0.5, take_profit_pct: 1.0}\n    signal: {mode: placeholder_momentum_v1}\n";

    #[test]
    fn duplicate_bot_ids_and_tickers_are_refused() {
        let two = format!("momentum_bots:\n{MOM}{MOM}");
        let err = bots(&two).unwrap_err();
        assert!(err.contains("momentum_bots[1].bot_id"), "{err}");
        let err = bots(&format!("momentum_bots:\n{MOM}{}", MOM.replace("mom_A", "mom_B"))).unwrap_err();
        assert!(err.contains("momentum_bots[1].ticker") && err.contains("already traded by mom_A"), "{err}");
        assert!(
            bots(&format!("momentum_bots:\n{MOM}{}", MOM.replace("mom_A", "mom_B").replace("AAPL", "MSFT"))).is_ok()
        );
    }

    #[test]
    fn session_order_and_time_format() {
        let bad = MOM.replace("\"06:35\"", "\"09:45\"");
        let err = bots(&format!("momentum_bots:\n{bad}")).unwrap_err();
        assert!(err.contains("momentum_bots[0].session.trade_start"), "{err}");
        let bad = MOM.replace("\"06:35\"", "\"6.35\"");
        let err = bots(&format!("momentum_bots:\n{bad}")).unwrap_err();
        assert!(err.starts_with("momentum_bots[0].session.trade_start: expected a time of day"), "{err}");
    }

    #[test]
    fn signal_params_are_checked_with_their_path() {
        let real = MOM.replace("placeholder_momentum_v1", "ema_roc_volume_v1");
        assert!(bots(&format!("momentum_bots:\n{real}")).is_ok());
        let bad = MOM.replace("{mode: placeholder_momentum_v1}", "{mode: ema_roc_volume_v1, params: {fats: 3}}");
        let err = bots(&format!("momentum_bots:\n{bad}")).unwrap_err();
        assert!(err.contains("momentum_bots[0].signal.params.fats"), "{err}");
    }

    #[test]
    fn a_broker_stop_is_a_percentage_and_a_spread_cannot_have_one() {
        let with = |pct: &str| {
            MOM.replace("take_profit_pct: 1.0}", &format!("take_profit_pct: 1.0, broker_stop_pct: {pct}}}"))
        };
        assert!(bots(&format!("momentum_bots:\n{}", with("1.0"))).is_ok());
        let err = bots(&format!("momentum_bots:\n{}", with("-1"))).unwrap_err();
        assert!(err.contains("momentum_bots[0].exits.broker_stop_pct"), "{err}");
        let mut cfg = Config::load(std::path::Path::new("config")).unwrap();
        cfg.bots.optionsbot.as_mut().unwrap().exits.broker_stop_pct = Some(1.0);
        let err = validate_bots(&cfg.bots).map_err(|p| format!("{p:?}")).unwrap_err();
        assert!(err.contains("optionsbot.exits.broker_stop_pct") && err.contains("multi-leg"), "{err}");
        // With resting stops elsewhere (the default), start-up says the spreads have none.
        cfg.bots.optionsbot.as_mut().unwrap().exits.broker_stop_pct = None;
        assert!(cfg.warnings().iter().any(|w| w.starts_with("opt_core: option spreads cannot rest a stop")));
        assert_eq!(cfg.bots.momentum_bots[0].exits.resting_stop_pct(), Some(0.5), "at stop_loss_pct unless set");
        for m in &mut cfg.bots.momentum_bots {
            m.exits.broker_stop = false;
        }
        cfg.bots.cryptobot.as_mut().unwrap().exits.broker_stop = false;
        assert!(!cfg.warnings().iter().any(|w| w.contains("cannot rest a stop")));
        assert_eq!(cfg.bots.momentum_bots[0].exits.resting_stop_pct(), None);
    }

    #[test]
    fn buckets_must_fit_in_100() {
        let err = bots("portfoliobot:\n  buckets: {momentum_bucket_pct_of_daily_risk: 50, options_bucket_pct_of_daily_risk: 50, crypto_bucket_pct_of_daily_risk: 1}\n").unwrap_err();
        assert!(err.contains("portfoliobot.buckets"), "{err}");
    }

    #[test]
    fn enabled_bots_need_symbols_and_known_modes() {
        let err = bots("cryptobot:\n  pairs: []\n  session: {trade_start: \"00:00\", trade_end: \"23:59\", manage_until: \"23:59\"}\n  exits: {stop_loss_pct: 1, take_profit_pct: 2}\n  signal: {mode: moon}\n").unwrap_err();
        assert!(err.contains("cryptobot.pairs"), "{err}");
        assert!(err.contains("cryptobot.signal.mode"), "{err}");
        let err = bots("cryptobot:\n  pairs: [BTCUSD]\n  session: {trade_start: \"00:00\", trade_end: \"23:59\", manage_until: \"23:59\"}\n  exits: {stop_loss_pct: 1, take_profit_pct: 2}\n  signal: {mode: placeholder_crypto_momo_v1}\n").unwrap_err();
        assert!(err.contains("cryptobot.pairs[0]"), "{err}");
    }

    #[test]
    fn the_enabled_bots_come_in_one_order_each_with_its_parsed_signal() {
        use crate::core::signal::Signal as Parsed;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cfg = Config::load(&root.join("config")).unwrap();
        let bots = cfg.enabled_bots();
        let kinds: Vec<BotKind> = bots.iter().map(|b| b.kind()).collect();
        let mut sorted = kinds.clone();
        sorted.sort_by_key(|k| match k {
            BotKind::Momentum => 0,
            BotKind::Options => 1,
            BotKind::Crypto => 2,
        });
        assert_eq!(kinds, sorted, "momentum bots, then options, then crypto");
        assert!(bots.iter().all(|b| b.signal() != Parsed::Placeholder), "the shipped bots all have real signals");
        assert!(matches!(bots[0].signal(), Parsed::EmaRocVolume { .. }));
        // The Python daemon's files: placeholders, and an options bot without a signal.
        let python = Config::load(&root.join("tests/fixtures/python-config")).unwrap();
        assert!(!python.enabled_bots().is_empty());
        assert!(python.enabled_bots().iter().all(|b| b.signal() == Parsed::Placeholder));
    }

    #[test]
    fn a_position_is_an_orphan_once_its_bot_or_symbol_leaves_the_config() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cfg = Config::load(&root.join("config")).unwrap();
        let crypto = cfg.bots.cryptobot.as_ref().unwrap().bot_id.clone();
        let pair = cfg.bots.cryptobot.as_ref().unwrap().pairs[0].clone();
        let options = cfg.bots.optionsbot.as_ref().unwrap().bot_id.clone();
        let underlying = cfg.bots.optionsbot.as_ref().unwrap().tickers[0].clone();
        let leg = format!("{underlying}261218P00480000");
        assert!(cfg.manages(&crypto, &pair));
        assert!(cfg.manages(&options, &leg), "an option leg by its underlying");
        assert!(!cfg.manages(&crypto, "DOGE/USD"), "a symbol the bot does not trade");
        assert!(!cfg.manages("gone_bot", &pair), "a bot that is not configured");
        cfg.bots.cryptobot.as_mut().unwrap().pairs.retain(|p| *p != pair);
        assert!(!cfg.manages(&crypto, &pair), "a pair removed from the list");
        cfg.bots.optionsbot.as_mut().unwrap().signal.as_mut().unwrap().parsed = None;
        assert!(!cfg.manages(&options, &leg), "a bot back on a placeholder");
    }
}
