//! The runner: parses the command line, runs one command, maps its outcome to an exit code.
//!
//! `run` is the daemon: a plain loop on the main thread calling the orchestrator every
//! `runner.loop_interval_seconds`. The ctrlc thread (SIGINT, SIGTERM, SIGHUP) only sends on a
//! channel; the loop's sleep is a `recv_timeout` on that channel, so a signal ends the process
//! within a second, mid-sleep included. Each iteration runs under `catch_unwind`
//! (`Orchestrator::run_iteration_guarded`): a panic becomes an `internal_error` halt and an event,
//! not a dead daemon with open positions.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use log::LevelFilter;

use std::sync::Arc;
use trading_hydra::cli::{self, Command, RunArgs};

use trading_hydra::core::clock::{self, Clock, ScaledClock, SystemClock};
use trading_hydra::core::config::{self, Config, Console, TradingMode};
use trading_hydra::core::halt::{self, Halt, HaltReason};
use trading_hydra::core::halt_store;
use trading_hydra::core::ledger_account::{self, LedgerAccount};
use trading_hydra::core::ledger_lock::LedgerLock;
use trading_hydra::core::logging::{self, LogSettings};
use trading_hydra::core::state::State;
use trading_hydra::error::Error;
use trading_hydra::event;
use trading_hydra::orchestrator::{
    CONFIG_DIR_KEY, Orchestrator, RELOAD_REQUEST_KEY, RELOAD_RESULT_KEY, heartbeat_due, heartbeat_pace,
};
use trading_hydra::research::{backtest, sweep};
use trading_hydra::services::alpaca_client::{AlpacaClient, ClientSettings, Credentials};
use trading_hydra::services::broker::{Account, Broker, BrokerError};
use trading_hydra::services::notify;
use trading_hydra::services::status;
use trading_hydra::services::systemd::Notifier;
use trading_hydra::sim::bar_files;
use trading_hydra::sim::sim_broker::SimBroker;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("trading-hydra: {e}");
            return ExitCode::from(2);
        }
    };
    if !matches!(command, Command::Run(_)) {
        quiet_on_a_closed_pipe();
    }
    let result = match command {
        Command::Help(page) => {
            print!("{}", page.unwrap_or(cli::HELP));
            Ok(())
        }
        Command::Version => {
            println!("trading-hydra {}", trading_hydra::VERSION);
            Ok(())
        }
        Command::CheckConfig { config } => check_config(config),
        Command::Status { config, json } => show_status(config, json),
        Command::Trades { config, from, to, csv } => show_trades(config, from, to, csv),
        Command::Replay { config, date, data, out } => replay(config, date, data, out),
        Command::Halt { config, reason } => set_manual_halt(config, &reason),
        Command::Resume { config } => resume(config),
        Command::Reload { config } => reload(config),
        Command::SimReset { config } => sim_reset(config),
        Command::Recover { config, confirm } => recover(config, confirm),
        Command::Backup { config, dest } => backup(config, &dest),
        Command::Run(args) => run(args),
        Command::Backtest(args) => backtest(args),
        Command::Download(args) => download(args),
    };
    // The log's last lines reach the file, unless the disk holds them up for more than a second.
    logging::drain(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trading-hydra: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `trading-hydra backtest … | head`: a reader that goes away is no error. Rust ignores SIGPIPE,
/// so a print to a closed pipe panics ("failed printing to stdout: Broken pipe"); a one-shot
/// command then ends quietly, exit 0. Never in `run`: a closed stdout must not stop a daemon
/// (its iterations catch their panics anyway).
fn quiet_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if text.is_some_and(|t| t.contains("Broken pipe")) {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn load_config(flag: Option<PathBuf>) -> Result<Config, Error> {
    let dir = Config::resolve_dir(flag.as_deref());
    Ok(Config::load(&dir)?)
}

/// `stderr_level`: the daemon shows its events; one-shot commands only their errors (they print
/// their own answer).
fn init_logging(cfg: &Config, stderr_level: LevelFilter) -> Result<(), Error> {
    init_logging_with(cfg, stderr_level, false)
}

/// `quiet_summaries`: a person's console (`logging.console`), without each iteration's summary.
fn init_logging_with(cfg: &Config, stderr_level: LevelFilter, quiet_summaries: bool) -> Result<(), Error> {
    let s = &cfg.settings;
    let file_level = if s.development.enhanced_logging { LevelFilter::Debug } else { LevelFilter::Info };
    logging::init(&LogSettings {
        path: s.system.log_path.clone(),
        max_bytes: s.logging.max_file_mb * 1024 * 1024,
        keep_files: s.logging.keep_files,
        tz: cfg.timezone.clone(),
        file_level,
        stderr_level,
        quiet_summaries,
    })?;
    Ok(())
}

/// How long `halt` and `resume` wait for their notification to be posted before they exit (a
/// hanging webhook costs at most this).
const CLI_NOTIFY_LIMIT: Duration = Duration::from_secs(3);

/// How often a sleeping loop looks for a `reload` request.
const RELOAD_LOOK: Duration = Duration::from_secs(1);

/// The `--seed` of a simulated market when none is given: the same market every time.
const DEFAULT_SIM_SEED: u64 = 42;

fn run(args: RunArgs) -> Result<(), Error> {
    let dir = Config::resolve_dir(args.config.as_deref());
    // The texts are kept: a `reload` logs what changed against them.
    let (settings_text, bots_text) = Config::read_texts(&dir)?;
    let cfg = Config::from_texts(&dir, &settings_text, &bots_text)?;
    let paper = std::env::var("ALPACA_PAPER").ok();
    let mode = config::trading_mode(args.sim, paper.as_deref(), cfg.settings.alpaca.live_trading_confirmed)
        .map_err(Error::Usage)?;
    // Checked before anything is written: missing keys are a usage error (exit 2).
    let credentials = if args.sim { None } else { Some(Credentials::from_env().map_err(Error::Usage)?) };
    let db = cfg.settings.system.state_db_path.clone();
    // One daemon per ledger, for this process's whole life: a second `run` is refused here, at
    // once and before it writes anything (its log included).
    let _ledger = LedgerLock::acquire(&db)?;
    // A mark left by a daemon that found its journal deleted under it is that daemon's: this one
    // holds the lock, and opens the ledger with a journal of its own.
    trading_hydra::core::state::clear_journal_lost(&db).map_err(|e| {
        Error::Other(format!("cannot remove {}: {e}", trading_hydra::core::state::journal_lost_mark(&db).display()))
    })?;
    // A person reads a terminal, and the journal under systemd (which sets JOURNAL_STREAM): the
    // events that matter and a heartbeat a minute, not 17,280 summaries a day on a Pi's flash.
    // A pipe or a file gets everything. The JSONL file always has everything.
    let console = match cfg.settings.logging.console {
        Console::Auto if std::io::stderr().is_terminal() || std::env::var_os("JOURNAL_STREAM").is_some() => {
            Console::Events
        }
        Console::Auto => Console::Full,
        other => other,
    };
    init_logging_with(&cfg, LevelFilter::Info, console == Console::Events)?;
    let state = State::open(&db)?;

    // A ledger keeps one account's orders and positions: a run for another account is refused
    // (exit 2) before anything is sent. The simulated account's is claimed here; a broker's
    // account by its id, read below at start-up or by the loop's first account read that works.
    // A simulated account's ledger refuses a broker's run before the broker is asked anything.
    let ledger = ledger_account::recorded(&state)?;
    match (&ledger, args.sim) {
        (Some(theirs), true) if !theirs.is_simulated() => {
            return Err(Error::Usage(ledger_account::refusal(&db, theirs, &LedgerAccount::Simulated.to_string())));
        }
        (Some(theirs), false) if theirs.is_simulated() => {
            let running = format!("the Alpaca {} account of ALPACA_KEY", mode.as_str());
            return Err(Error::Usage(ledger_account::refusal(&db, theirs, &running)));
        }
        _ => {}
    }
    let interval_secs = cfg.settings.runner.loop_interval_seconds;
    // The simulated clock, held still through each iteration (`ScaledClock::hold`).
    let mut sim_clock: Option<Arc<ScaledClock>> = None;
    let (broker, clock, speed, first_account): (Box<dyn Broker>, Box<dyn Clock>, f64, Option<Account>) =
        match credentials {
            None => {
                let store = State::open(&db)?;
                let start = SimBroker::stored_time(&store)?.unwrap_or_else(|| clock::sim_start(Timestamp::now()));
                let speed = args.speed.unwrap_or(cfg.settings.sim.speed);
                let clock = Arc::new(ScaledClock::new(start, speed));
                sim_clock = Some(clock.clone());
                // The console and the log speak the simulated clock too: one clock.
                logging::stamp_with(clock.clone());
                let seed = args.seed.unwrap_or(DEFAULT_SIM_SEED);
                let mut sim = SimBroker::open(clock.clone(), cfg.settings.sim.clone(), seed, Some(store))?;
                let account = sim.account().ok();
                (Box::new(sim), Box::new(clock), speed, account)
            }
            Some(credentials) => {
                let (client, account) = alpaca_client(&cfg, mode, credentials)?;
                (Box::new(client), Box::new(SystemClock), 1.0, account)
            }
        };
    state.kv_set(ledger_account::MODE_KEY, mode.as_str(), clock.now())?;
    let absolute = std::path::absolute(&cfg.dir).unwrap_or_else(|_| cfg.dir.clone());
    state.kv_set(CONFIG_DIR_KEY, &absolute.display().to_string(), clock.now())?;
    event!(
        Info,
        "startup",
        version = trading_hydra::VERSION,
        mode = mode.as_str(),
        loop_interval_seconds = interval_secs,
        config = cfg.dir.display().to_string(),
        speed = speed,
        clock = if args.sim { "simulated" } else { "wall" },
        wall_ts = clock::display_ts(Timestamp::now(), &cfg.timezone)
    );
    for warning in cfg.warnings() {
        event!(Warn, "config_warning", detail = warning.as_str());
    }
    logging::flush();

    let (tx, rx) = mpsc::channel::<()>();
    ctrlc::set_handler(move || {
        // The loop may already be gone during shutdown; nothing is left to tell then.
        let _ = tx.send(());
    })
    .map_err(|e| Error::Other(format!("cannot install the SIGINT/SIGTERM handler: {e}")))?;

    // In a simulation the market runs `speed` times faster, and so does the loop.
    let interval = Duration::from_secs(interval_secs).div_f64(speed);
    let mut orchestrator = Orchestrator::new(cfg, state, clock, broker);
    orchestrator.keep_texts(settings_text, bots_text);
    if let Some(account) = &first_account {
        let now = orchestrator.now();
        orchestrator.confirm_account(account, now).map_err(Error::Usage)?;
    }
    let systemd = Notifier::from_env();
    systemd.ready();
    let notify_settings = &orchestrator.config().settings.notify;
    notify::start_with(notify_settings.format, notify_settings.heartbeat());
    notify::send(notify::Note {
        event: "startup",
        title: "Trading Hydra started".into(),
        text: format!("mode {}, loop every {interval_secs} s", mode.as_str()),
    });
    let mut done: u64 = 0;
    let mut refused: Option<String> = None;
    // A person's console: one heartbeat line after the first iteration, then one a step of the
    // daemon's own clock (a minute live; a simulated hour at 60× and faster).
    let pace = heartbeat_pace(speed);
    let mut heartbeat_at: Option<Timestamp> = None;
    // The dead-man's switch's last ping, in the daemon's clock.
    let mut pinged_at: Option<Timestamp> = None;
    let reason = 'run: loop {
        let started = Instant::now();
        // A completed iteration feeds systemd's watchdog; a panicked one does not, and a loop that
        // keeps panicking or hangs is restarted by systemd (WatchdogSec).
        if let Some(c) = &sim_clock {
            c.hold();
        }
        let summary = orchestrator.run_iteration_guarded();
        if let Some(c) = &sim_clock {
            c.release();
        }
        let healthy = summary.is_some();
        if healthy {
            systemd.watchdog();
        }
        if console == Console::Events
            && let Some(s) = &summary
            && heartbeat_due(heartbeat_at, s.market_time, pace)
        {
            let positions = orchestrator.state().owned_positions().map(|p| p.len()).ok();
            let tz = &orchestrator.config().timezone;
            logging::console_line(s.heartbeat(logging::now(), positions, tz, args.sim));
            heartbeat_at = Some(s.market_time);
        }
        // The dead-man's switch: healthy, or failing with the reason, at most once a minute.
        let at = summary.as_ref().map_or_else(|| orchestrator.now(), |s| s.market_time);
        if notify::beat_due(pinged_at, at) {
            pinged_at = Some(at);
            let (healthy, why) = health_of(summary.as_ref());
            notify::beat(healthy, &why);
        }
        logging::flush();
        done += 1;
        // A ledger found to be another account's (at the first account read that worked): stop,
        // having sent nothing.
        if let Some(why) = orchestrator.refused() {
            refused = Some(why.to_string());
            break "ledger_of_another_account";
        }
        if args.iterations.is_some_and(|n| done >= n) {
            break "iterations_done";
        }
        // The next iteration starts one interval after this one started, or at once if this one
        // overran: never a burst of catch-up iterations. An interval longer than half of
        // systemd's watchdog (`WATCHDOG_USEC`) is slept in pieces, the watchdog fed after each
        // while the last iteration completed: a healthy daemon with `loop_interval_seconds: 3600`
        // is not killed by `WatchdogSec=60`, a hung or panicking one still is.
        // The sleep also wakes every second to look for a `reload` (one cheap statement).
        let next = started + interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            let piece = systemd.watchdog_period().map_or(left, |p| left.min(p)).min(RELOAD_LOOK);
            match rx.recv_timeout(piece) {
                Ok(()) => break 'run "signal",
                Err(RecvTimeoutError::Disconnected) => break 'run "signal_handler_gone",
                Err(RecvTimeoutError::Timeout) if Instant::now() >= next => break,
                Err(RecvTimeoutError::Timeout) => {
                    if healthy {
                        systemd.watchdog();
                    }
                    orchestrator.between_iterations();
                    logging::flush();
                }
            }
        }
    };
    systemd.stopping();
    event!(
        Info,
        "shutdown",
        reason = reason,
        iterations = done,
        peak_rss_kb = peak_rss_kb(),
        notify_failures = notify::failures()
    );
    notify::send(notify::Note {
        event: "shutdown",
        title: "Trading Hydra stopped".into(),
        text: format!("{reason} after {done} iterations"),
    });
    // Queued messages get a second at most: shutdown stays within its bound.
    notify::stop(Duration::from_secs(1));
    logging::flush();
    // Dropping the orchestrator closes the database.
    drop(orchestrator);
    match refused {
        Some(why) => Err(Error::Usage(why)),
        None => Ok(()),
    }
}

/// What the heartbeat says of an iteration: healthy (entries may go, no step failed), or why not
/// (`None`: it panicked).
fn health_of(summary: Option<&trading_hydra::orchestrator::LoopSummary>) -> (bool, String) {
    match summary {
        None => (false, "the iteration panicked: internal_error (see the log)".to_string()),
        Some(s) if s.halted => {
            let halts: Vec<&str> = s.halts.iter().map(|h| h.as_str()).collect();
            (
                false,
                format!("halted: {}", if halts.is_empty() { "halts unknown".to_string() } else { halts.join(", ") }),
            )
        }
        Some(s) => match &s.error {
            Some(e) => (false, format!("unhealthy: {e}")),
            None => (
                true,
                format!(
                    "ok: iteration {}, equity {}",
                    s.iteration,
                    s.equity.map_or("unknown".into(), |e| format!("{e:.2}"))
                ),
            ),
        },
    }
}

/// The process's peak resident memory in KiB (Linux's `VmHWM`), for the `shutdown` event: memory
/// that grows until the process is killed is a classic complaint about bots on a Raspberry Pi.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The Alpaca client for paper or live, checked once: keys the broker refuses end the start-up
/// (exit 1) instead of failing every few seconds for months. With the account it read (`None`
/// when the read failed otherwise: the loop reads it again).
fn alpaca_client(
    cfg: &Config,
    mode: TradingMode,
    credentials: Credentials,
) -> Result<(AlpacaClient, Option<Account>), Error> {
    let a = &cfg.settings.alpaca;
    let (trading_url, data_url) = ClientSettings::base_urls(
        mode == TradingMode::Live,
        std::env::var("ALPACA_TRADING_URL").ok(),
        std::env::var("ALPACA_DATA_URL").ok(),
    );
    // One call, retries included, stays inside 80 % of the loop interval.
    let budget = Duration::from_secs(cfg.settings.runner.loop_interval_seconds).mul_f64(0.8);
    let settings = ClientSettings {
        trading_url,
        data_url,
        feed: a.data_feed,
        timeout: Duration::from_secs(a.request_timeout_seconds).min(budget),
        retry_budget: budget,
        max_attempts: a.max_attempts,
        backoff: Duration::from_millis(250),
        requests_per_minute: a.requests_per_minute,
    };
    let mut client = AlpacaClient::new(credentials, settings);
    match client.account() {
        Err(e @ BrokerError::Unauthorized { .. }) => Err(Error::Other(e.to_string())),
        Ok(account) => Ok((client, Some(account))),
        // Any other failure is the loop's to handle (fail-closed, counted by the health window).
        Err(_) => Ok((client, None)),
    }
}

/// `download`: one CSV per symbol, appended after the last bar already there (resumable).
fn download(args: cli::DownloadArgs) -> Result<(), Error> {
    use std::io::{IsTerminal, Write};
    let cfg = load_config(args.config.clone())?;
    let credentials = Credentials::from_env().map_err(Error::Usage)?;
    let paper = std::env::var("ALPACA_PAPER").ok();
    let mode = config::trading_mode(false, paper.as_deref(), cfg.settings.alpaca.live_trading_confirmed)
        .map_err(Error::Usage)?;
    let (mut client, _) = alpaca_client(&cfg, mode, credentials)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::Other(format!("cannot create {}: {e}", args.out.display())))?;
    let start = clock::start_of_date(args.from);
    let end = clock::start_of_date(args.to.tomorrow().unwrap_or(args.to));
    let progress = std::io::stderr().is_terminal();
    for symbol in &args.symbols {
        let path = args.out.join(bar_files::file_name(symbol));
        // Resume after the last bar already written; a file with a bad line is refused (exit 2)
        // rather than appended to, and a line cut off by an interrupted download is removed.
        let resume = bar_files::resume(&path).map_err(Error::Usage)?;
        if let Some(cut) = &resume.cut {
            println!(
                "{symbol}: removed the cut-off last line of {} (an interrupted download): {cut:?}",
                path.display()
            );
        }
        let last = resume.last;
        let from = last.map_or(start, |t| t.max(start));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::Other(format!("cannot open {}: {e}", path.display())))?;
        if resume.header {
            writeln!(file, "{}", bar_files::HEADER).map_err(|e| Error::Other(e.to_string()))?;
        }
        let mut written = 0u64;
        client
            .historical_bars(symbol, &args.timeframe, from, end, |bars| {
                for b in bars.iter().filter(|b| last.is_none_or(|l| b.t > l) && b.t < end) {
                    writeln!(file, "{}", bar_files::line(b))
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    written += 1;
                }
                if progress {
                    eprint!("\rdownload: {symbol}: {written} bars");
                }
                Ok(())
            })
            .map_err(Error::Other)?;
        if progress {
            eprintln!();
        }
        println!("{symbol}: {written} new bars in {}", path.display());
    }
    Ok(())
}

fn backtest(args: cli::BacktestArgs) -> Result<(), Error> {
    if !args.sweep.is_empty() {
        return backtest_sweep(args);
    }
    let dir = Config::resolve_dir(args.config.as_deref());
    // The texts go into report.html: the configuration exactly as this run read it.
    let (settings, bots) = Config::read_texts(&dir)?;
    let cfg = Config::from_texts(&dir, &settings, &bots)?;
    // Bar files are read through once here (a bad one is refused before anything runs), then
    // streamed by the replay; the synthetic market's bars are made in memory.
    let bars = match &args.source {
        cli::BarSource::Files(path) => backtest::Bars::checked(
            bar_files::check(path, clock::Dates::new(args.from, args.to)).map_err(Error::Usage)?,
        ),
        cli::BarSource::Synthetic { .. } => {
            backtest::Bars::Held(std::sync::Arc::new(backtest::window(backtest_bars(&args, &cfg)?, args.from, args.to)))
        }
    };
    let source = bars_source(&args);
    let s = backtest::run(cfg, (&settings, &bots), &bars, &args.out, &source).map_err(Error::Other)?.summary;
    let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.2}{unit}"));
    println!("bars replayed      {}", s.bars);
    println!("equity             ${:.2} -> ${:.2} ({:+.2} %)", s.start_equity, s.end_equity, s.total_return_pct);
    println!("CAGR               {} (over {} days: {})", opt(s.cagr_pct, " %"), s.days, s.calendar.label());
    println!("max drawdown       {:.2} %, the longest {:.1} days", s.max_drawdown_pct, s.longest_drawdown_days);
    println!(
        "Sharpe             {} (annualised), Sortino {}, Calmar {}",
        opt(s.sharpe, ""),
        opt(s.sortino, ""),
        opt(s.calmar, "")
    );
    let day = |d: Option<(jiff::civil::Date, f64)>| d.map_or("n/a".into(), |(d, r)| format!("{r:+.2} % on {d}"));
    println!("best day           {}, worst {}", day(s.best_day), day(s.worst_day));
    println!(
        "round trips        {} closed, {} open (win rate {}, average win {}, average loss {})",
        s.trades,
        s.open_trades,
        opt(s.win_rate_pct, " %"),
        opt(s.avg_win, ""),
        opt(s.avg_loss, "")
    );
    println!("profit factor      {}, expectancy {} a trip", opt(s.profit_factor, ""), opt(s.expectancy, ""));
    println!("fees paid          ${:.2}, slippage {}", s.fees, opt(s.slippage, ""));
    println!(
        "exposure           {:.2} % of equity on average, in the market {:.2} % of the minutes",
        s.exposure_pct, s.time_in_market_pct
    );
    for (bot, pnl) in &s.per_bot_pnl {
        println!("P&L {bot:<14} ${pnl:.2}");
    }
    for (reason, n) in &s.halts {
        println!("halts {reason:<12} {n}");
    }
    for f in &s.skipped {
        println!("skipped            {f}: no configured bot trades it");
    }
    println!("report             {}", args.out.display());
    if let Some(kb) = peak_rss_kb() {
        println!("peak memory        {kb} KiB");
    }
    Ok(())
}

/// Where a backtest's bars came from, in words (for its report).
fn bars_source(args: &cli::BacktestArgs) -> String {
    match &args.source {
        cli::BarSource::Files(path) => format!("bars from {}", path.display()),
        cli::BarSource::Synthetic { days, seed } => format!("the synthetic market, seed {seed}, {days} weekdays"),
    }
}

/// A backtest's bars: the files of `--data`, or the synthetic market of `--synthetic` (its symbols
/// those of `cfg`'s enabled bots, its last day `--to` or the last weekday before today).
fn backtest_bars(
    args: &cli::BacktestArgs,
    cfg: &Config,
) -> Result<trading_hydra::core::market_data::BySymbol<Vec<trading_hydra::core::market_data::Bar>>, Error> {
    match &args.source {
        cli::BarSource::Files(path) => bar_files::read(path).map_err(Error::Usage),
        cli::BarSource::Synthetic { days, seed } => {
            let last = match args.to {
                Some(d) => d,
                None => clock::trading_date(Timestamp::now()).yesterday().map_err(|e| Error::Other(e.to_string()))?,
            };
            backtest::synthetic(cfg, *days, *seed, last).map_err(Error::Usage)
        }
    }
}

/// `backtest --sweep`: the grid (refused before anything runs when a key or value does not
/// work), run on `--jobs` threads and ranked; with `--walk-forward`, window by window.
fn backtest_sweep(args: cli::BacktestArgs) -> Result<(), Error> {
    let dir = Config::resolve_dir(args.config.as_deref());
    let (settings, bots) = Config::read_texts(&dir)?;
    // The files as they are must be valid before the sweep edits them.
    let cfg = Config::from_texts(&dir, &settings, &bots)?;
    let combos = sweep::grid(&dir, &settings, &bots, &args.sweep).map_err(Error::Usage)?;
    let data = backtest::window(backtest_bars(&args, &cfg)?, args.from, args.to);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::Other(format!("cannot create {}: {e}", args.out.display())))?;
    let jobs = args.jobs.unwrap_or_else(sweep::default_jobs);
    let bars: usize = data.values().map(Vec::len).sum();
    let started = std::time::Instant::now();
    let out = |name: &str| args.out.join(name);
    match args.walk_forward {
        None => {
            let data = std::sync::Arc::new(data);
            let ranked = sweep::sweep(&args.sweep, &combos, &data, args.rank, jobs, "sweep").map_err(Error::Other)?;
            backtest::write(out("sweep.csv"), &ranked.csv()).map_err(Error::Other)?;
            println!(
                "sweep: {} combinations over {bars} bars, ranked by {} ({:.1} s on {jobs} threads)",
                combos.len(),
                args.rank.as_str(),
                started.elapsed().as_secs_f64()
            );
            print!("{}", ranked.table(20));
            println!("best               {}", ranked.describe(ranked.best()));
            // The best run once more, for its whole report: the sweep keeps each combination's
            // figures only, not the curves and trades of them all.
            let best = &combos[ranked.best()];
            let source = format!(
                "{}, the sweep's best by {}: {}",
                bars_source(&args),
                args.rank.as_str(),
                ranked.describe(ranked.best())
            );
            let bars = backtest::Bars::Held(data.clone());
            backtest::run(best.cfg.clone(), (&best.texts.0, &best.texts.1), &bars, &out("best"), &source)
                .map_err(Error::Other)?;
            println!("best report        {}", out("best").display());
        }
        Some(days) => {
            let wf = sweep::walk_forward(&combos, &data, days, args.rank, jobs).map_err(Error::Other)?;
            // Hindsight, for comparison: the grid over all the test days at once, its best.
            let (first, last) = (wf.windows[0].test.0, wf.windows[wf.windows.len() - 1].test.1);
            let span = std::sync::Arc::new(sweep::between(&data, first, last));
            let ranked = sweep::sweep(&args.sweep, &combos, &span, args.rank, jobs, "in-sample sweep of the test days")
                .map_err(Error::Other)?;
            backtest::write(out("walk_forward.csv"), &wf.csv(&args.sweep, &combos)).map_err(Error::Other)?;
            backtest::write(out("walk_forward_equity.csv"), &backtest::equity_csv(&wf.joined)).map_err(Error::Other)?;
            backtest::write(out("sweep.csv"), &ranked.csv()).map_err(Error::Other)?;
            // The best in hindsight, in full: its report, and its curve as the chart's in-sample line.
            let best = &combos[ranked.best()];
            let source = format!(
                "{}, {first} to {last}: the in-sample best by {} in hindsight: {}",
                bars_source(&args),
                args.rank.as_str(),
                ranked.describe(ranked.best())
            );
            let hindsight = backtest::run(
                best.cfg.clone(),
                (&best.texts.0, &best.texts.1),
                &backtest::Bars::Held(span.clone()),
                &out("best"),
                &source,
            )
            .map_err(Error::Other)?;
            // Each test window's bars begin the day after its training's last day.
            let starts: Vec<Timestamp> =
                wf.windows.iter().filter_map(|w| w.train.1.tomorrow().ok()).map(clock::start_of_date).collect();
            let chart = trading_hydra::research::report_page::walk_forward_svg(&wf.joined, &hindsight.equity, &starts);
            backtest::write(out("walk_forward_equity.svg"), &chart).map_err(Error::Other)?;
            println!(
                "walk-forward {}:{}: {} windows of {} combinations over {bars} bars, ranked by {} ({:.1} s on {jobs} threads)",
                days.0,
                days.1,
                wf.windows.len(),
                combos.len(),
                args.rank.as_str(),
                started.elapsed().as_secs_f64()
            );
            print!("{}", wf.table(&args.sweep, &combos));
            let o = &wf.out_of_sample;
            let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2}"));
            println!(
                "out-of-sample      {first} to {last}, the test windows joined: return {:+.2} %, max drawdown {:.2} %, Sharpe {}, round trips {}",
                o.total_return_pct,
                o.max_drawdown_pct,
                opt(o.sharpe),
                wf.trades
            );
            let b = &ranked.summaries[ranked.best()];
            println!(
                "in-sample best     the same days in hindsight: return {:+.2} %, max drawdown {:.2} %, Sharpe {}, round trips {}: {}",
                b.total_return_pct,
                b.max_drawdown_pct,
                opt(b.sharpe),
                b.trades,
                ranked.describe(ranked.best())
            );
        }
    }
    println!("report             {}", args.out.display());
    if let Some(kb) = peak_rss_kb() {
        println!("peak memory        {kb} KiB");
    }
    Ok(())
}

fn check_config(flag: Option<PathBuf>) -> Result<(), Error> {
    let cfg = load_config(flag)?;
    let s = &cfg.settings;
    let b = &cfg.bots;
    let on = |e: bool| if e { "on" } else { "off" };
    println!("configuration in {} is valid", cfg.dir.display());
    println!(
        "loop every {} s; time zone {}; daily loss limit {} %; fail-closed {}",
        s.runner.loop_interval_seconds,
        s.system.timezone,
        s.risk.global_max_daily_loss_pct,
        on(s.safety.fail_closed)
    );
    println!("state {}; log {}", s.system.state_db_path.display(), s.system.log_path.display());
    match &s.backup.folder {
        Some(folder) => println!("daily backup to {}, the newest {} kept", folder.display(), s.backup.keep),
        None => println!("daily backup off (backup.folder)"),
    }
    let k = &b.exitbot.kill_conditions;
    println!(
        "exitbot {}: api_failure_halt {}, data_stale_halt {}, max_daily_loss_halt {}, anomaly_halt {}; cool-off {} min",
        on(b.exitbot.enabled),
        on(k.api_failure_halt),
        on(k.data_stale_halt),
        on(k.max_daily_loss_halt),
        on(k.anomaly_halt),
        b.exitbot.cooloff_minutes
    );
    for m in &b.momentum_bots {
        println!("momentum bot {} ({}) {}: signal {}", m.bot_id, m.ticker, on(m.enabled), m.signal.mode);
    }
    if let Some(o) = &b.optionsbot {
        println!("options bot {} {}: {}", o.bot_id, on(o.enabled), o.tickers.join(", "));
    }
    if let Some(c) = &b.cryptobot {
        println!("crypto bot {} {}: {}; signal {}", c.bot_id, on(c.enabled), c.pairs.join(", "), c.signal.mode);
    }
    for w in cfg.warnings() {
        println!("warning: {w}");
    }
    Ok(())
}

/// `trades`: the ledger's round trips (`core::round_trip`), read without the network, beside a
/// running daemon or not.
fn show_trades(
    flag: Option<PathBuf>,
    from: Option<jiff::civil::Date>,
    to: Option<jiff::civil::Date>,
    csv: bool,
) -> Result<(), Error> {
    use trading_hydra::core::round_trip;
    let cfg = load_config(flag)?;
    let db = cfg.settings.system.state_db_path.clone();
    let state = read_ledger(&db)?;
    let orders = state.all_orders().map_err(|e| unopenable(&db, e))?;
    let fills = state.fills().map_err(|e| unopenable(&db, e))?;
    // Alpaca charges fees as account activities, not on fills: the live trips carry none.
    let trips: Vec<round_trip::RoundTrip> = round_trip::fold(orders.iter().map(|(o, _)| o), &fills, &|_, _, _| None)
        .into_iter()
        .filter(|t| clock::Dates::new(from, to).contains(t.entry_at))
        .collect();
    if csv {
        print!("{}", round_trip::csv(&trips));
        return Ok(());
    }
    if trips.is_empty() {
        println!("no round trips in the ledger{} (fills are kept since schema 17)", span_words(from, to));
        return Ok(());
    }
    print!("{}", round_trip::table(&trips, &cfg.timezone));
    Ok(())
}

/// The ledger at `db`, read-only, for a report of it (`trades`, `replay`): beside a running
/// daemon or not, but not one whose journal was deleted under its daemon.
fn read_ledger(db: &std::path::Path) -> Result<State, Error> {
    if let Some(detail) = journal_lost_under_a_daemon(db) {
        return Err(Error::Other(keep_out(db, &detail)));
    }
    State::open_read_only(db).map_err(|e| unopenable(db, e))
}

/// `replay DATE`: the live ledger's day against the backtest of it (`research::replay_day`).
fn replay(
    flag: Option<PathBuf>,
    date: jiff::civil::Date,
    data: Option<PathBuf>,
    out: Option<PathBuf>,
) -> Result<(), Error> {
    use trading_hydra::research::replay_day::{self, Market};
    let cfg = load_config(flag.clone())?;
    let db = cfg.settings.system.state_db_path.clone();
    let state = read_ledger(&db)?;
    let live = replay_day::live_day(&state, date).map_err(Error::Other)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("replay-{date}")));
    // The day and the ten before it: the bots' indicators read bars from before the open.
    let history = date.checked_sub(jiff::Span::new().days(10)).map_err(|e| Error::Other(e.to_string()))?;
    let files = |path: &std::path::Path| -> Result<Market, Error> {
        let checked = bar_files::check(path, clock::Dates::new(Some(history), Some(date))).map_err(Error::Usage)?;
        Ok(Market::Bars(backtest::Bars::checked(checked)))
    };
    let market = match (&data, SimBroker::stored_market(&state).map_err(|e| unopenable(&db, e))?) {
        (Some(path), _) => files(path)?,
        (None, Some((seed, origin))) => Market::Simulated { seed, origin },
        (None, None) if Credentials::from_env().is_ok() => {
            let bars = out.join("bars");
            download(cli::DownloadArgs {
                config: flag,
                symbols: backtest::traded_symbols(&cfg).into_iter().collect(),
                from: history,
                to: date,
                timeframe: "1Min".into(),
                out: bars.clone(),
            })?;
            files(&bars)?
        }
        (None, None) => {
            return Err(Error::Usage(format!(
                "replay {date} needs that day's bars: give --data DIR (`trading-hydra download` writes them), or set ALPACA_KEY and ALPACA_SECRET to have them downloaded"
            )));
        }
    };
    drop(state);
    let replayed = replay_day::replay(cfg, live, market).map_err(Error::Other)?;
    print!("{}", replayed.text());
    replayed.write(&out).map_err(Error::Other)?;
    println!("report             {}", out.display());
    Ok(())
}

fn span_words(from: Option<jiff::civil::Date>, to: Option<jiff::civil::Date>) -> String {
    match (from, to) {
        (None, None) => String::new(),
        (Some(f), None) => format!(" entered from {f}"),
        (None, Some(t)) => format!(" entered up to {t}"),
        (Some(f), Some(t)) => format!(" entered from {f} to {t}"),
    }
}

fn show_status(flag: Option<PathBuf>, json: bool) -> Result<(), Error> {
    let cfg = load_config(flag)?;
    let db = cfg.settings.system.state_db_path.clone();
    let halt_file = trading_hydra::core::halt_file::read(&db, Timestamp::now());
    if let Some(detail) = journal_lost_under_a_daemon(&db) {
        let halted =
            halt_file.as_ref().map_or(String::new(), |h| format!("; the halt file holds a manual halt ({})", h.detail));
        return Err(Error::Other(format!(
            "{}{halted}. Its entries are halted; restart it (systemctl restart trading-hydra) to read its ledger again",
            keep_out(&db, &detail)
        )));
    }
    let state = State::open_read_only(&db).map_err(|e| unopenable(&db, e))?;
    let mut report = status::gather(&state, Timestamp::now(), cfg.settings.runner.loop_interval_seconds)
        .map_err(|e| unopenable(&db, e))?;
    report.mark_orphans(&cfg);
    let file = trading_hydra::core::halt_file::path(&db).display().to_string();
    if json {
        let mut v = report.to_json(&cfg.timezone);
        v["halt_file"] = match &halt_file {
            Some(h) => serde_json::json!({"path": file, "detail": h.detail, "since": clock::db_ts(h.since)}),
            None => serde_json::Value::Null,
        };
        println!("{v}");
    } else {
        print!("{}", report.to_text(&cfg.timezone));
        if let Some(h) = &halt_file {
            println!(
                "halt file  {file}: manual ({}) since {}; it halts the daemon's entries until `trading-hydra resume` removes it",
                h.detail,
                clock::person_ts(h.since, &cfg.timezone)
            );
        }
    }
    Ok(())
}

/// What a running daemon said when it found its ledger's journal deleted under it
/// (`core::state::mark_journal_lost`), while it still runs: then no other process may open the
/// ledger. A mark with no daemon holding the ledger is stale and removed.
fn journal_lost_under_a_daemon(db: &std::path::Path) -> Option<String> {
    let detail = trading_hydra::core::state::journal_lost(db)?;
    match LedgerLock::acquire(db) {
        Ok(lock) => {
            let _ = trading_hydra::core::state::clear_journal_lost(db);
            drop(lock);
            None
        }
        Err(_) => Some(detail),
    }
}

/// The words for a command refused while a daemon runs on a ledger whose journal was deleted.
fn keep_out(db: &std::path::Path, detail: &str) -> String {
    format!(
        "the daemon running on {} found its ledger's journal deleted under it and keeps every other process out of \
         the ledger until it restarts ({}): {detail}",
        db.display(),
        trading_hydra::core::state::journal_lost_mark(db).display()
    )
}

/// A ledger `status` or `resume` cannot open, in the operator's words: with its journal gone
/// while its index is there, a daemon's journal was most likely deleted under it.
fn unopenable(db: &std::path::Path, e: trading_hydra::core::state::StateError) -> Error {
    use trading_hydra::core::state::StateError;
    if matches!(e, StateError::Missing { .. }) {
        return e.into();
    }
    let beside = |suffix: &str| std::fs::metadata(trading_hydra::core::state::with_suffix(db, suffix)).ok();
    let journal_lost = beside("-shm").is_some() && beside("-wal").is_none_or(|m| m.len() == 0);
    if !journal_lost {
        return e.into();
    }
    Error::Other(format!(
        "{e}. Its journal ({}-wal) is gone or empty while its shared index is there: it was most likely deleted \
         under a running daemon, which then halts its entries by itself (`ledger_files_changed` in its log) and \
         keeps what it holds. Restart the daemon (systemctl restart trading-hydra) so it opens the ledger with a \
         journal of its own, then try again; `trading-hydra halt` still reaches it meanwhile (through its halt file)",
        db.display()
    ))
}

fn set_manual_halt(flag: Option<PathBuf>, reason: &str) -> Result<(), Error> {
    use trading_hydra::core::state::StateError;
    let cfg = load_config(flag)?;
    let db = cfg.settings.system.state_db_path.clone();
    // A daemon whose journal was deleted under it keeps others out of its ledger: the halt goes
    // through its file. Otherwise the daemon's existing ledger or nothing: a halt written to a
    // new one would halt nothing, and neither would one beside a file no daemon can run on.
    let opened = match journal_lost_under_a_daemon(&db) {
        Some(detail) => Err(keep_out(&db, &detail)),
        None => match State::open_existing(&db) {
            Err(
                e @ (StateError::Missing { .. } | StateError::NotADatabase { .. } | StateError::ForeignDatabase { .. }),
            ) => {
                return Err(e.into());
            }
            other => other.map_err(|e| e.to_string()),
        },
    };
    init_logging(&cfg, LevelFilter::Error)?;
    notify::start(cfg.settings.notify.format);
    let stored = opened.and_then(|state| halt_in_ledger(&state, reason).map_err(|e| e.to_string()));
    // A one-shot command: give the webhook its time, bounded, before the process ends.
    notify::stop(CLI_NOTIFY_LIMIT);
    logging::flush();
    match stored {
        Ok(true) => {
            println!(
                "halted (manual): no new entries from the daemon's next iteration on; exits of open positions go on."
            )
        }
        Ok(false) => println!("already halted (manual); the reason is now {reason:?}."),
        // The ledger cannot take it (its journal deleted, the disk full or read-only): the brake
        // still works, through the halt file beside it.
        Err(why) => {
            let file = trading_hydra::core::halt_file::path(&db);
            match trading_hydra::core::halt_file::write(&db, reason, Timestamp::now()) {
                Ok(_) => println!(
                    "the ledger cannot take the halt ({why}); it was delivered through {} instead: the running daemon \
                     halts entries from its next iteration (its log says `halt` with `from_file`), and so does every \
                     start while the file is there; exits of open positions go on.",
                    file.display()
                ),
                Err(io) => {
                    return Err(Error::Other(format!(
                        "the ledger cannot take the halt ({why}), and {} cannot be written either ({io}): nothing was \
                         halted; stop the daemon (systemctl stop trading-hydra) to stop its trading",
                        file.display()
                    )));
                }
            }
        }
    }
    println!("lift it with `trading-hydra resume`.");
    Ok(())
}

/// Writes the manual halt into the ledger: `true` when it is new.
fn halt_in_ledger(state: &State, reason: &str) -> Result<bool, trading_hydra::core::state::StateError> {
    // The ledger's own clock: a simulated account's halt starts at its simulated time.
    let since = ledger_account::now(state, Timestamp::now())?.now;
    let halt = Halt { reason: HaltReason::Manual, detail: reason.to_string(), since, until: None };
    let change = halt_store::set(state, &halt)?;
    let new = change.is_some();
    notify::announce(change);
    Ok(new)
}

/// `reload`: the files validated here first (an error exits 2 naming the file and the key, and
/// the daemon is not asked), then the request written to the daemon's ledger; the daemon reads and
/// validates the files again between two iterations and writes back what it did, which is
/// printed: exit 0 applied, 2 refused (the files changed meanwhile, or a change needs a restart),
/// 1 no daemon running or no answer in time.
fn reload(flag: Option<PathBuf>) -> Result<(), Error> {
    let cfg = load_config(flag)?;
    let db = cfg.settings.system.state_db_path.clone();
    if let Some(detail) = journal_lost_under_a_daemon(&db) {
        return Err(Error::Other(format!("{}. Restart it instead of reloading", keep_out(&db, &detail))));
    }
    let state = State::open_existing(&db)?;
    // A daemon holds the ledger's lock; if this command can take it, none runs. (Held for an
    // instant: a `run` starting in that instant is refused and restarted by systemd.)
    match LedgerLock::acquire(&db) {
        Ok(lock) => {
            drop(lock);
            return Err(Error::Other(format!(
                "no daemon is running on {} (its lock is free): nothing to reload; the next `run` reads the files anyway",
                db.display()
            )));
        }
        Err(trading_hydra::core::state::StateError::InUse { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mine = std::path::absolute(&cfg.dir).unwrap_or_else(|_| cfg.dir.clone()).display().to_string();
    if let Some(theirs) = state.kv_get(CONFIG_DIR_KEY)?
        && theirs != mine
    {
        return Err(Error::Usage(format!(
            "the running daemon reads its configuration from {theirs}, not {mine}: run `trading-hydra reload --config {theirs}`"
        )));
    }
    let wall = Timestamp::now();
    let request = format!("{}-{}", wall.as_nanosecond(), std::process::id());
    state.kv_set(RELOAD_REQUEST_KEY, &request, ledger_account::now(&state, wall)?.now)?;
    println!("configuration in {mine} is valid; asked the daemon to reload it");
    // The daemon looks every second while it sleeps, and before each iteration; an iteration
    // itself may take most of an interval (a broker retrying).
    let interval = cfg.settings.runner.loop_interval_seconds;
    let limit = Duration::from_secs(interval.saturating_add(10).clamp(15, 85));
    let started = Instant::now();
    while started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
        let Some(text) = state.kv_get(RELOAD_RESULT_KEY)? else { continue };
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if answer["request"] != request.as_str() {
            continue;
        }
        let detail = answer["detail"].as_str().unwrap_or("").to_string();
        if answer["applied"] != true {
            return Err(Error::Usage(format!("the daemon refused the reload: {detail}")));
        }
        println!("reloaded: {detail}");
        for change in answer["changes"].as_array().into_iter().flatten() {
            println!("  {}", change.as_str().unwrap_or(""));
        }
        return Ok(());
    }
    Err(Error::Other(format!(
        "the daemon has not answered within {} s; it applies the request before its next iteration (see `config_reloaded` or `reload_refused` in its log)",
        limit.as_secs()
    )))
}

/// `sim-reset`: the simulated account starts over. Its ledger is set aside — closed (which
/// folds its `-wal` into the file) and renamed `<ledger>.sim-<UTC time>`, kept whole — so the next
/// `run` starts a new ledger: `run --sim` a new simulated account, or a broker's `run` its own.
/// Refused (exit 2, nothing changed) for a ledger that is not the simulated account's; exit 1
/// while a daemon holds it, or where there is none.
fn sim_reset(flag: Option<PathBuf>) -> Result<(), Error> {
    let cfg = load_config(flag)?;
    let db = cfg.settings.system.state_db_path.clone();
    let state = State::open_existing(&db)?;
    // No daemon may be writing it while it is moved (exit 1 names the one that holds it).
    let _lock = LedgerLock::acquire(&db)?;
    let absolute = std::path::absolute(&db).unwrap_or_else(|_| db.clone());
    match ledger_account::recorded(&state)? {
        Some(LedgerAccount::Simulated) => {}
        Some(other) => {
            return Err(Error::Usage(format!(
                "the ledger {} belongs to {other}, not the simulated account: sim-reset sets aside only a simulated \
                 account's ledger; nothing was changed",
                absolute.display()
            )));
        }
        None => {
            return Err(Error::Usage(format!(
                "the ledger {} belongs to no account yet (no run has claimed it): nothing to reset; nothing was changed",
                absolute.display()
            )));
        }
    }
    drop(state);
    let stamp = Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut name = absolute.clone().into_os_string();
    name.push(format!(".sim-{stamp}"));
    let aside = PathBuf::from(name);
    if aside.exists() {
        return Err(Error::Other(format!("{} exists already: try again in a second", aside.display())));
    }
    std::fs::rename(&absolute, &aside)
        .map_err(|e| Error::Other(format!("cannot rename {} to {}: {e}", absolute.display(), aside.display())))?;
    // Closing the last connection folded the `-wal` into the file and removed it; a `-wal` or
    // `-shm` still there (a crashed reader's) goes with the file it belongs to.
    for suffix in ["-wal", "-shm"] {
        let from = trading_hydra::core::state::with_suffix(&absolute, suffix);
        let to = trading_hydra::core::state::with_suffix(&aside, suffix);
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|e| Error::Other(format!("cannot move {from:?} aside: {e}")))?;
        }
    }
    println!(
        "set the simulated account's ledger aside as {} (kept whole; rename it back to return to it)",
        aside.display()
    );
    println!("the next `run --sim` starts a new simulated account; a `run` against Alpaca starts its own ledger");
    Ok(())
}

/// `recover`: the orders of this daemon's bots that the broker holds and the ledger lost
/// (`services::lost_orders`: a restored backup, a lost journal), listed with what the broker
/// holds; with `--confirm`, booked under the bots their ids name and followed once, so their
/// positions are managed again and the daemon's `ledger_behind` halt lifts. An operator's act,
/// never the daemon's. `--confirm` takes the ledger's lock (exit 1 while a daemon runs on it).
/// Refused (exit 2) for a simulated ledger (its broker is kept in the ledger itself: they cannot
/// drift apart) and for a ledger that is not this account's.
fn recover(flag: Option<PathBuf>, confirm: bool) -> Result<(), Error> {
    use trading_hydra::services::lost_orders;
    use trading_hydra::services::order_lifecycle::Orders;
    let cfg = load_config(flag)?;
    let db = cfg.settings.system.state_db_path.clone();
    let _lock = if confirm { Some(LedgerLock::acquire(&db)?) } else { None };
    if let Some(detail) = journal_lost_under_a_daemon(&db) {
        return Err(Error::Other(format!("{}. Restart it, then recover", keep_out(&db, &detail))));
    }
    let mut state = State::open_existing(&db)?;
    let ledger = ledger_account::recorded(&state)?;
    if ledger.as_ref().is_some_and(LedgerAccount::is_simulated) {
        return Err(Error::Usage(format!(
            "the ledger {} is the simulated account's, whose broker is kept in the ledger itself: nothing can be lost \
             between them, so there is nothing to recover",
            db.display()
        )));
    }
    let credentials = Credentials::from_env().map_err(Error::Usage)?;
    let paper = std::env::var("ALPACA_PAPER").ok();
    let mode = config::trading_mode(false, paper.as_deref(), cfg.settings.alpaca.live_trading_confirmed)
        .map_err(Error::Usage)?;
    let (mut client, account) = alpaca_client(&cfg, mode, credentials)?;
    let account = match account {
        Some(a) => a,
        None => client.account().map_err(|e| Error::Other(e.to_string()))?,
    };
    match &ledger {
        Some(LedgerAccount::Broker { id, .. }) if *id == account.id => {}
        Some(theirs) => {
            let running = format!("the Alpaca {} account of ALPACA_KEY", mode.as_str());
            return Err(Error::Usage(ledger_account::refusal(&db, theirs, &running)));
        }
        None => {
            return Err(Error::Usage(format!(
                "the ledger {} names no account yet: run the daemon on it once (it claims the account, and halts \
                 entries while orders are lost), then recover",
                db.display()
            )));
        }
    }
    let broker_error = |e: BrokerError| Error::Other(e.to_string());
    let held: std::collections::BTreeMap<String, trading_hydra::core::decimal::Dec> =
        client.positions().map_err(broker_error)?.into_iter().map(|p| (p.symbol, p.qty)).collect();
    let lost = lost_orders::find(&state, &mut client, &held, &|_| false).map_err(|e| Error::Other(e.to_string()))?;
    if lost.is_empty() {
        println!("the broker holds no order of this daemon's bots that the ledger does not know: nothing to recover");
        return Ok(());
    }
    println!(
        "the broker holds {} order(s) of this daemon's bots that the ledger {} does not know:",
        lost.len(),
        db.display()
    );
    for l in &lost {
        println!("  {} {}", l.id.bot, lost_orders::one_line(l));
    }
    for s in lost_orders::symbols(&lost) {
        let qty = held.get(s).map_or("nothing".to_string(), |q| q.to_string());
        println!("  the broker holds {s}: {qty}");
    }
    if !confirm {
        println!(
            "to book them under their bots (their positions then managed by the bots' rules, their resting stops kept), \
             stop the daemon and run `trading-hydra recover --confirm`; or close them at the broker"
        );
        return Ok(());
    }
    let now = Timestamp::now();
    let booked = lost_orders::book(&mut state, &cfg, &lost, now).map_err(|e| Error::Other(e.to_string()))?;
    // Followed once, as the daemon follows its orders: the fills become the bots' positions.
    let mut orders = Orders::default();
    let followed = orders.sync_orders(&mut state, &mut client, &cfg, now);
    event!(Warn, "recovered", orders = booked.len(), client_order_ids = booked.join(","));
    logging::flush();
    println!("booked {} order(s) under their bots", booked.len());
    if let Err(e) = followed {
        println!("their fills are not all booked yet ({e}): the daemon books them when it follows its orders");
    }
    for p in state.owned_positions()? {
        println!("  the ledger owns {} {} for {}", p.symbol, p.qty, p.bot);
    }
    println!("start the daemon: its `ledger_behind` halt lifts at its first check once nothing is lost");
    Ok(())
}

/// `backup DEST`: a consistent copy of the ledger, beside a running daemon or not
/// (`State::backup_to`: SQLite's online backup, checked, one self-contained file), and what it
/// holds. The ledger is opened read-only: this process never writes it, and a daemon's locks and
/// journal are untouched.
fn backup(flag: Option<PathBuf>, dest: &std::path::Path) -> Result<(), Error> {
    let cfg = load_config(flag)?;
    let db = &cfg.settings.system.state_db_path;
    // A copy of a ledger whose journal was deleted under its daemon would miss what that daemon
    // holds: it is taken after the restart.
    if let Some(detail) = journal_lost_under_a_daemon(db) {
        return Err(Error::Other(format!("{}. Restart it, then back up", keep_out(db, &detail))));
    }
    let state = State::open_read_only(db)?;
    let path = trading_hydra::core::state::backup_path(dest, Timestamp::now());
    let s = state.backup_to(&path)?;
    println!("backed up {} to {}", cfg.settings.system.state_db_path.display(), s.path.display());
    println!(
        "integrity_check ok; {} bytes; {} orders (newest {}), {} owned positions, {} active halts",
        s.bytes,
        s.orders,
        s.newest_order.as_deref().unwrap_or("none"),
        s.owned_positions,
        s.active_halts
    );
    println!(
        "to restore: stop the daemon, move the ledger and its -wal and -shm aside, copy this file to {}, start the \
         daemon (it halts entries if the broker holds orders the copy does not know: see `trading-hydra recover`)",
        cfg.settings.system.state_db_path.display()
    );
    Ok(())
}

fn resume(flag: Option<PathBuf>) -> Result<(), Error> {
    let cfg = load_config(flag)?;
    let db = cfg.settings.system.state_db_path.clone();
    // A halt delivered through its file (`halt` when the ledger could not take it) goes first: it
    // needs no ledger.
    let file = trading_hydra::core::halt_file::path(&db);
    match trading_hydra::core::halt_file::remove(&db) {
        Ok(true) => println!("lifted: manual (the halt file {})", file.display()),
        Ok(false) => {}
        Err(e) => {
            return Err(Error::Other(format!("cannot remove the halt file {}: {e}; it still halts", file.display())));
        }
    }
    if let Some(detail) = journal_lost_under_a_daemon(&db) {
        return Err(Error::Other(format!(
            "{}. Restart the daemon (systemctl restart trading-hydra), then run resume again for the halts in the ledger",
            keep_out(&db, &detail)
        )));
    }
    let state = State::open_existing(&db).map_err(|e| unopenable(&db, e))?;
    init_logging(&cfg, LevelFilter::Error)?;
    // The ledger's own clock: a simulated account's daily-loss halt ends at its simulated midnight.
    let now = ledger_account::now(&state, Timestamp::now())?.now;
    let active = state.active_halts()?;
    if active.is_empty() {
        println!("no halt is active.");
    }
    notify::start(cfg.settings.notify.format);
    for h in &active {
        match halt::resume_allowed(h, now, &cfg.timezone) {
            Ok(()) => {
                notify::announce(halt_store::clear(&state, h.reason, "operator", now)?);
                println!("lifted: {}", h.reason);
            }
            Err(why) => println!("still halted: {why}"),
        }
    }
    notify::stop(CLI_NOTIFY_LIMIT);
    logging::flush();
    Ok(())
}
