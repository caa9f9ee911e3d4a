//! The daemon's foundation: configuration, state and its lock, logging, time, risk arithmetic,
//! health, halts.
//! Nothing here talks to a broker.

pub mod black_scholes;
pub mod clock;
pub mod config;
pub mod decimal;
pub mod halt;
pub mod health;
pub mod instrument;
pub mod ledger;
pub mod ledger_lock;
pub mod logging;
pub mod market_data;
pub mod order;
pub mod risk;
pub mod signal;
pub mod state;
