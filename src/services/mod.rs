//! Services the orchestrator calls each iteration, the layer that does I/O: the broker (the
//! `Broker` trait and the Alpaca client; the simulated broker is `sim`'s), ExitBot (the kill
//! switch), PortfolioBot (budgets), the execution service, the market session, notifications
//! and the heartbeat, the daily report, the read-only status report, systemd's notify socket,
//! the ledger held against the broker (`lost_orders`, `transfers`), the daily backup and the
//! metrics file. Services import
//! `core` and `bots`; neither of those imports a service, nor does a service import `sim`,
//! `research` or the orchestrator (a test may use the simulated broker).

pub mod alpaca_client;
pub mod broker;
pub mod daily_backup;
pub mod daily_report;
pub mod dns_cache;
pub mod entry_checks;
pub mod execution;
pub mod exitbot;
pub mod idle_notes;
pub mod lost_orders;
pub mod market_feed;
pub mod market_session;
pub mod metrics;
pub mod notify;
pub mod order_lifecycle;
pub mod portfolio;
pub mod status;
pub mod systemd;
pub mod transfers;
