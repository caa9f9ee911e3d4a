//! Services the orchestrator calls: the broker (trait, Alpaca client), ExitBot (the kill switch)
//! and the read-only status report. PortfolioBot and the execution service join here.

pub mod alpaca_client;
pub mod backtest;
pub mod bar_files;
pub mod broker;
pub mod daily_report;
pub mod execution;
pub mod exitbot;
pub mod market_session;
pub mod notify;
pub mod portfolio;
pub mod sim_broker;
pub mod status;
pub mod systemd;
