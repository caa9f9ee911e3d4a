//! The simulated broker and the market it makes: `run --sim` and the backtest trade against it.
//!
//! Owns: the simulated broker (`sim_broker`: the `Broker` trait over a book kept in the ledger or
//! in memory, with Alpaca's refusals), the option prices it quotes (`black_scholes`), and the
//! bars it replays in a backtest (`bar_files`, read through once and streamed; `replay`, the
//! clock stepping bar by bar). Imports `core` and `services::broker` (the trait it implements);
//! nothing below the orchestrator imports it, except a test.
//!
//! Never: touches the network. Nothing here is on the live order path against Alpaca.

pub mod bar_files;
pub mod black_scholes;
pub mod replay;
pub mod sim_broker;
