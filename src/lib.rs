//! Trading Hydra: a small synchronous daemon that trades an Alpaca account with several bots and
//! protects that account fail-closed.
//!
//! The layout follows the Python daemon it ports, in layers that import downwards only:
//! - `core`, the bottom: the shared words (`order`, `market_data`, `instrument`, `signal`,
//!   `decimal`), configuration, the state database and its lock, logging, the clock, risk
//!   arithmetic and budgets, the health window, halts. No I/O but the database, the log and the
//!   lock; nothing here imports `bots` or `services`.
//! - `bots`: pure decisions (signals, indicators, exits, the three bots); imports `core` only.
//! - `services`: everything that does I/O — the `Broker` trait with the Alpaca client and the
//!   simulated broker, ExitBot, PortfolioBot, execution, notifications, reports, the backtest.
//! - `orchestrator`: the five steps of one iteration. The runner (signals, sleeping, exit codes)
//!   is `src/main.rs`; `cli` parses the command line, `error` maps failures to exit codes.

#![forbid(unsafe_code)]

pub mod bots;
pub mod cli;
pub mod core;
pub mod error;
pub mod orchestrator;
pub mod research;
pub mod services;
pub mod sim;
#[cfg(test)]
pub(crate) mod test_dir;

/// The version printed by `--version` and logged by `startup`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
