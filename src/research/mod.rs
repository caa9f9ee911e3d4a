//! Research: the backtest, parameter sweeps and walk-forward tests, and the report page.
//!
//! Owns: driving the orchestrator over replayed or synthetic bars on the simulated broker
//! (`backtest`), its statistics (`stats`), a grid of backtests on threads and the walk-forward
//! windows (`sweep`), the files and the self-contained page that report them (`report_page`), and
//! a live day replayed against the backtest of it (`replay_day`). It stands above the
//! orchestrator it drives: it imports the orchestrator, `sim`, `services` and `core`, and nothing
//! imports it but `main` and `cli` (the `--sweep` arguments).
//!
//! Never: runs against a real broker, or writes the daemon's ledger: a backtest's ledger is in
//! memory (a replay reads the daemon's, read-only).

pub mod backtest;
pub mod replay_day;
pub mod report_page;
pub mod stats;
pub mod sweep;
