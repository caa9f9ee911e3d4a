//! Which account a ledger belongs to, and the clock it is read by.
//!
//! Owns: the ledger's `account` row — the simulated account of `run --sim`, or a broker's account
//! by its id —, the check that a `run` is for the account its ledger holds (`claim`), and the
//! ledger's "now" (`now`): the wall clock for a broker's account; for the simulated account, the
//! simulated time of its newest iteration, since that clock runs only while `run --sim` runs it.
//! `status`, `halt`, `resume` and `reload` read a ledger's date and time here, so they speak the
//! clock the daemon trades by.
//!
//! Never: asks the broker (the caller brings the account it read), or writes to a ledger that
//! belongs to another account.

use std::fmt;
use std::path::Path;

use jiff::Timestamp;
use serde_json::json;

use crate::core::clock;
use crate::core::state::{State, StateError};

/// The kv key of the account row.
const ACCOUNT_KEY: &str = "account";
/// The kv key of the simulated broker's book: a ledger holding one is the simulated account's,
/// even when written by a build that did not record accounts.
const SIM_BOOK_KEY: &str = "sim_book";
/// The kv key of the mode of the last `run` (`sim`, `paper`, `live`).
pub const MODE_KEY: &str = "mode";

/// The account whose orders and positions a ledger keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerAccount {
    /// The simulated broker's account (`run --sim`).
    Simulated,
    /// A broker's account: Alpaca's id for it, and the number a person knows it by.
    Broker { id: String, number: Option<String> },
    /// A broker's account whose id a build before this one did not record (its `mode` row says
    /// `paper` or `live`): the first broker `run` on the ledger adopts it, a simulated one refuses.
    BrokerUnnamed { mode: String },
}

impl LedgerAccount {
    /// The row's text: JSON, `{"kind":"simulated"}` or `{"kind":"broker","id":…,"number":…}`.
    fn to_text(&self) -> String {
        match self {
            LedgerAccount::Simulated => json!({"kind": "simulated"}),
            LedgerAccount::Broker { id, number } => json!({"kind": "broker", "id": id, "number": number}),
            LedgerAccount::BrokerUnnamed { mode } => json!({"kind": "broker_unnamed", "mode": mode}),
        }
        .to_string()
    }

    fn parse(text: &str) -> Result<LedgerAccount, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{text:?}: {e}"))?;
        let field = |k: &str| v[k].as_str().map(str::to_string);
        match v["kind"].as_str() {
            Some("simulated") => Ok(LedgerAccount::Simulated),
            Some("broker") => match field("id") {
                Some(id) => Ok(LedgerAccount::Broker { id, number: field("number") }),
                None => Err(format!("{text:?}: a broker account without its id")),
            },
            Some("broker_unnamed") => Ok(LedgerAccount::BrokerUnnamed { mode: field("mode").unwrap_or_default() }),
            _ => Err(format!("{text:?}: not an account this build knows")),
        }
    }

    pub fn is_simulated(&self) -> bool {
        matches!(self, LedgerAccount::Simulated)
    }

    /// The fields of `status --json`'s `account`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            LedgerAccount::Simulated => json!({"kind": "simulated"}),
            LedgerAccount::Broker { id, number } => json!({"kind": "broker", "id": id, "number": number}),
            LedgerAccount::BrokerUnnamed { mode } => {
                json!({"kind": "broker", "id": null, "number": null, "mode": mode})
            }
        }
    }
}

impl fmt::Display for LedgerAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerAccount::Simulated => f.write_str("the simulated account (`run --sim`)"),
            LedgerAccount::Broker { id, number: Some(number) } => write!(f, "Alpaca account {number} (id {id})"),
            LedgerAccount::Broker { id, number: None } => write!(f, "the Alpaca account with id {id}"),
            LedgerAccount::BrokerUnnamed { mode } => {
                write!(f, "an Alpaca {mode} account (recorded by an older build, which kept no account id)")
            }
        }
    }
}

/// The account a ledger belongs to, as recorded (`None`: a ledger no `run` has claimed yet).
pub fn recorded(state: &State) -> Result<Option<LedgerAccount>, StateError> {
    if let Some(text) = state.kv_get(ACCOUNT_KEY)? {
        return LedgerAccount::parse(&text)
            .map(Some)
            .map_err(|detail| StateError::BadRow { what: "kv.account", detail });
    }
    // A ledger written before accounts were recorded: its simulated book, or its mode, says whose.
    if state.kv_get(SIM_BOOK_KEY)?.is_some() {
        return Ok(Some(LedgerAccount::Simulated));
    }
    Ok(match state.kv_get(MODE_KEY)?.as_deref() {
        Some("sim") => Some(LedgerAccount::Simulated),
        Some(mode @ ("paper" | "live")) => Some(LedgerAccount::BrokerUnnamed { mode: mode.to_string() }),
        _ => None,
    })
}

/// What `claim` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The ledger belonged to no account: it is now `running`'s.
    New,
    /// An older build's broker ledger, now named by `running`'s id.
    Adopted,
    /// The ledger is `running`'s already.
    Same,
    /// The ledger belongs to this other account; nothing was written.
    Other(LedgerAccount),
}

/// Claims the ledger for the account `running` is about to trade: recorded if the ledger has no
/// account yet, refused (`Claim::Other`, nothing written) if it holds another's. Called before
/// anything is sent: a ledger keeps one account's orders and positions, and a run on another's
/// would reconcile one account's positions against the other's.
pub fn claim(state: &State, running: &LedgerAccount, now: Timestamp) -> Result<Claim, StateError> {
    let found = recorded(state)?;
    let claim = match (&found, running) {
        (None, _) => Claim::New,
        (Some(LedgerAccount::BrokerUnnamed { .. }), LedgerAccount::Broker { .. }) => Claim::Adopted,
        (Some(ledger), running) if same_account(ledger, running) => Claim::Same,
        (Some(ledger), _) => return Ok(Claim::Other(ledger.clone())),
    };
    // The row is rewritten when only the number changed (a broker that did not give it before).
    if found.as_ref() != Some(running) {
        state.kv_set(ACCOUNT_KEY, &running.to_text(), now)?;
    }
    Ok(claim)
}

/// Two accounts are one when both are the simulated one, or both are the broker's by one id.
fn same_account(a: &LedgerAccount, b: &LedgerAccount) -> bool {
    match (a, b) {
        (LedgerAccount::Simulated, LedgerAccount::Simulated) => true,
        (LedgerAccount::Broker { id: a, .. }, LedgerAccount::Broker { id: b, .. }) => a == b,
        _ => false,
    }
}

/// The operator's message for a `run` refused by `claim`: both accounts, and how to start afresh.
/// `running` says which account the run is for (`LedgerAccount`'s words, or "an Alpaca account"
/// when its id is not read yet).
pub fn refusal(path: &Path, ledger: &LedgerAccount, running: &str) -> String {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let fresh = if ledger.is_simulated() {
        "set the simulated account's ledger aside with `trading-hydra sim-reset` (it is kept, renamed), or point \
         system.state_db_path at another file"
    } else {
        "point system.state_db_path at another file for this account (each account keeps its own ledger)"
    };
    format!(
        "the ledger {} belongs to {ledger}, and this run is for {running}: a ledger keeps one account's orders and \
         positions, and mixing them would reconcile one account's positions against another's. Nothing was sent. \
         To start afresh: {fresh}",
        path.display()
    )
}

/// A ledger's date and time, in the clock the daemon trades it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerTime {
    pub now: Timestamp,
    /// The simulated account's clock: the simulated time of its newest iteration.
    pub simulated: bool,
}

impl LedgerTime {
    /// The trading date of `now` (New York's).
    pub fn trading_date(&self) -> jiff::civil::Date {
        clock::trading_date(self.now)
    }
}

/// A ledger's "now": the wall clock `wall` for a broker's account (or a ledger no run has
/// claimed); for the simulated account, the simulated time of its newest iteration — its clock
/// stands still while no `run --sim` runs it, and moves `--speed` times as fast while one does —
/// or, before its first iteration is recorded, the time a new simulated market would start at.
pub fn now(state: &State, wall: Timestamp) -> Result<LedgerTime, StateError> {
    if !recorded(state)?.is_some_and(|a| a.is_simulated()) {
        return Ok(LedgerTime { now: wall, simulated: false });
    }
    let last = state.last_loop_run()?.and_then(|r| r.market_time);
    Ok(LedgerTime { now: last.unwrap_or_else(|| clock::sim_start(wall)), simulated: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::LoopRun;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn broker(id: &str) -> LedgerAccount {
        LedgerAccount::Broker { id: id.into(), number: Some(format!("PA{id}")) }
    }

    #[test]
    fn a_ledger_is_claimed_once_and_refuses_any_other_account() {
        let s = State::open_memory().unwrap();
        let now = ts("2026-12-05T15:00:00Z");
        assert_eq!(recorded(&s).unwrap(), None);
        assert_eq!(claim(&s, &LedgerAccount::Simulated, now).unwrap(), Claim::New);
        assert_eq!(recorded(&s).unwrap(), Some(LedgerAccount::Simulated));
        assert_eq!(claim(&s, &LedgerAccount::Simulated, now).unwrap(), Claim::Same);
        // A broker's run on the simulated account's ledger is refused, and writes nothing.
        assert_eq!(claim(&s, &broker("1"), now).unwrap(), Claim::Other(LedgerAccount::Simulated));
        assert_eq!(recorded(&s).unwrap(), Some(LedgerAccount::Simulated));

        let b = State::open_memory().unwrap();
        assert_eq!(claim(&b, &broker("1"), now).unwrap(), Claim::New);
        assert_eq!(claim(&b, &broker("1"), now).unwrap(), Claim::Same);
        assert_eq!(claim(&b, &broker("2"), now).unwrap(), Claim::Other(broker("1")));
        assert_eq!(claim(&b, &LedgerAccount::Simulated, now).unwrap(), Claim::Other(broker("1")));
        assert_eq!(recorded(&b).unwrap(), Some(broker("1")));
    }

    #[test]
    fn an_older_builds_ledger_is_known_by_its_book_or_its_mode() {
        let now = ts("2026-12-05T15:00:00Z");
        let sim = State::open_memory().unwrap();
        sim.kv_set(SIM_BOOK_KEY, "{}", now).unwrap();
        assert_eq!(recorded(&sim).unwrap(), Some(LedgerAccount::Simulated));
        assert_eq!(claim(&sim, &broker("1"), now).unwrap(), Claim::Other(LedgerAccount::Simulated));

        let paper = State::open_memory().unwrap();
        paper.kv_set(MODE_KEY, "paper", now).unwrap();
        let unnamed = LedgerAccount::BrokerUnnamed { mode: "paper".into() };
        assert_eq!(claim(&paper, &LedgerAccount::Simulated, now).unwrap(), Claim::Other(unnamed));
        assert_eq!(claim(&paper, &broker("7"), now).unwrap(), Claim::Adopted);
        assert_eq!(recorded(&paper).unwrap(), Some(broker("7")));
        assert_eq!(claim(&paper, &broker("8"), now).unwrap(), Claim::Other(broker("7")));
    }

    #[test]
    fn a_damaged_account_row_is_an_error_naming_it() {
        let s = State::open_memory().unwrap();
        s.kv_set(ACCOUNT_KEY, "{\"kind\":\"mars\"}", ts("2026-12-05T15:00:00Z")).unwrap();
        let e = recorded(&s).unwrap_err().to_string();
        assert!(e.contains("kv.account"), "{e}");
    }

    #[test]
    fn the_simulated_ledgers_clock_is_its_newest_iterations_time_and_a_brokers_the_wall() {
        let wall = ts("2026-12-05T15:00:00Z"); // a Saturday
        let s = State::open_memory().unwrap();
        // No account yet: the wall clock.
        assert_eq!(now(&s, wall).unwrap(), LedgerTime { now: wall, simulated: false });
        claim(&s, &LedgerAccount::Simulated, wall).unwrap();
        // Before its first iteration: where a new simulated market starts (Monday's open).
        let t = now(&s, wall).unwrap();
        assert!(t.simulated);
        assert_eq!(t.now, clock::sim_start(wall));
        assert_eq!(t.trading_date(), jiff::civil::date(2026, 12, 7));
        // Its newest iteration's simulated time (a ledger in memory keeps no loop runs: a file).
        let dir = crate::test_dir::TestDir::new("ledger-clock");
        let file = State::open(&dir.path().join("state.db")).unwrap();
        claim(&file, &LedgerAccount::Simulated, wall).unwrap();
        let market = ts("2026-12-08T20:59:00Z");
        let run = LoopRun {
            iteration: 9,
            started_at: wall,
            market_time: Some(market),
            duration_ms: 1,
            equity: None,
            day_start_equity: None,
            daily_pnl_pct: None,
            halted: false,
            orders_submitted: 0,
            requests: 0,
            error: None,
        };
        file.insert_loop_run(&run).unwrap();
        assert_eq!(now(&file, wall).unwrap(), LedgerTime { now: market, simulated: true });

        let b = State::open_memory().unwrap();
        claim(&b, &broker("1"), wall).unwrap();
        assert_eq!(now(&b, wall).unwrap(), LedgerTime { now: wall, simulated: false });
    }
}
