//! Services the orchestrator calls, the layer that does I/O: the broker (the `Broker` trait, the
//! Alpaca client, the simulated broker), ExitBot (the kill switch), PortfolioBot (budgets), the
//! execution service, the market session, notifications, the daily report, the read-only status
//! report, the backtest, its report page, its parameter sweeps and walk-forward tests and its bar files, and systemd's notify socket. Services import `core`
//! and `bots`; neither of those imports a service.

pub mod alpaca_client;
pub mod backtest;
pub mod bar_files;
pub mod broker;
pub mod daily_report;
pub mod dns_cache;
pub mod execution;
pub mod exitbot;
pub mod market_session;
pub mod notify;
pub mod portfolio;
pub mod replay;
pub mod report_page;
pub mod sim_broker;
pub mod status;
pub mod sweep;
pub mod systemd;
