//! The daemon's foundation, the bottom layer: the shared words (orders, market data, instruments,
//! signals, exact decimals), configuration, the state database with its lock and the ledger's
//! arithmetic (a fill's, and a split's: `corporate_action`), logging, time, risk arithmetic and budgets,
//! health, halts (and the halt file beside the ledger), why a bot is idle, and trades folded from
//! the ledger's fills (`round_trip`). It imports neither
//! `bots` nor `services`.
//! Nothing here talks to a broker.

pub mod backtest_reads;
pub mod clock;
pub mod config;
pub mod config_diff;
pub mod corporate_action;
pub mod decimal;
pub mod halt;
pub mod halt_file;
pub mod halt_store;
pub mod health;
pub mod idle;
pub mod instrument;
pub mod ledger;
pub mod ledger_account;
pub mod ledger_lock;
pub mod logging;
pub mod market_data;
pub mod order;
pub mod risk;
pub mod round_trip;
pub mod signal;
pub mod state;
