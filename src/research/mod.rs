//! Research: the backtest, parameter sweeps and walk-forward tests, and the report page.
//!
//! Owns: driving the orchestrator over replayed or synthetic bars on the simulated broker
//! (`backtest`), a grid of backtests on threads and the walk-forward windows (`sweep`), and the
//! files and the self-contained page that report them (`report_page`). It stands above the
//! orchestrator it drives: it imports the orchestrator, `sim`, `services` and `core`, and nothing
//! imports it but `main` and `cli` (the `--sweep` arguments).
//!
//! Never: runs against a real broker, or writes the daemon's ledger: a backtest's ledger is in
//! memory.

pub mod backtest;
pub mod report_page;
pub mod stats;
pub mod sweep;
