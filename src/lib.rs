//! Trading Hydra: a small synchronous daemon that trades an Alpaca account with several bots and
//! protects that account fail-closed.
//!
//! The layout follows the Python daemon it ports: `core` (configuration, state, logging, clock,
//! risk arithmetic, health, halts), `services` (ExitBot, status, and later the broker client,
//! portfolio and execution), `bots`, and the `orchestrator` that runs the five steps. The runner
//! (signals, sleeping, exit codes) is `src/main.rs`.

#![forbid(unsafe_code)]

pub mod bots;
pub mod cli;
pub mod core;
pub mod error;
pub mod orchestrator;
pub mod services;

/// The version printed by `--version` and logged by `startup`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
