//! Services the orchestrator calls: ExitBot (the kill switch) and the read-only status report.
//! The broker client, PortfolioBot and the execution service join here.

pub mod exitbot;
pub mod status;
