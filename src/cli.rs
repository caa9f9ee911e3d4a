//! The command line: subcommands and flags, parsed by hand.
//!
//! Owns: the usage text and turning `argv` into a `Command`. Never: reads files or the
//! environment (that is each command's job), so every parse is a pure function tested with plain
//! strings.

use std::fmt;
use std::path::PathBuf;

pub const USAGE_LINE: &str = "usage: trading-hydra [run|check-config|status|trades|halt|resume|reload|recover|backup|sim-reset|download|backtest|replay|help] [--config DIR] [options]; see `trading-hydra help COMMAND`";

pub const HELP: &str = "\
trading-hydra — a fail-closed trading daemon for an Alpaca account

Usage: trading-hydra [COMMAND] [OPTIONS]

Commands:
  run            run the daemon (the default command); one per state database
  check-config   load and validate settings.yaml and bots.yaml, print a summary
  status         show the state database (no network): halts, day-start equity, last loop
  trades         the ledger's round trips (no network): each trade's entry and exit fills,
                 the rule that closed it, its P&L and slippage; --csv as backtest's trades.csv
  halt           stop new entries until `resume` (exits of open positions go on)
  resume         lift a manual halt, and any other halt whose time is up
  reload         validate settings.yaml and bots.yaml, then have the running daemon
                 take them between two iterations (exit 2 and nothing changes if invalid)
                 (status, halt and resume work on the database of a daemon that has run:
                 run them where it runs, or with its --config)
  recover        list the orders of this daemon's bots that the broker holds and the ledger
                 lost (a restored backup, a lost journal); with --confirm (the daemon
                 stopped), book them under their bots so their positions are managed again
  backup DEST    a consistent copy of the ledger beside a running daemon, checked, to the
                 file DEST (or into the folder DEST, named by the time)
  sim-reset      start the simulated account over: its ledger is set aside (renamed,
                 kept), and the next `run --sim` (or a broker's `run`) starts a new one
  download       fetch historical bars from Alpaca into one CSV per symbol (resumable)
  backtest       replay bar files (--data) or a seeded synthetic market (--synthetic DAYS)
                 through the same bots and the simulated broker
  replay DATE    the live ledger's trading day against the backtest of it: the same bots
                 from the day's start at the live loop's times; trades in both, only live,
                 only in the backtest, and where the P&L gap came from
  help [COMMAND] this page, or one command's (so does `trading-hydra COMMAND --help`)

Options:
  --config DIR     folder holding settings.yaml and bots.yaml
                   (default: $TRADING_HYDRA_CONFIG, else ./config)
  --once           run: one iteration, then exit
  --iterations N   run: N iterations, then exit
  --sim            run: the embedded simulated broker instead of Alpaca
  --seed N         run --sim, backtest --synthetic: fix the simulated market (default 42)
  --speed X        run --sim: simulated clock speed (times real time)
  --json           status: machine-readable output
  --csv            trades: the CSV of backtest's trades.csv instead of a table
  --reason TEXT    halt: why (required; shown by status)
  --confirm        recover: book what it lists (the daemon must be stopped)
  --symbols LIST   download: comma-separated, e.g. SPY,AAPL,BTC/USD
  --timeframe TF   download: bar size (default 1Min)
  --data PATH      backtest, replay: a bar file, or a folder of them (SPY.csv, BTC-USD.csv, ...)
  --synthetic DAYS backtest: instead of --data, the simulated market's seeded one-minute bars
                   of the configured symbols over DAYS weekdays ending on --to (default:
                   the last weekday before today); needs no keys and no network
  --from DATE      download, backtest, trades: first New York date (YYYY-MM-DD)
  --to DATE        download, backtest, trades: last New York date
  --out DIR        download: the bar folder (required); backtest: the report (default ./backtest);
                   replay: its files (default ./replay-DATE)
  --sweep KEY=V1,V2,...
                   backtest: run every combination of these values (repeatable), e.g.
                   momentum_bots.*.exits.stop_loss_pct=0.5,0.75,1; ranks them, sweep.csv
  --rank METRIC    backtest --sweep: return (default), drawdown, sharpe or trades
  --jobs N         backtest --sweep: threads (default: the machine's cores)
  --walk-forward TRAIN:TEST
                   backtest --sweep: pick the best on TRAIN trading days, run it on the
                   next TEST days, window after window; the test windows joined
  -h, --help       print this help
  -V, --version    print the version

Exit codes: 0 success or clean shutdown (SIGINT/SIGTERM), 2 usage or configuration error,
1 any other failure.
";

/// Each command's own usage (`trading-hydra COMMAND --help`, `trading-hydra help COMMAND`).
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "run",
        "Usage: trading-hydra run [--config DIR] [--once | --iterations N] [--sim [--seed N] [--speed X]]\n\n\
         The daemon (the default command): one iteration every runner.loop_interval_seconds until SIGINT or\n\
         SIGTERM. Needs ALPACA_KEY and ALPACA_SECRET, or --sim (the embedded simulated broker, its market fixed\n\
         by --seed, its clock running --speed times real time). One daemon per state database.\n",
    ),
    (
        "check-config",
        "Usage: trading-hydra check-config [--config DIR]\n\nLoad and validate settings.yaml and bots.yaml, print a summary.\n",
    ),
    (
        "status",
        "Usage: trading-hydra status [--config DIR] [--json]\n\n\
         What the state database says (no network, no keys; beside a running daemon): halts, day-start\n\
         equity, budgets, positions by bot, why each bot is not entering, the last iteration.\n",
    ),
    (
        "trades",
        "Usage: trading-hydra trades [--config DIR] [--from DATE] [--to DATE] [--csv]\n\n\
         The ledger's round trips (no network, no keys; beside a running daemon), those entered on the New York\n\
         dates --from to --to: bot, symbol (an option spread's legs), entry and exit time and fill price, the\n\
         rule that closed it, quantity, P&L and slippage. Fills booked before this build (schema 17) are not\n\
         in it. --csv prints the columns of a backtest's trades.csv.\n",
    ),
    (
        "halt",
        "Usage: trading-hydra halt --reason TEXT [--config DIR]\n\n\
         Stop new entries until `resume` (exits of open positions go on). When the ledger cannot take it,\n\
         the halt goes through the halt file beside it.\n",
    ),
    (
        "resume",
        "Usage: trading-hydra resume [--config DIR]\n\nLift a manual halt, and any other halt whose time is up.\n",
    ),
    (
        "reload",
        "Usage: trading-hydra reload [--config DIR]\n\n\
         Validate settings.yaml and bots.yaml, then have the running daemon take them between two\n\
         iterations (exit 2, nothing changed, when they are invalid or need a restart).\n",
    ),
    (
        "recover",
        "Usage: trading-hydra recover [--confirm] [--config DIR]\n\n\
         List the orders of this daemon's bots that the broker holds and the ledger lost (a restored backup,\n\
         a lost journal). With --confirm (the daemon stopped), book them under their bots. Needs the keys.\n",
    ),
    (
        "backup",
        "Usage: trading-hydra backup DEST [--config DIR]\n\n\
         A consistent, checked copy of the ledger, beside a running daemon or not, to the file DEST (or into\n\
         the folder DEST, named by the time). Never overwrites a file.\n",
    ),
    (
        "sim-reset",
        "Usage: trading-hydra sim-reset [--config DIR]\n\n\
         Start the simulated account over: its ledger is set aside (renamed, kept whole).\n",
    ),
    (
        "download",
        "Usage: trading-hydra download --symbols LIST --from DATE --to DATE [--timeframe TF] --out DIR [--config DIR]\n\n\
         Fetch historical bars from Alpaca into one CSV per symbol (resumable). Needs the keys.\n",
    ),
    (
        "backtest",
        "Usage: trading-hydra backtest (--data PATH | --synthetic DAYS [--seed N]) [--from DATE] [--to DATE]\n\
         \x20                         [--sweep KEY=V1,V2,... [--rank METRIC] [--jobs N] [--walk-forward TRAIN:TEST]]\n\
         \x20                         [--config DIR] [--out DIR]\n\n\
         Replay bars through the same bots and the simulated broker; write the report to --out.\n",
    ),
    (
        "replay",
        "Usage: trading-hydra replay DATE [--data PATH] [--out DIR] [--config DIR]\n\n\
         The live ledger's New York trading day DATE (read only) against the backtest of it: the same bots from the\n\
         day's start equity, at the live loop's own times, on the day's bars (--data; without it, downloaded with\n\
         the keys, or a simulated ledger's own market). Prints and writes to --out (default ./replay-DATE) the trades\n\
         in both with their price and time differences, those only live, those only in the backtest, the day's P&L\n\
         both ways and where the gap came from.\n",
    ),
    ("help", "Usage: trading-hydra help [COMMAND]\n\nThis page, or one command's.\n"),
];

/// The usage of `command`, if it is one.
pub fn command_help(command: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|(name, _)| *name == command).map(|(_, text)| *text)
}

/// The command closest to a mistyped one (two edits at most), for the error.
fn nearest(word: &str) -> Option<&'static str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let here = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(here + 1);
                prev = here;
            }
        }
        row[b.len()]
    };
    COMMANDS.iter().map(|(name, _)| (distance(word, name), *name)).filter(|(d, _)| *d <= 2).min().map(|(_, n)| n)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(RunArgs),
    CheckConfig {
        config: Option<PathBuf>,
    },
    Status {
        config: Option<PathBuf>,
        json: bool,
    },
    Trades {
        config: Option<PathBuf>,
        from: Option<jiff::civil::Date>,
        to: Option<jiff::civil::Date>,
        csv: bool,
    },
    Halt {
        config: Option<PathBuf>,
        reason: String,
    },
    Resume {
        config: Option<PathBuf>,
    },
    Reload {
        config: Option<PathBuf>,
    },
    SimReset {
        config: Option<PathBuf>,
    },
    Recover {
        config: Option<PathBuf>,
        confirm: bool,
    },
    Backup {
        config: Option<PathBuf>,
        dest: PathBuf,
    },
    Backtest(BacktestArgs),
    Replay {
        config: Option<PathBuf>,
        date: jiff::civil::Date,
        data: Option<PathBuf>,
        out: Option<PathBuf>,
    },
    Download(DownloadArgs),
    /// The whole page (`None`), or one command's usage.
    Help(Option<&'static str>),
    Version,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunArgs {
    pub config: Option<PathBuf>,
    /// `None`: run until a signal.
    pub iterations: Option<u64>,
    pub sim: bool,
    pub seed: Option<u64>,
    pub speed: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BacktestArgs {
    pub config: Option<PathBuf>,
    pub source: BarSource,
    pub from: Option<jiff::civil::Date>,
    pub to: Option<jiff::civil::Date>,
    pub out: PathBuf,
    /// `--sweep`: the axes of a parameter grid (none: one plain backtest).
    pub sweep: Vec<crate::research::sweep::Axis>,
    pub rank: crate::research::sweep::Rank,
    /// `--jobs`; `None`: the machine's cores.
    pub jobs: Option<usize>,
    /// `--walk-forward TRAIN:TEST`, in trading days.
    pub walk_forward: Option<(usize, usize)>,
}

/// Where a backtest's bars come from.
#[derive(Debug, Clone, PartialEq)]
pub enum BarSource {
    /// `--data PATH`: recorded bar files.
    Files(PathBuf),
    /// `--synthetic DAYS [--seed N]`: the simulated market's seeded paths over that many weekdays.
    Synthetic { days: u32, seed: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DownloadArgs {
    pub config: Option<PathBuf>,
    pub symbols: Vec<String>,
    pub from: jiff::civil::Date,
    pub to: jiff::civil::Date,
    pub timeframe: String,
    pub out: PathBuf,
}

/// A command line that does not parse; the message says which word is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{USAGE_LINE}", self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// An unknown command, with the nearest one when a command is a typo away.
fn unknown(command: &str) -> UsageError {
    match nearest(command) {
        Some(near) => usage(format!("unknown command {command:?}; did you mean `{near}`?")),
        None => usage(format!("unknown command {command:?}")),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let mut rest = args.iter().map(String::as_str).peekable();
    let (command, named) = match rest.peek() {
        Some(w) if !w.starts_with('-') => {
            let w = *w;
            rest.next();
            (w, true)
        }
        _ => ("run", false),
    };
    if command == "help" {
        return match (rest.next(), rest.next()) {
            (None, _) => Ok(Command::Help(None)),
            (Some(c), None) => match command_help(c) {
                Some(text) => Ok(Command::Help(Some(text))),
                None => Err(unknown(c)),
            },
            (Some(_), Some(extra)) => Err(usage(format!("unexpected argument {extra:?}"))),
        };
    }
    if !matches!(
        command,
        "run"
            | "check-config"
            | "status"
            | "trades"
            | "halt"
            | "resume"
            | "reload"
            | "recover"
            | "backup"
            | "sim-reset"
            | "backtest"
            | "replay"
            | "download"
    ) {
        return Err(unknown(command));
    }

    let mut run = RunArgs::default();
    let mut json = false;
    let mut csv = false;
    let mut confirm = false;
    let mut dest: Option<PathBuf> = None;
    let mut date: Option<jiff::civil::Date> = None;
    let mut reason: Option<String> = None;
    let mut data: Option<PathBuf> = None;
    let mut synthetic: Option<u32> = None;
    let mut from: Option<jiff::civil::Date> = None;
    let mut to: Option<jiff::civil::Date> = None;
    let mut sweep: Vec<crate::research::sweep::Axis> = Vec::new();
    let mut rank: Option<crate::research::sweep::Rank> = None;
    let mut jobs: Option<usize> = None;
    let mut walk_forward: Option<(usize, usize)> = None;
    let mut out: Option<PathBuf> = None;
    let mut symbols: Option<Vec<String>> = None;
    let mut timeframe: Option<String> = None;
    while let Some(word) = rest.next() {
        // `--flag=value` and `--flag value` are both accepted.
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (word, None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => rest.next().map(str::to_string).ok_or_else(|| usage(format!("{name} needs a value"))),
            }
        };
        let only = |allowed: &[&str]| -> Result<(), UsageError> {
            if allowed.contains(&command) {
                Ok(())
            } else {
                Err(usage(format!("{flag} is not an option of `{command}`")))
            }
        };
        match flag {
            "-h" | "--help" if named => return Ok(Command::Help(command_help(command))),
            "-h" | "--help" => return Ok(Command::Help(None)),
            "-V" | "--version" => return Ok(Command::Version),
            "--config" => {
                let v = value("--config")?;
                if v.is_empty() {
                    return Err(usage("--config needs a folder"));
                }
                run.config = Some(PathBuf::from(v));
            }
            "--once" => {
                only(&["run"])?;
                set_iterations(&mut run, 1)?;
            }
            "--iterations" => {
                only(&["run"])?;
                let v = value("--iterations")?;
                let n: u64 = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| usage(format!("--iterations takes a whole number above 0, got {v:?}")))?;
                set_iterations(&mut run, n)?;
            }
            "--sim" => {
                only(&["run"])?;
                run.sim = true;
            }
            "--seed" => {
                only(&["run", "backtest"])?;
                let v = value("--seed")?;
                run.seed = Some(v.parse().map_err(|_| usage(format!("--seed takes a whole number, got {v:?}")))?);
            }
            "--speed" => {
                only(&["run"])?;
                let v = value("--speed")?;
                let x: f64 = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| usage(format!("--speed takes a number above 0, got {v:?}")))?;
                run.speed = Some(x);
            }
            "--json" => {
                only(&["status"])?;
                json = true;
            }
            "--csv" => {
                only(&["trades"])?;
                csv = true;
            }
            "--confirm" => {
                only(&["recover"])?;
                confirm = true;
            }
            "--reason" => {
                only(&["halt"])?;
                let v = value("--reason")?;
                if v.trim().is_empty() {
                    return Err(usage("--reason needs a text"));
                }
                reason = Some(v);
            }
            "--symbols" => {
                only(&["download"])?;
                let v = value("--symbols")?;
                let list: Vec<String> = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                if list.is_empty() {
                    return Err(usage("--symbols needs at least one symbol"));
                }
                symbols = Some(list);
            }
            "--timeframe" => {
                only(&["download"])?;
                let v = value("--timeframe")?;
                if !valid_timeframe(&v) {
                    return Err(usage(format!(
                        "--timeframe takes 1-59Min, 1-23Hour, 1Day, 1Week or 1/2/3/4/6/12Month, got {v:?}"
                    )));
                }
                timeframe = Some(v);
            }
            "--data" => {
                only(&["backtest", "replay"])?;
                data = Some(PathBuf::from(value("--data")?));
            }
            "--synthetic" => {
                only(&["backtest"])?;
                let v = value("--synthetic")?;
                synthetic =
                    Some(v.parse::<u32>().ok().filter(|n| (1..=2520).contains(n)).ok_or_else(|| {
                        usage(format!("--synthetic takes a number of days from 1 to 2520, got {v:?}"))
                    })?);
            }
            "--from" | "--to" => {
                only(&["backtest", "download", "trades"])?;
                let v = value(flag)?;
                let d: jiff::civil::Date =
                    v.parse().map_err(|_| usage(format!("{flag} takes a date YYYY-MM-DD, got {v:?}")))?;
                if flag == "--from" { from = Some(d) } else { to = Some(d) }
            }
            "--out" => {
                only(&["backtest", "download", "replay"])?;
                out = Some(PathBuf::from(value("--out")?));
            }
            "--sweep" => {
                only(&["backtest"])?;
                sweep.push(crate::research::sweep::Axis::parse(&value("--sweep")?).map_err(usage)?);
            }
            "--rank" => {
                only(&["backtest"])?;
                let v = value("--rank")?;
                rank = Some(
                    crate::research::sweep::Rank::parse(&v)
                        .ok_or_else(|| usage(format!("--rank takes return, drawdown, sharpe or trades, got {v:?}")))?,
                );
            }
            "--jobs" => {
                only(&["backtest"])?;
                let v = value("--jobs")?;
                jobs = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| usage(format!("--jobs takes a whole number from 1 to 1024, got {v:?}")))?,
                );
            }
            "--walk-forward" => {
                only(&["backtest"])?;
                let v = value("--walk-forward")?;
                let days = v
                    .split_once(':')
                    .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                    .filter(|(a, b)| *a > 0 && *b > 0);
                walk_forward = Some(days.ok_or_else(|| {
                    usage(format!("--walk-forward takes TRAIN_DAYS:TEST_DAYS, two whole numbers above 0, got {v:?}"))
                })?);
            }
            other if other.starts_with('-') => return Err(usage(format!("unknown option {other:?}"))),
            other if command == "backup" && dest.is_none() && inline.is_none() => dest = Some(PathBuf::from(other)),
            other if command == "replay" && date.is_none() && inline.is_none() => {
                date = Some(other.parse().map_err(|_| usage(format!("replay takes a date YYYY-MM-DD, got {other:?}")))?)
            }
            other => return Err(usage(format!("unexpected argument {other:?}"))),
        }
    }
    if command == "run" && (run.seed.is_some() || run.speed.is_some()) && !run.sim {
        return Err(usage("--seed and --speed go with --sim"));
    }

    let config = run.config.clone();
    Ok(match command {
        "run" => Command::Run(run),
        "check-config" => Command::CheckConfig { config },
        "reload" => Command::Reload { config },
        "sim-reset" => Command::SimReset { config },
        "recover" => Command::Recover { config, confirm },
        "backup" => Command::Backup {
            config,
            dest: dest.ok_or_else(|| usage("backup needs DEST, a file or a folder to copy the ledger to"))?,
        },
        "status" => Command::Status { config, json },
        "replay" => Command::Replay {
            config,
            date: date.ok_or_else(|| usage("replay needs DATE, the New York trading day (YYYY-MM-DD)"))?,
            data,
            out,
        },
        "trades" => {
            if let (Some(f), Some(t)) = (from, to)
                && f > t
            {
                return Err(usage("--from is after --to"));
            }
            Command::Trades { config, from, to, csv }
        }
        "halt" => Command::Halt { config, reason: reason.ok_or_else(|| usage("halt needs --reason TEXT"))? },
        "download" => {
            let (Some(symbols), Some(from), Some(to), Some(out)) = (symbols, from, to, out) else {
                return Err(usage("download needs --symbols LIST --from DATE --to DATE --out DIR"));
            };
            if from > to {
                return Err(usage("--from is after --to"));
            }
            Command::Download(DownloadArgs {
                config,
                symbols,
                from,
                to,
                timeframe: timeframe.unwrap_or_else(|| "1Min".into()),
                out,
            })
        }
        "backtest" => {
            let source = match (data, synthetic) {
                (Some(path), None) if run.seed.is_none() => BarSource::Files(path),
                (Some(_), None) => return Err(usage("--seed goes with --synthetic DAYS, not --data")),
                (None, Some(days)) if from.is_none() => {
                    BarSource::Synthetic { days, seed: run.seed.unwrap_or(DEFAULT_SYNTHETIC_SEED) }
                }
                (None, Some(_)) => {
                    return Err(usage(
                        "--synthetic DAYS ends on --to (default: the last weekday before today); drop --from",
                    ));
                }
                (Some(_), Some(_)) => return Err(usage("--data and --synthetic are two sources of bars; give one")),
                (None, None) => return Err(usage("backtest needs --data PATH or --synthetic DAYS")),
            };
            if from.zip(to).is_some_and(|(f, t)| f > t) {
                return Err(usage("--from is after --to"));
            }
            if sweep.is_empty() && (rank.is_some() || jobs.is_some() || walk_forward.is_some()) {
                return Err(usage("--rank, --jobs and --walk-forward go with --sweep KEY=V1,V2,..."));
            }
            Command::Backtest(BacktestArgs {
                config,
                source,
                from,
                to,
                out: out.unwrap_or_else(|| PathBuf::from("backtest")),
                sweep,
                rank: rank.unwrap_or(crate::research::sweep::Rank::Return),
                jobs,
                walk_forward,
            })
        }
        _ => Command::Resume { config },
    })
}

/// The `--seed` of `backtest --synthetic` when none is given (the same as `run --sim`'s).
pub const DEFAULT_SYNTHETIC_SEED: u64 = 42;

/// Alpaca's bar sizes: `[1-59]Min`, `[1-23]Hour`, `1Day`, `1Week`, `[1,2,3,4,6,12]Month`.
fn valid_timeframe(tf: &str) -> bool {
    let split = tf.find(|c: char| !c.is_ascii_digit()).unwrap_or(tf.len());
    let (n, unit) = tf.split_at(split);
    let Ok(n) = n.parse::<u32>() else { return false };
    match unit {
        "Min" => (1..=59).contains(&n),
        "Hour" => (1..=23).contains(&n),
        "Day" | "Week" => n == 1,
        "Month" => [1, 2, 3, 4, 6, 12].contains(&n),
        _ => false,
    }
}

fn set_iterations(run: &mut RunArgs, n: u64) -> Result<(), UsageError> {
    if run.iterations.is_some() {
        return Err(usage("--once and --iterations are given twice; use one"));
    }
    run.iterations = Some(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Command, UsageError> {
        let v: Vec<String> = args.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    #[test]
    fn run_is_the_default() {
        assert_eq!(p("").unwrap(), Command::Run(RunArgs::default()));
        assert_eq!(p("--once").unwrap(), Command::Run(RunArgs { iterations: Some(1), ..RunArgs::default() }));
    }

    #[test]
    fn flags_with_values_both_ways() {
        let expect = Command::Run(RunArgs { config: Some("cfg".into()), iterations: Some(3), ..RunArgs::default() });
        assert_eq!(p("run --config cfg --iterations 3").unwrap(), expect);
        assert_eq!(p("run --config=cfg --iterations=3").unwrap(), expect);
        assert_eq!(
            p("run --sim --seed 7 --speed 60").unwrap(),
            Command::Run(RunArgs { sim: true, seed: Some(7), speed: Some(60.0), ..RunArgs::default() })
        );
    }

    #[test]
    fn other_commands() {
        assert_eq!(p("status --json").unwrap(), Command::Status { config: None, json: true });
        assert_eq!(p("check-config --config x").unwrap(), Command::CheckConfig { config: Some("x".into()) });
        assert_eq!(p("resume").unwrap(), Command::Resume { config: None });
        assert_eq!(p("reload --config /etc/th").unwrap(), Command::Reload { config: Some("/etc/th".into()) });
        assert!(p("reload --once").is_err());
        assert_eq!(p("sim-reset --config c").unwrap(), Command::SimReset { config: Some("c".into()) });
        assert!(p("sim-reset --sim").is_err());
        assert_eq!(p("recover").unwrap(), Command::Recover { config: None, confirm: false });
        assert_eq!(
            p("recover --confirm --config c").unwrap(),
            Command::Recover { config: Some("c".into()), confirm: true }
        );
        assert!(p("status --confirm").is_err());
        assert_eq!(p("backup b/x.db").unwrap(), Command::Backup { config: None, dest: "b/x.db".into() });
        assert!(p("backup").unwrap_err().to_string().contains("backup needs DEST"));
        assert!(p("backup a b").is_err());
        assert!(p("status a").is_err());
        let date = "2026-12-07".parse().unwrap();
        assert_eq!(
            p("replay 2026-12-07 --data bars").unwrap(),
            Command::Replay { config: None, date, data: Some(PathBuf::from("bars")), out: None }
        );
        assert!(p("replay").unwrap_err().to_string().contains("replay needs DATE"));
        assert!(p("replay 7/12/2026").unwrap_err().to_string().contains("replay takes a date YYYY-MM-DD"));
        assert!(p("replay 2026-12-07 2026-12-08").is_err());
        assert_eq!(
            p("trades --from 2026-12-01 --csv").unwrap(),
            Command::Trades { config: None, from: Some("2026-12-01".parse().unwrap()), to: None, csv: true }
        );
        assert!(
            p("trades --from 2026-12-02 --to 2026-12-01").unwrap_err().to_string().contains("--from is after --to")
        );
        assert!(p("status --csv").is_err(), "--csv is trades'");
        let v: Vec<String> = ["halt", "--reason", "earnings day"].map(String::from).to_vec();
        assert_eq!(parse(&v).unwrap(), Command::Halt { config: None, reason: "earnings day".into() });
        assert_eq!(p("status --help").unwrap(), Command::Help(command_help("status")));
        assert!(command_help("status").unwrap().starts_with("Usage: trading-hydra status"));
        assert_eq!(p("--help").unwrap(), Command::Help(None));
        assert_eq!(p("help").unwrap(), Command::Help(None));
        assert_eq!(p("help backup").unwrap(), Command::Help(command_help("backup")));
        assert!(p("help nope").unwrap_err().to_string().contains("unknown command \"nope\""));
        // A typo is answered with the command meant.
        assert!(p("stauts").unwrap_err().to_string().contains("did you mean `status`?"));
        assert!(p("backtets --data x").unwrap_err().to_string().contains("did you mean `backtest`?"));
        assert!(!p("frobnicate").unwrap_err().to_string().contains("did you mean"));
        // Every command has its own page.
        for c in [
            "run",
            "check-config",
            "status",
            "halt",
            "resume",
            "reload",
            "recover",
            "backup",
            "sim-reset",
            "download",
            "backtest",
        ] {
            assert!(command_help(c).is_some_and(|t| t.contains(&format!("trading-hydra {c}"))), "{c}");
        }
    }

    #[test]
    fn download_and_backtest_arguments() {
        let v: Vec<String> = "download --symbols SPY,BTC/USD --from 2026-01-02 --to 2026-01-31 --out bars"
            .split(' ')
            .map(String::from)
            .collect();
        match parse(&v).unwrap() {
            Command::Download(d) => {
                assert_eq!(d.symbols, vec!["SPY", "BTC/USD"]);
                assert_eq!(d.timeframe, "1Min");
            }
            other => panic!("{other:?}"),
        }
        assert!(p("download --symbols SPY --from 2026-01-02 --to 2026-01-01 --out x").is_err());
        assert!(p("download --symbols SPY --from 2026-01-02 --to 2026-01-03 --out x --timeframe 7Day").is_err());
        assert!(p("download --symbols SPY --from 2026-01-02 --to 2026-01-03 --out x --timeframe 15Min").is_ok());
        assert!(p("download --symbols SPY --out x").is_err());
        assert!(p("backtest").is_err());
        assert!(p("backtest --data d --from nope").is_err());
        assert!(p("run --data d").is_err());
    }

    #[test]
    fn a_backtest_takes_one_source_of_bars() {
        let source = |args: &str| match p(args) {
            Ok(Command::Backtest(b)) => Ok(b.source),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.0),
        };
        assert_eq!(source("backtest --data d"), Ok(BarSource::Files("d".into())));
        assert_eq!(source("backtest --synthetic 5"), Ok(BarSource::Synthetic { days: 5, seed: 42 }));
        assert_eq!(
            source("backtest --synthetic 5 --seed 7 --to 2026-11-27"),
            Ok(BarSource::Synthetic { days: 5, seed: 7 })
        );
        for (bad, says) in [
            ("backtest --data d --synthetic 5", "give one"),
            ("backtest --synthetic 0", "from 1 to 2520"),
            ("backtest --synthetic x", "from 1 to 2520"),
            ("backtest --synthetic 5 --from 2026-11-02", "drop --from"),
            ("backtest --data d --seed 7", "goes with --synthetic"),
            ("backtest --synthetic 5 --speed 2", "not an option of `backtest`"),
            ("backtest --seed 7", "--data PATH or --synthetic DAYS"),
        ] {
            let e = source(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn sweep_arguments() {
        match p("backtest --data d --sweep a.b=1,2 --sweep c.d=x --rank sharpe --jobs 3 --walk-forward 20:5").unwrap() {
            Command::Backtest(b) => {
                assert_eq!(b.sweep.len(), 2);
                assert_eq!(b.sweep[0].values, ["1", "2"]);
                assert_eq!(b.rank, crate::research::sweep::Rank::Sharpe);
                assert_eq!(b.jobs, Some(3));
                assert_eq!(b.walk_forward, Some((20, 5)));
            }
            other => panic!("{other:?}"),
        }
        match p("backtest --data d --sweep a.b=1").unwrap() {
            Command::Backtest(b) => assert_eq!((b.rank, b.jobs), (crate::research::sweep::Rank::Return, None)),
            other => panic!("{other:?}"),
        }
        for bad in [
            "backtest --data d --sweep a.b",
            "backtest --data d --sweep a.b=",
            "backtest --data d --sweep a.b=1 --rank luck",
            "backtest --data d --sweep a.b=1 --jobs 0",
            "backtest --data d --sweep a.b=1 --walk-forward 20",
            "backtest --data d --sweep a.b=1 --walk-forward 0:5",
            "backtest --data d --walk-forward 20:5",
            "backtest --data d --rank return",
            "run --sweep a.b=1",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for bad in [
            "--bogus",
            "frobnicate",
            "run --iterations",
            "run --iterations 0",
            "run --iterations x",
            "run --once --iterations 2",
            "status --once",
            "run --json",
            "halt",
            "run --seed 3",
            "run --sim --speed -1",
            "run extra",
        ] {
            let e = p(bad).expect_err(bad);
            assert!(e.to_string().ends_with(USAGE_LINE), "{bad}: {e}");
        }
    }
}
