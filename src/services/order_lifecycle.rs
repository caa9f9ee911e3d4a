//! The order lifecycle: the one place an order of ours is numbered, recorded, sent, answered,
//! followed, cancelled, replaced, closed or found to be a stranger's, and the entry gate that
//! is asked at the moment each entry would be sent.
//!
//! Owns: numbering and durable recording (every order is recorded in the ledger *before* it goes
//! out, then updated with the broker's answer); sending, and what each answer means; lost answers
//! (looked up by the client order id, never re-sent); following our orders to their fills (which
//! move the owned positions); order conflicts (an order found under our id that is not the one
//! we recorded: marked, halted on, never booked); reconciling owned positions with the broker's
//! (a split the broker applied re-bases a position and its orders in flight, a new ticker moves
//! it);
//! cancelling our stale entries; flattening what we own; the exits sent while the ledger takes no
//! writes (ids derived from what they close, held in memory, recorded once it takes writes
//! again); each position's protective stop resting at the broker (placed, trailed by replacing
//! it, cancelled and read back before any sell of the daemon's own); what a refused exit means
//! (resized to what is free, or the opposite resting order of ours cancelled, then a growing
//! wait); and the entry gate: `Orders::entry_stop`, every reason an entry may not go now, opened
//! by step 4 for its iteration (`open_gate`) and asked by `send_entry` as each entry goes.
//!
//! Never: touches or adopts an order or a position the daemon did not open, sends an entry the
//! gate stops (`send_entry`, the only way one goes out, asks `entry_stop` first), re-sends a
//! refused or unknown order (a refused exit is decided again after a growing wait, as a new
//! order; an unrecorded exit whose answer was lost goes again under its same derived id, which
//! the broker cannot double), abandons one on anything but the broker's own "not found", or sends
//! a second exit for a position that already has one open (a resting protective stop is cleared,
//! and seen cleared, first). It decides no signal and fetches no market data.
//!
//! # An order's life
//!
//! The states are `RecordStatus` (`core::order`). Every transition, and the evidence that moves an
//! order along it:
//!
//! | from | to | evidence |
//! | --- | --- | --- |
//! | — | `Recorded` | numbered and written, fsynced, before anything is sent (`State::record_order`, from `Orders::send`); with the ledger refusing writes an exit is held in memory instead and recorded once it takes them (`Orders::send_unrecorded`, `Orders::flush_unrecorded`) |
//! | — | `Recorded`, with the broker's id | an order of ours the broker holds and a restored ledger lost, booked by the operator's `recover --confirm` (`services::lost_orders::book`), then followed like any other |
//! | `Recorded` | `Broker(s)` | the broker's answer to the submit (`Orders::answered`, which books any fill in it and logs it as `fill`) |
//! | `Recorded` | `Unknown` | the submit's answer was lost: a timeout, a 5xx, a body that does not parse (`Orders::answered`) |
//! | `Recorded` | `Rejected` | a final refusal of the submit, Alpaca's 4xx words kept (`Orders::answered`) |
//! | `Recorded`, `Unknown` | `Broker(s)` | found at the broker by its client order id, and it is the order we sent (`Orders::follow`, `not_ours`) |
//! | `Recorded`, `Unknown` | `Abandoned` | Alpaca's own "no such order" for `ABANDON_AFTER`: the process died before sending; never re-sent (`Orders::follow`) |
//! | any unfinished | `Conflict` | an order under our id that is not the one we sent, from the submit's 422 or a lookup; never booked, and the daemon halts (`Orders::record_conflict`) |
//! | `Broker(new / accepted / partially_filled …)` | `Broker(partially_filled / filled / canceled / expired …)` | the broker's report of the order (`Orders::follow`, `record_report`); what filled is booked once, with its price. A fill without its price, or a multi-leg order whose legs do not carry the parent's fill, leaves the status as it was: the order stays in flight (`fill_unpriced`, once) |
//! | `Broker(new / accepted …)` | `Broker(canceled)` | our cancel (an entry past its timeout in `Orders::follow`, `Orders::cancel_entries` on a halt, a protective stop before our own exit in `Orders::clear_protection`), confirmed by the broker's next report |
//! | `Broker(new / accepted)` (a protective stop) | `Broker(replaced)` | the broker took a replace; the replacing order was recorded first under its own id (`Orders::replace_guard`) |
//!
//! The final ones are `FINAL_ORDER_STATUSES` (`core::state`): `filled`, `canceled`, `expired`,
//! `replaced`, `rejected`, `done_for_day`, `abandoned`, `conflict`. Nothing leaves a final status.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use jiff::{SignedDuration, Timestamp};

use crate::bots::Bot;
use crate::bots::protection::{Protection, protection_for};
use crate::core::clock;
use crate::core::config::Config;
use crate::core::corporate_action;
use crate::core::decimal::Dec;
use crate::core::halt::{Halt, HaltReason};
use crate::core::halt_store;
use crate::core::instrument::{AssetClass, OccSymbol};
use crate::core::ledger::Holding;
use crate::core::order::{
    Amount, BROKER_STOP, Intent, Leg, OrderStatus, OrderType, PositionIntent, RecordStatus, Side, TimeInForce,
};
use crate::core::state::{
    BrokerPositionRow, ClientOrderId, FillDelta, FillTime, LegRecord, NewOrder, OrderRecord, OwnedPosition,
    PositionRules, State, StateError,
};
use crate::event;
use crate::services::broker::{
    Broker, BrokerError, ExitRefusal, Order, OrderRequest, ReplaceRequest, exit_refusal, order_mismatch,
};

/// An order not found at the broker this long after it was recorded was never sent (the process
/// died in between) or never arrived: it is abandoned, never re-sent.
const ABANDON_AFTER: SignedDuration = SignedDuration::from_secs(60);
/// A refused exit is not sent again at once: it waits 5 s, then 10, 20, 40, and 60 s between
/// later tries. A refusal is the broker's answer, and the same order a second later gets the same
/// answer (Alpaca's "insufficient qty available" while shares are held, a wash-trade guard).
const EXIT_RETRY_FIRST: SignedDuration = SignedDuration::from_secs(5);
const EXIT_RETRY_MAX: SignedDuration = SignedDuration::from_secs(60);
/// An exit still refused this long after its first refusal is notified, once.
const EXIT_STUCK_AFTER: SignedDuration = SignedDuration::from_secs(60);

/// The rule of the market exit sent when a protective stop cannot rest because the market is
/// already through it: the position's stop is due.
const STOP_DUE: &str = "stop_loss";

/// A trailing protective stop is replaced at most this often, and only by at least this step
/// (a fraction of its stop): Alpaca counts every replace against the request budget.
const REPLACE_EVERY: SignedDuration = SignedDuration::from_secs(60);
const REPLACE_MIN_STEP: f64 = 0.001;

#[derive(Debug)]
pub enum ExecError {
    State(StateError),
    Broker(BrokerError),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::State(e) => e.fmt(f),
            ExecError::Broker(e) => e.fmt(f),
        }
    }
}

impl From<StateError> for ExecError {
    fn from(e: StateError) -> ExecError {
        ExecError::State(e)
    }
}

impl From<BrokerError> for ExecError {
    fn from(e: BrokerError) -> ExecError {
        ExecError::Broker(e)
    }
}

/// An order to send for a bot.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSpec {
    pub bot: String,
    pub symbol: String,
    pub side: Side,
    pub amount: Amount,
    pub order_type: OrderType,
    pub limit_price: Option<Dec>,
    /// A stop or stop-limit order's trigger (a protective order's).
    pub stop_price: Option<Dec>,
    pub time_in_force: TimeInForce,
    pub intent: Intent,
    /// The exit rule, for exits.
    pub rule: Option<&'static str>,
    /// The legs of a multi-leg option order (then `symbol` is the underlying).
    pub legs: Vec<Leg>,
    /// The price it was decided at, recorded with it (`NewOrder::ref_price`): what its fills'
    /// slippage is measured from. Never sent.
    pub ref_price: Option<Dec>,
}

/// What became of a send.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Accepted {
        client_order_id: String,
    },
    /// Refused by the broker or by our own checks: recorded as `rejected`, never re-sent.
    Refused {
        client_order_id: String,
        error: BrokerError,
    },
    /// The answer was lost: the order stays unfinished and is looked up by its id later.
    Unknown {
        client_order_id: String,
    },
    /// The broker holds another order under this id: recorded as `conflict`, halted on, and
    /// neither our order nor the stranger is ever booked.
    Conflict {
        client_order_id: String,
    },
}

/// What step 4 did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StepReport {
    pub orders_submitted: u32,
    /// Market data that could not be fetched (entries were skipped; exits ran on what was known).
    pub data_error: Option<String>,
    /// Symbols whose last quote was older than allowed while their market was open.
    pub stale: Vec<String>,
    /// The broker refused the credentials or the account while sending.
    pub account_refused: Option<String>,
}

/// Why no entry may go now, each reason `Orders::entry_stop` knows.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryStop {
    /// Entries are stopped for the iteration: halted, unsure of state, or a step failed with
    /// `safety.fail_closed` (`halt::entries_stopped` decides), or the gate was not opened.
    Stopped,
    /// The market data could not be fetched this iteration.
    NoMarketData,
    /// An order conflict was found this iteration: its halt stops entries from now on, even
    /// before it is read back (and even if it could not be stored).
    ConflictSeen,
    /// The ledger refused a write: its halt may be held in memory only.
    LedgerRefused,
    /// An exit the ledger could not record is held in memory.
    UnrecordedHeld,
    /// These symbols' last quotes are older than `health.max_price_staleness_seconds` while
    /// their market is open.
    StaleData(Vec<String>),
}

impl fmt::Display for EntryStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryStop::Stopped => {
                f.write_str("entries are stopped for this iteration (halted, unsure of state, or a step failed)")
            }
            EntryStop::NoMarketData => f.write_str("the market data could not be fetched"),
            EntryStop::ConflictSeen => {
                f.write_str("an order conflict was found: entries stop (an order_conflict halt)")
            }
            EntryStop::LedgerRefused => f.write_str("the ledger refused a write: entries stop (a state_error halt)"),
            EntryStop::UnrecordedHeld => f.write_str("an exit the ledger could not record is held in memory"),
            EntryStop::StaleData(symbols) => write!(
                f,
                "stale market data for {} (no quote within health.max_price_staleness_seconds)",
                symbols.join(", ")
            ),
        }
    }
}

/// What the order lifecycle keeps between iterations, besides the ledger.
#[derive(Debug, Default)]
pub struct Orders {
    /// Send instants of the last minute, for `risk.max_orders_per_minute`.
    sent: VecDeque<Timestamp>,
    /// An order conflict was found this iteration: no further entry, even before the halt it
    /// set is read back (and even if it could not be stored).
    conflict_seen: bool,
    /// Orders whose broker report had a fill not booked yet (`Booked::waiting`), already
    /// logged once as `fill_unpriced`.
    unpriced: BTreeSet<String>,
    /// Exits the broker refused, by (bot, symbol), waiting to be tried again.
    refused_exits: BTreeMap<(String, String), RefusedExit>,
    /// Protective stops the broker refused, by (bot, symbol), kept apart from the exits: a
    /// stop's refusal never holds back an exit of the same position.
    refused_stops: BTreeMap<(String, String), RefusedExit>,
    /// Exits sent while the ledger took no writes, oldest first, until it records them.
    unrecorded: Vec<Unrecorded>,
    /// The first write the ledger refused since the orchestrator last asked.
    ledger_failure: Option<String>,
    /// Option positions (bot, underlying) a flatten found while the market was shut, with its
    /// rule: closed at the open.
    due_at_open: BTreeMap<(String, String), &'static str>,
    /// When each position's protective stop was last replaced (a trailing stop moving it).
    replaced_at: BTreeMap<(String, String), Timestamp>,
    /// The entry gate as step 4 opened it (`open_gate`); `None`: closed, no entry goes.
    gate: Option<Opened>,
    /// Orders the broker refused since the process started (`refused`), for the metrics.
    refused: u64,
}

/// What an open entry gate knows of its iteration.
#[derive(Debug)]
struct Opened {
    /// The market data could not be fetched.
    data_error: bool,
    /// The symbols whose quotes are stale.
    stale: Vec<String>,
}

/// An exit sent while the ledger took no writes.
#[derive(Debug, Clone)]
struct Unrecorded {
    client_order_id: String,
    /// What it closes, as its id was derived from (`closes_key`).
    closes: String,
    order: NewOrder,
    request: OrderRequest,
    answer: Answer,
}

/// The broker's last word on an unrecorded exit.
#[derive(Debug, Clone)]
enum Answer {
    Placed(Box<Order>),
    /// The answer was lost: the same id is sent again when the exit is decided again.
    Unknown,
    /// Refused (or a conflict): that id is spent.
    Refused,
}

impl Unrecorded {
    /// Whether it may still sell, or sold: anything but an order that ended with nothing filled.
    fn in_flight(&self) -> bool {
        match &self.answer {
            // (What filled unknown: it may have sold.)
            Answer::Placed(o) => !o.status.is_final() || o.filled_qty.is_none_or(|f| f > Dec::ZERO),
            Answer::Unknown | Answer::Refused => false,
        }
    }
}

/// An exit the broker refused: how often, since when, and when it may be tried again.
#[derive(Debug, Clone, Copy)]
struct RefusedExit {
    attempts: u32,
    first: Timestamp,
    next: Timestamp,
    notified: bool,
}

/// What the ledger records of an order before it is sent.
fn new_order(spec: &OrderSpec, now: Timestamp) -> NewOrder {
    let (qty, notional) = amount_text(spec.amount);
    NewOrder {
        bot: spec.bot.clone(),
        symbol: spec.symbol.clone(),
        side: spec.side,
        qty,
        notional,
        order_type: spec.order_type,
        limit_price: spec.limit_price.map(|p| p.to_string()),
        stop_price: spec.stop_price.map(|p| p.to_string()),
        ref_price: spec.ref_price.map(|p| p.to_string()),
        intent: spec.intent,
        rule: spec.rule.map(str::to_string),
        created_at: now,
        trading_date: clock::trading_date(now),
        legs: spec
            .legs
            .iter()
            .map(|l| LegRecord {
                symbol: l.symbol.clone(),
                ratio: l.ratio_qty,
                position_intent: l.position_intent.as_str().into(),
            })
            .collect(),
    }
}

/// What goes to the broker for `spec` under `client_order_id`.
fn request(spec: &OrderSpec, client_order_id: &str) -> OrderRequest {
    OrderRequest {
        client_order_id: client_order_id.to_string(),
        symbol: spec.symbol.clone(),
        side: spec.side,
        amount: spec.amount,
        order_type: spec.order_type,
        time_in_force: spec.time_in_force,
        limit_price: spec.limit_price,
        stop_price: spec.stop_price,
        extended_hours: false,
        legs: spec.legs.clone(),
    }
}

/// What an exit closes, for `ClientOrderId::derived`: the bot, the order's symbol, side,
/// quantity, type and rule, and each owned position it closes with the instant it was opened; and the trading
/// date of the earliest of those. Read from the ledger (reads work on a full disk); the same
/// exit of the same positions gives the same text in any process.
fn closes_key(state: &State, spec: &OrderSpec, now: Timestamp) -> (String, jiff::civil::Date) {
    let (qty, notional) = amount_text(spec.amount);
    let mut key = format!(
        "{}|{}|{}|{}|{}|{}",
        spec.bot,
        spec.symbol,
        spec.side.as_str(),
        qty.or(notional).unwrap_or_default(),
        spec.order_type.as_str(),
        spec.rule.unwrap_or_default()
    );
    let symbols: BTreeSet<&str> = if spec.legs.is_empty() {
        BTreeSet::from([spec.symbol.as_str()])
    } else {
        spec.legs.iter().map(|l| l.symbol.as_str()).collect()
    };
    let mut opened = None::<Timestamp>;
    for p in state.owned_positions().unwrap_or_default().iter() {
        if p.bot == spec.bot && symbols.contains(p.symbol.as_str()) {
            key.push_str(&format!("|{}:{}:{}", p.symbol, p.qty, clock::db_ts(p.opened_at)));
            opened = Some(opened.map_or(p.opened_at, |o| o.min(p.opened_at)));
        }
    }
    (key, clock::trading_date(opened.unwrap_or(now)))
}

/// The order that rests `guard` for `bot`'s position in `symbol`.
fn protective_spec(bot: &str, symbol: &str, guard: &Protection) -> OrderSpec {
    OrderSpec {
        bot: bot.to_string(),
        symbol: symbol.to_string(),
        side: guard.side,
        amount: Amount::Qty(guard.qty),
        order_type: guard.order_type,
        limit_price: guard.limit,
        stop_price: Some(guard.stop),
        time_in_force: guard.time_in_force,
        intent: Intent::Exit,
        rule: Some(BROKER_STOP),
        legs: Vec::new(),
        // A stop is decided at its trigger: what it fills beyond that is its slippage.
        ref_price: Some(guard.stop),
    }
}

/// Whether an order of ours is a position's resting protective stop.
pub fn is_protective(o: &OrderRecord) -> bool {
    o.intent == Intent::Exit && o.rule.as_deref() == Some(BROKER_STOP)
}

/// Counts a send into the step's report: orders the broker took, and a refusal of the account.
pub fn count(report: &mut StepReport, sent: &Sent) {
    match sent {
        Sent::Accepted { .. } => report.orders_submitted += 1,
        Sent::Refused { error: BrokerError::Unauthorized { message, .. }, .. } => {
            report.account_refused = Some(message.clone())
        }
        _ => {}
    }
}

/// One `fill` event per position a report moved.
fn log_fills(deltas: &[FillDelta], client_order_id: &str) {
    for d in deltas {
        event!(
            Info,
            "fill",
            bot = d.bot.as_str(),
            symbol = d.symbol.as_str(),
            qty = d.qty.to_string(),
            price = d.price.to_f64(),
            realized_pnl = d.realized_pnl.to_f64(),
            client_order_id = client_order_id,
        );
    }
}

fn amount_text(a: Amount) -> (Option<String>, Option<String>) {
    match a {
        Amount::Qty(q) => (Some(q.to_string()), None),
        Amount::Notional(n) => (None, Some(n.to_string())),
    }
}

impl Orders {
    /// Opens the entry gate for this iteration's step 4, with what it allows: entries at all
    /// (`halt::entries_stopped`'s verdict), and what the step met fetching the market data (an
    /// error, the stale symbols). Closed again by `close_gate`; closed until opened.
    pub fn open_gate(&mut self, entries_allowed: bool, report: &StepReport) {
        self.gate =
            entries_allowed.then(|| Opened { data_error: report.data_error.is_some(), stale: report.stale.clone() });
    }

    /// Closes the entry gate: no entry goes until step 4 opens it again.
    pub fn close_gate(&mut self) {
        self.gate = None;
    }

    /// Every reason no entry may go now (`None`: entries may go), asked before a bot's entries
    /// (for all its `symbols`) and by `send_entry` at the moment each one would be sent (for its
    /// symbol), so a conflict or a refused write met by an earlier send of the iteration stops
    /// the next.
    pub fn entry_stop(&self, symbols: &[&str]) -> Option<EntryStop> {
        let Some(opened) = &self.gate else { return Some(EntryStop::Stopped) };
        let stale: Vec<String> =
            symbols.iter().filter(|s| opened.stale.iter().any(|t| t == *s)).map(|s| s.to_string()).collect();
        if opened.data_error {
            Some(EntryStop::NoMarketData)
        } else if self.conflict_seen {
            Some(EntryStop::ConflictSeen)
        } else if self.ledger_failure.is_some() {
            Some(EntryStop::LedgerRefused)
        } else if !self.unrecorded.is_empty() {
            Some(EntryStop::UnrecordedHeld)
        } else if !stale.is_empty() {
            Some(EntryStop::StaleData(stale))
        } else {
            None
        }
    }

    pub fn orders_last_minute(&mut self, now: Timestamp) -> usize {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= SignedDuration::from_mins(1)) {
            self.sent.pop_front();
        }
        self.sent.len()
    }

    /// Sends an entry: the one way an entry goes out. The entry gate is asked first, at this very
    /// moment, for the entry's symbol (`entry_stop`); past it, the rules the position opens with
    /// are stored (kept in case the bot or the symbol leaves the configuration while it is held;
    /// no rules stored, no entry), then the order is numbered, recorded and sent (`send`).
    /// `Ok(Err(stop))`: the gate stopped it, and nothing was written or sent.
    pub fn send_entry(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        spec: &OrderSpec,
        rules: Option<&PositionRules>,
        now: Timestamp,
    ) -> Result<Result<Sent, EntryStop>, StateError> {
        if let Some(stop) = self.entry_stop(&[spec.symbol.as_str()]) {
            return Ok(Err(stop));
        }
        if let Some(rules) = rules {
            state.put_position_rules(&spec.bot, &spec.symbol, rules, now)?;
        }
        self.send(state, broker, spec, now).map(Ok)
    }

    /// Numbers the order, records it (durably, with its legs), sends it, records the answer and
    /// logs the outcome. An exit the ledger cannot record goes out all the same, under an id
    /// derived from what it closes (`send_unrecorded`); an entry does not. A write that fails
    /// after the send is noted (`take_ledger_failure`), never a reason to stop the other exits.
    fn send(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        spec: &OrderSpec,
        now: Timestamp,
    ) -> Result<Sent, StateError> {
        let new = new_order(spec, now);
        let client_order_id = match state.record_order(&new) {
            Ok(id) => id,
            // (A protective stop is not: it would rest unrecorded, and the daemon's own exits
            // must not wait on it. It is placed once the ledger takes writes again.)
            Err(e) if spec.intent == Intent::Exit && spec.rule != Some(BROKER_STOP) => {
                return Ok(self.send_unrecorded(state, broker, spec, new, e, now));
            }
            Err(e) => return Err(e),
        };
        self.sent.push_back(now);
        let answer = broker.submit_order(&request(spec, &client_order_id));
        Ok(self.answered(state, spec, client_order_id, answer, None, now))
    }

    /// Sends an exit the ledger could not record (disk full, read-only, I/O error: `error`) under
    /// `ClientOrderId::derived` from the positions it closes — so deciding it again, now or after
    /// a restart on the same ledger, sends the same id, which Alpaca refuses as a duplicate and
    /// `submit_order` resolves to the first order only if it matches — and holds it in memory
    /// until the ledger takes writes again (`flush_unrecorded`).
    fn send_unrecorded(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        spec: &OrderSpec,
        order: NewOrder,
        error: StateError,
        now: Timestamp,
    ) -> Sent {
        self.ledger_failed(&error);
        let (closes, date) = closes_key(state, spec, now);
        // Each refusal moves to the next attempt (a refused id is spent); an unknown answer is
        // sent again under the same id, which cannot double it.
        self.unrecorded.retain(|u| !(u.closes == closes && matches!(u.answer, Answer::Unknown)));
        let attempt = 1 + self.unrecorded.iter().filter(|u| u.closes == closes).count() as u64;
        let client_order_id = ClientOrderId::derived(&spec.bot, date, &closes, attempt).text();
        event!(
            Error,
            "order_unrecorded",
            bot = spec.bot.as_str(),
            symbol = spec.symbol.as_str(),
            client_order_id = client_order_id.as_str(),
            intent = spec.intent.as_str(),
            detail = format!(
                "the ledger takes no writes ({error}): the exit goes out under an id derived from what it closes, \
                 and is recorded once the ledger takes writes again"
            ),
        );
        self.sent.push_back(now);
        let request = request(spec, &client_order_id);
        let answer = broker.submit_order(&request);
        let held =
            Unrecorded { client_order_id: client_order_id.clone(), closes, order, request, answer: Answer::Unknown };
        self.answered(state, spec, client_order_id, answer, Some(held), now)
    }

    /// Books the broker's answer to a send — in the ledger, or for an order the ledger could not
    /// record (`held`) in memory — logs it and says what became of the order.
    fn answered(
        &mut self,
        state: &mut State,
        spec: &OrderSpec,
        client_order_id: String,
        answer: Result<Order, BrokerError>,
        held: Option<Unrecorded>,
        now: Timestamp,
    ) -> Sent {
        let (qty, notional) = amount_text(spec.amount);
        let recorded = held.is_none();
        let (sent, kept) = match answer {
            Ok(order) => {
                // The answer may carry fills already (a market order filled at once): booked
                // here, and logged as `fill` events like those a follow-up finds.
                let booked = match recorded.then(|| record_report(state, &client_order_id, &order, Dec::ZERO, now)) {
                    Some(Ok(booked)) => booked,
                    Some(Err(e)) => {
                        self.ledger_failed(&e);
                        Booked::default()
                    }
                    None => Booked::default(),
                };
                event!(
                    Info,
                    "order_submitted",
                    bot = spec.bot.as_str(),
                    symbol = spec.symbol.as_str(),
                    side = spec.side.as_str(),
                    qty = qty.as_deref(),
                    notional = notional.as_deref(),
                    "type" = spec.order_type.as_str(),
                    client_order_id = client_order_id.as_str(),
                    intent = spec.intent.as_str(),
                    rule = spec.rule,
                );
                log_fills(&booked.fills, &client_order_id);
                self.note_waiting(&spec.bot, &spec.symbol, &client_order_id, order.filled_qty, booked.waiting);
                (Sent::Accepted { client_order_id }, Answer::Placed(Box::new(order)))
            }
            Err(error @ (BrokerError::Transient { .. } | BrokerError::BadResponse { .. })) => {
                if recorded
                    && let Err(e) = state.update_order_status(&client_order_id, &RecordStatus::Unknown, None, now)
                {
                    self.ledger_failed(&e);
                }
                event!(
                    Warn,
                    "order_unknown",
                    bot = spec.bot.as_str(),
                    symbol = spec.symbol.as_str(),
                    client_order_id = client_order_id.as_str(),
                    detail = error.to_string(),
                );
                (Sent::Unknown { client_order_id }, Answer::Unknown)
            }
            Err(BrokerError::Conflict { broker_order_id, detail, .. }) => {
                let ours = Ours { bot: &spec.bot, symbol: &spec.symbol, client_order_id: &client_order_id };
                if let Err(e) = self.record_conflict(state, &ours, &broker_order_id, &detail, recorded, now) {
                    self.ledger_failed(&e);
                }
                (Sent::Conflict { client_order_id }, Answer::Refused)
            }
            Err(error) => {
                if recorded
                    && let Err(e) = state.update_order_status(&client_order_id, &RecordStatus::Rejected, None, now)
                {
                    self.ledger_failed(&e);
                }
                self.refused += 1;
                event!(
                    Warn,
                    "order_rejected",
                    bot = spec.bot.as_str(),
                    symbol = spec.symbol.as_str(),
                    client_order_id = client_order_id.as_str(),
                    intent = spec.intent.as_str(),
                    reason = error.to_string(),
                );
                crate::services::notify::send(crate::services::notify::Note {
                    event: "order_rejected",
                    title: format!("Order refused: {} {}", spec.bot, spec.symbol),
                    text: error.to_string(),
                });
                (Sent::Refused { client_order_id, error }, Answer::Refused)
            }
        };
        if let Some(mut held) = held {
            held.answer = kept;
            self.unrecorded.push(held);
        }
        sent
    }

    /// Notes that the ledger refused a write; the orchestrator takes it (`take_ledger_failure`)
    /// and halts on it, in memory if need be.
    pub fn ledger_failed(&mut self, e: &StateError) {
        if self.ledger_failure.is_none() {
            self.ledger_failure = Some(e.to_string());
        }
    }

    /// The first write the ledger refused since the last call, if any.
    pub fn take_ledger_failure(&mut self) -> Option<String> {
        self.ledger_failure.take()
    }

    /// Records the orders sent while the ledger took no writes, oldest first, each with the
    /// broker's last answer (which books what filled); stops at the first that still fails.
    fn flush_unrecorded(&mut self, state: &mut State, now: Timestamp) -> Result<(), StateError> {
        while let Some(u) = self.unrecorded.first() {
            state.record_order_as(&u.client_order_id, &u.order)?;
            let deltas = match &u.answer {
                Answer::Placed(o) => record_report(state, &u.client_order_id, o, Dec::ZERO, now)?.fills,
                Answer::Unknown => {
                    state.update_order_status(&u.client_order_id, &RecordStatus::Unknown, None, now)?;
                    Vec::new()
                }
                Answer::Refused => {
                    state.update_order_status(&u.client_order_id, &RecordStatus::Rejected, None, now)?;
                    Vec::new()
                }
            };
            event!(
                Warn,
                "order_recorded_late",
                bot = u.order.bot.as_str(),
                symbol = u.order.symbol.as_str(),
                client_order_id = u.client_order_id.as_str(),
                detail = "sent while the ledger took no writes; recorded now, and followed like any other",
            );
            log_fills(&deltas, &u.client_order_id);
            self.unrecorded.remove(0);
        }
        Ok(())
    }

    /// Asks the broker again about the orders held unrecorded that it had not finished, so a
    /// cancelled one stops holding back the next exit.
    fn refresh_unrecorded(&mut self, broker: &mut dyn Broker) {
        for u in &mut self.unrecorded {
            if let Answer::Placed(o) = &u.answer
                && !o.status.is_final()
                && let Ok(Some(fresh)) = broker.order_by_client_id(&u.client_order_id)
                && order_mismatch(&u.request, &fresh).is_none()
            {
                u.answer = Answer::Placed(Box::new(fresh));
            }
        }
    }

    /// The broker holds a stranger under one of our client order ids. The record becomes
    /// `conflict` (final: ours was never placed, the stranger is never booked, cancelled or
    /// adopted), an `order_conflict` event is logged, and an `order_conflict` halt naming both
    /// orders (notified) stops entries until an operator resumes — this iteration's too.
    fn record_conflict(
        &mut self,
        state: &State,
        ours: &Ours,
        broker_order_id: &str,
        detail: &str,
        recorded: bool,
        now: Timestamp,
    ) -> Result<(), StateError> {
        self.conflict_seen = true;
        event!(
            Error,
            "order_conflict",
            bot = ours.bot,
            symbol = ours.symbol,
            client_order_id = ours.client_order_id,
            broker_order_id = broker_order_id,
            detail = detail,
        );
        if recorded {
            state.update_order_status(ours.client_order_id, &RecordStatus::Conflict, None, now)?;
        }
        let halt = Halt {
            reason: HaltReason::OrderConflict,
            detail: format!(
                "our order {} ({} {}) was not placed: the broker already holds its order {broker_order_id} under that id, \
                 which is not ours ({detail}); nothing was booked. Check the account at the broker (a moved, restored \
                 or shared state database?), then `trading-hydra resume`",
                ours.client_order_id, ours.bot, ours.symbol
            ),
            since: now,
            until: None,
        };
        crate::services::notify::announce(halt_store::set(state, &halt)?);
        Ok(())
    }

    /// Follows every unfinished order of ours to the broker's view of it: fills move the owned
    /// positions; an order found under our id that is not ours is a conflict; orders the broker
    /// says it never heard of are abandoned after a grace period; entries open too long are
    /// cancelled. One request for the open orders, one per order that left them. A failed lookup
    /// leaves that order as it was and the others are still followed; the first failure is
    /// returned, so the iteration counts as unsure.
    pub fn sync_orders(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        cfg: &Config,
        now: Timestamp,
    ) -> Result<(), ExecError> {
        self.conflict_seen = false;
        // Exits sent while the ledger took no writes are recorded first, so they are followed
        // below like any other; while it still takes none, the broker is asked about them.
        let mut failed = None;
        if let Err(e) = self.flush_unrecorded(state, now) {
            self.refresh_unrecorded(broker);
            failed = Some(ExecError::State(e));
        }
        let unfinished = state.unfinished_orders()?;
        if unfinished.is_empty() {
            return failed.map_or(Ok(()), Err);
        }
        let open: BTreeMap<String, _> =
            broker.open_orders()?.into_iter().map(|o| (o.client_order_id.clone(), o)).collect();
        let entry_timeout = SignedDuration::from_secs(cfg.settings.risk.entry_order_timeout_seconds as i64);
        for rec in unfinished.iter() {
            match self.follow(state, broker, rec, open.get(&rec.client_order_id), entry_timeout, now) {
                Ok(()) => {}
                Err(e @ ExecError::State(_)) => return Err(failed.unwrap_or(e)),
                Err(e @ ExecError::Broker(_)) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// How many orders the broker refused since the process started.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Whether `client_order_id` is an exit sent while the ledger took no writes, held in memory
    /// until it is recorded: the broker has it and the ledger does not, on purpose.
    pub fn holds_unrecorded(&self, client_order_id: &str) -> bool {
        self.unrecorded.iter().any(|u| u.client_order_id == client_order_id)
    }

    /// Logs `fill_unpriced` once for an order whose report carries a fill that could not be
    /// booked yet (`Booked::waiting`), and forgets it once a report is whole again.
    fn note_waiting(&mut self, bot: &str, symbol: &str, client_order_id: &str, filled_qty: Option<Dec>, waiting: bool) {
        if !waiting {
            self.unpriced.remove(client_order_id);
        } else if self.unpriced.insert(client_order_id.to_string()) {
            event!(
                Warn,
                "fill_unpriced",
                bot = bot,
                symbol = symbol,
                client_order_id = client_order_id,
                filled_qty = filled_qty.map_or_else(|| "unknown".to_string(), |f| f.to_string()),
                detail = "the broker reports a fill that cannot be believed — without its price, at a price of zero or \
                          below, without its filled quantity, or more filled than ordered (or, for a spread, without \
                          its legs' fills): nothing of it booked yet, the order kept in flight and asked again every \
                          iteration",
            );
        }
    }

    /// One step of `sync_orders` for one unfinished order (`listed`: the broker's open order
    /// under its id, if any).
    fn follow(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        rec: &OrderRecord,
        listed: Option<&Order>,
        entry_timeout: SignedDuration,
        now: Timestamp,
    ) -> Result<(), ExecError> {
        let report = match listed {
            Some(o) => Some(o.clone()),
            None => broker.order_by_client_id(&rec.client_order_id)?,
        };
        // `None` is Alpaca's own word that it has no such order: any other answer (an HTML 404, a
        // 5xx, a timeout) was an error above, and the order stays as it is.
        let Some(o) = report else {
            if now.duration_since(rec.created_at) >= ABANDON_AFTER {
                state.update_order_status(&rec.client_order_id, &RecordStatus::Abandoned, None, now)?;
                event!(
                    Warn,
                    "reconcile",
                    bot = rec.bot.as_str(),
                    symbol = rec.symbol.as_str(),
                    client_order_id = rec.client_order_id.as_str(),
                    detail = "recorded but unknown to the broker: abandoned, not re-sent",
                );
            }
            return Ok(());
        };
        if let Some(detail) = not_ours(state, rec, &o)? {
            let ours = Ours { bot: &rec.bot, symbol: &rec.symbol, client_order_id: &rec.client_order_id };
            self.record_conflict(state, &ours, &o.id, &detail, true, now)?;
            return Ok(());
        }
        // Nothing new (a protective stop resting for hours, say): no write, so a quiet iteration
        // stays without one.
        let unchanged = o.legs.is_empty()
            && rec.broker_order_id.as_deref() == Some(o.id.as_str())
            && rec.status == RecordStatus::Broker(o.status.clone())
            && o.filled_qty == Some(rec.filled_qty);
        let booked = if unchanged {
            Booked::default()
        } else {
            record_report(state, &rec.client_order_id, &o, rec.filled_qty, now)?
        };
        let deltas = booked.fills;
        log_fills(&deltas, &rec.client_order_id);
        if is_protective(rec) && !deltas.is_empty() {
            // The position's resting stop did its job: its fill is the position's exit.
            let qty: Dec = deltas.iter().fold(Dec::ZERO, |a, d| a.checked_add(d.qty.abs()).unwrap_or(a));
            event!(
                Warn,
                "protection_filled",
                bot = rec.bot.as_str(),
                symbol = rec.symbol.as_str(),
                qty = qty.to_string(),
                price = deltas[0].price.to_f64(),
                client_order_id = rec.client_order_id.as_str(),
            );
        }
        self.note_waiting(&rec.bot, &rec.symbol, &rec.client_order_id, o.filled_qty, booked.waiting);
        let stale_entry = rec.intent == Intent::Entry && now.duration_since(rec.created_at) >= entry_timeout;
        if stale_entry && !o.status.is_final() {
            cancel_ours(broker, rec, &o.id, "entry_timeout")?;
        }
        Ok(())
    }

    /// Compares every position we own with what the broker holds. A split the broker applied
    /// (`corporate_action::split_ratio`: the count changed by a ratio, the average price by its
    /// inverse, the cost kept) re-bases the position, its best price and its resting stop
    /// (`corporate_action` event) instead of reading as a loss. Otherwise a position closed by hand
    /// is no longer ours and a smaller one caps what we manage; more at the broker is not ours
    /// (`status` shows it unmanaged). A position with an entry or exit in flight waits; one whose
    /// protective stop rests is capped only once that stop is read back unfilled (its own fill is
    /// the follow's to book).
    pub fn reconcile(&mut self, state: &mut State, broker: &mut dyn Broker, now: Timestamp) -> Result<(), ExecError> {
        // Asked even when we own nothing: `status` shows the unmanaged positions from this picture.
        let positions = broker.positions()?;
        // What the broker held at the last reconcile: a split shows against it.
        let before: BTreeMap<String, (Dec, Dec)> =
            state.broker_positions()?.into_iter().map(|r| (r.symbol, (r.qty, r.avg_entry_price))).collect();
        let snapshot: Vec<BrokerPositionRow> = positions
            .iter()
            .map(|p| BrokerPositionRow {
                symbol: p.symbol.clone(),
                qty: p.qty,
                avg_entry_price: p.avg_entry_price,
                current_price: p.current_price,
            })
            .collect();
        state.replace_broker_positions(&snapshot, now)?;
        let owned = state.owned_positions()?;
        if owned.is_empty() {
            return Ok(());
        }
        let held: BTreeMap<String, (Dec, Dec)> =
            positions.into_iter().map(|p| (p.symbol, (p.qty, p.avg_entry_price))).collect();
        // Positions with an entry or exit in flight wait; a multi-leg order keeps all its legs
        // waiting. A resting protective stop is no reason to wait.
        let unfinished = state.unfinished_orders()?;
        let mut busy: BTreeSet<(String, String)> = BTreeSet::new();
        for o in unfinished.iter().filter(|o| !is_protective(o)) {
            for leg in state.order_legs(&o.client_order_id)? {
                busy.insert((o.bot.clone(), leg.symbol));
            }
            busy.insert((o.bot.clone(), o.symbol.clone()));
        }
        for p in owned.iter() {
            let at_broker = held.get(&p.symbol).copied();
            if let Some(after) = at_broker
                && let Some(split) = [before.get(&p.symbol).copied(), Some((p.qty, p.avg_entry_price))]
                    .into_iter()
                    .flatten()
                    .find_map(|b| corporate_action::split_ratio(b, after).map(|s| (s, b)))
            {
                rebase_for_split(state, p, &p.symbol, split, after, now)?;
                continue;
            }
            if busy.contains(&(p.bot.clone(), p.symbol.clone())) {
                continue;
            }
            let at_broker = at_broker.map_or(Dec::ZERO, |(q, _)| q);
            let same_side = !at_broker.is_zero() && at_broker.is_negative() == p.qty.is_negative();
            let keep = if same_side { p.qty.abs().min(at_broker.abs()) } else { Dec::ZERO };
            if keep == p.qty.abs() {
                continue;
            }
            // Gone from the broker: a stock that moved to a new ticker (often with a reverse
            // split) follows it — one new holding, owned by no bot and not there at the last
            // reconcile, that the old one explains whole. Two such are not guessed between.
            if at_broker.is_zero() && AssetClass::of(&p.symbol) == AssetClass::UsEquity {
                let was = before.get(&p.symbol).copied().unwrap_or((p.qty, p.avg_entry_price));
                let moved: Vec<(&String, corporate_action::Split, (Dec, Dec))> = held
                    .iter()
                    .filter(|(s, _)| !before.contains_key(*s) && !owned.iter().any(|o| o.symbol == **s))
                    .filter(|(s, _)| AssetClass::of(s) == AssetClass::UsEquity)
                    .filter_map(|(s, after)| corporate_action::symbol_change(was, *after).map(|sp| (s, sp, *after)))
                    .collect();
                if let [(to, split, after)] = moved.as_slice() {
                    rebase_for_split(state, p, to, (*split, was), *after, now)?;
                    continue;
                }
            }
            let guard = unfinished.iter().find(|o| is_protective(o) && o.bot == p.bot && o.symbol == p.symbol);
            if let Some(g) = guard {
                let seen = broker.order_by_client_id(&g.client_order_id)?;
                if seen.is_none_or(|o| o.status.is_final() || o.filled_qty != Some(Dec::ZERO)) {
                    continue;
                }
            }
            let signed = if p.qty.is_negative() { Dec::ZERO.checked_sub(keep).unwrap_or(Dec::ZERO) } else { keep };
            state.set_owned_qty(&p.bot, &p.symbol, signed, now)?;
            let detail = if keep.is_zero() {
                format!("the broker holds {at_broker}: closed outside the daemon, no longer managed")
            } else {
                format!("the broker holds {at_broker}: managed quantity capped from {} to {signed}", p.qty)
            };
            event!(Warn, "reconcile", bot = p.bot.as_str(), symbol = p.symbol.as_str(), detail = detail.as_str());
        }
        Ok(())
    }

    /// Cancels our open entry orders, one by one (never "cancel all": the user's own orders stay).
    /// A cancel that fails does not stop the others; the first failure is returned.
    pub fn cancel_entries(&mut self, state: &mut State, broker: &mut dyn Broker) -> Result<u32, ExecError> {
        let mut n = 0;
        let mut failed = None;
        for rec in state.unfinished_orders()?.iter().filter(|o| o.intent == Intent::Entry) {
            let Some(id) = rec.broker_order_id.as_deref() else { continue };
            match cancel_ours(broker, rec, id, "halt") {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(n), Err)
    }

    /// Sends a market exit for each owned position that has no exit in flight. The legs of an
    /// option spread close together, as one multi-leg order, so no short leg is ever left alone.
    /// Options trade in the regular session only: while the stock market is shut
    /// (`market_open` false) an option position is not sent but kept due, and closed at the open
    /// (`close_due_at_open`) — even if the halt that asked has lifted by then.
    pub fn flatten(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        rule: &'static str,
        market_open: bool,
        now: Timestamp,
    ) -> Result<u32, StateError> {
        let in_flight = self.exits_in_flight(state)?;
        let owned = state.owned_positions()?;
        let mut spreads: BTreeMap<(String, String), Vec<&OwnedPosition>> = BTreeMap::new();
        let mut specs = Vec::new();
        for p in owned.iter() {
            match OccSymbol::parse(&p.symbol) {
                Some(OccSymbol { root, .. }) => spreads.entry((p.bot.clone(), root)).or_default().push(p),
                None => specs.push(single_exit(p, rule)),
            }
        }
        for ((bot, root), legs) in spreads {
            if !market_open {
                self.due_at_open.insert((bot, root), rule);
                continue;
            }
            specs.extend(close_legs(&bot, &root, &legs, rule));
        }
        let mut n = 0;
        for spec in specs {
            if in_flight.contains(&(spec.bot.clone(), spec.symbol.clone()))
                || self.exit_waits(&spec.bot, &spec.symbol, now)
            {
                continue;
            }
            for sent in self.send_exit(state, broker, &spec, now)? {
                if let Sent::Accepted { .. } = sent {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// At the open: closes the option positions a flatten found due while the market was shut
    /// (those still owned; a spread's legs as one order). Each leaves the list once its close is
    /// sent or its position is gone; one refused waits out the usual backoff.
    pub fn close_due_at_open(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        now: Timestamp,
        report: &mut StepReport,
    ) -> Result<(), StateError> {
        if self.due_at_open.is_empty() {
            return Ok(());
        }
        let owned = state.owned_positions()?;
        let in_flight = self.exits_in_flight(state)?;
        for ((bot, root), rule) in std::mem::take(&mut self.due_at_open) {
            let legs: Vec<&OwnedPosition> = owned
                .iter()
                .filter(|p| p.bot == bot && OccSymbol::parse(&p.symbol).is_some_and(|o| o.root == root))
                .collect();
            let Some(spec) = close_legs(&bot, &root, &legs, rule) else { continue };
            if in_flight.contains(&(spec.bot.clone(), spec.symbol.clone())) {
                continue;
            }
            if self.exit_waits(&spec.bot, &spec.symbol, now) {
                self.due_at_open.insert((bot, root), rule);
                continue;
            }
            let sent = self.send_exit(state, broker, &spec, now)?;
            if sent.iter().all(|s| matches!(s, Sent::Refused { .. })) {
                self.due_at_open.insert((bot, root), rule);
            }
            for s in &sent {
                count(report, s);
            }
        }
        Ok(())
    }

    /// Sends an exit and acts on a refusal: Alpaca's "insufficient qty available" re-reads the
    /// broker's position and sells at once what is really there and free (the ledger capped to
    /// what the broker holds: a coin's fee taken in the coin, a position shrunk by hand); a
    /// wash-trade refusal cancels our own resting orders on the other side, so the next try (after
    /// the backoff) goes through. Returns what became of each send (one, or two).
    pub fn send_exit(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        spec: &OrderSpec,
        now: Timestamp,
    ) -> Result<Vec<Sent>, StateError> {
        // One sell at a time: the position's resting protective order goes first.
        let Some(spec) = self.clear_protection(state, broker, spec, now)? else { return Ok(Vec::new()) };
        let spec = &spec;
        let sent = self.send(state, broker, spec, now)?;
        self.exit_outcome(spec, &sent, now);
        let Sent::Refused { error, .. } = &sent else { return Ok(vec![sent]) };
        let smaller = match exit_refusal(error) {
            ExitRefusal::InsufficientQty => self.sellable(state, broker, spec, now),
            ExitRefusal::WashTrade => {
                self.cancel_opposite(state, broker, spec);
                None
            }
            ExitRefusal::StopThroughMarket | ExitRefusal::Other => None,
        };
        let Some(smaller) = smaller else { return Ok(vec![sent]) };
        let again = self.send(state, broker, &smaller, now)?;
        self.exit_outcome(&smaller, &again, now);
        Ok(vec![sent, again])
    }

    /// Before the daemon sells a position itself: cancels its resting protective order and
    /// reads it back. `Some` (the exit, capped to what is still owned) once none rests — or once
    /// the broker gave no answer about it (its cancel or read-back timed out, its own answer was
    /// lost): then the exit goes all the same, because Alpaca refuses a sell of what a resting
    /// stop still holds (403 held quantity), so the two can never both sell, and a slow broker
    /// must not leave a position with neither a stop nor its exit (`protection_unconfirmed`).
    /// `None` to send nothing now — the broker answered that the stop still works (its cancel
    /// pending: tried again next iteration), the order under its id is not ours, or the stop
    /// filled meanwhile and the position is closed already.
    fn clear_protection(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        spec: &OrderSpec,
        now: Timestamp,
    ) -> Result<Option<OrderSpec>, StateError> {
        if spec.rule == Some(BROKER_STOP) || !spec.legs.is_empty() {
            return Ok(Some(spec.clone()));
        }
        let guards: Vec<OrderRecord> = state
            .unfinished_orders()?
            .iter()
            .filter(|o| is_protective(o) && o.bot == spec.bot && o.symbol == spec.symbol)
            .cloned()
            .collect();
        if guards.is_empty() {
            return Ok(Some(spec.clone()));
        }
        // Sold by a stop whose fill the ledger could not book (a full disk).
        let mut unbooked = Dec::ZERO;
        // A stop the broker said nothing about: its answer was lost when it was placed, or its
        // cancel or read-back got no answer now.
        let mut unanswered: Option<&OrderRecord> = None;
        for g in &guards {
            let Some(id) = g.broker_order_id.as_deref() else {
                unanswered = Some(g);
                continue;
            };
            if cancel_ours(broker, g, id, "before_exit").is_err() {
                unanswered = Some(g);
                continue;
            }
            let o = match broker.order_by_client_id(&g.client_order_id) {
                Ok(Some(o)) => o,
                Ok(None) | Err(_) => {
                    unanswered = Some(g);
                    continue;
                }
            };
            // Never book a stranger (the sync marks it a conflict).
            if not_ours(state, g, &o)?.is_some() {
                return Ok(None);
            }
            // Still working, or final with what it sold not said: read again next iteration.
            let Some(filled) = o.filled_qty.filter(|_| o.status.is_final()) else { return Ok(None) };
            // What the stop sold is no longer ours to sell — whether or not the ledger can book
            // it now (on a full disk the broker's word caps the exit).
            match record_report(state, &g.client_order_id, &o, g.filled_qty, now) {
                Ok(booked) => log_fills(&booked.fills, &g.client_order_id),
                Err(e) => {
                    self.ledger_failed(&e);
                    let sold = filled.checked_sub(g.filled_qty).unwrap_or(Dec::ZERO).max(Dec::ZERO);
                    unbooked = unbooked.checked_add(sold).unwrap_or(unbooked);
                }
            }
        }
        if let Some(g) = unanswered {
            event!(
                Warn,
                "protection_unconfirmed",
                bot = g.bot.as_str(),
                symbol = g.symbol.as_str(),
                client_order_id = g.client_order_id.as_str(),
                detail = "the broker did not answer about the resting stop: the exit goes all the same (Alpaca refuses \
                          a sell of what a resting stop still holds, so they cannot both sell)",
            );
        }
        let owned = state.owned_positions()?;
        let held =
            owned.iter().find(|p| p.bot == spec.bot && p.symbol == spec.symbol).map_or(Dec::ZERO, |p| p.qty.abs());
        let left = held.checked_sub(unbooked).unwrap_or(Dec::ZERO).max(Dec::ZERO);
        let Amount::Qty(asked) = spec.amount else { return Ok(Some(spec.clone())) };
        if left.is_zero() {
            return Ok(None);
        }
        Ok(Some(OrderSpec { amount: Amount::Qty(asked.min(left)), ..spec.clone() }))
    }

    /// Replaces a resting protective order `g` by `want` (a higher stop): the replacing order is
    /// numbered and recorded first, then Alpaca's replace is asked for under its id; `g` becomes
    /// `replaced` once the broker took it. A refused replace leaves `g` as it was; a lost answer
    /// leaves the new record unknown, looked up like any order.
    fn replace_guard(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        g: &OrderRecord,
        want: &Protection,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let Some(old_id) = g.broker_order_id.as_deref() else { return Ok(()) };
        let spec = protective_spec(&g.bot, &g.symbol, want);
        let id = state.record_order(&new_order(&spec, now))?;
        let request =
            ReplaceRequest { client_order_id: id.clone(), stop_price: Some(want.stop), limit_price: want.limit };
        match broker.replace_order(old_id, &request) {
            Ok(o) => {
                record_report(state, &id, &o, Dec::ZERO, now)?;
                state.update_order_status(
                    &g.client_order_id,
                    &RecordStatus::Broker(OrderStatus::Replaced),
                    None,
                    now,
                )?;
                event!(
                    Info,
                    "protection_replaced",
                    bot = g.bot.as_str(),
                    symbol = g.symbol.as_str(),
                    client_order_id = id.as_str(),
                    replaces = g.client_order_id.as_str(),
                    stop_price = want.stop.to_string(),
                );
            }
            Err(e @ (BrokerError::Transient { .. } | BrokerError::BadResponse { .. })) => {
                state.update_order_status(&id, &RecordStatus::Unknown, None, now)?;
                event!(
                    Warn,
                    "order_unknown",
                    bot = g.bot.as_str(),
                    symbol = g.symbol.as_str(),
                    client_order_id = id.as_str(),
                    detail = e.to_string()
                );
            }
            Err(e) => {
                state.update_order_status(&id, &RecordStatus::Rejected, None, now)?;
                self.refused += 1;
                event!(
                    Info,
                    "order_rejected",
                    bot = g.bot.as_str(),
                    symbol = g.symbol.as_str(),
                    client_order_id = id.as_str(),
                    intent = "exit",
                    reason = format!("replacing the protective stop: {e}; it stays as it was"),
                );
            }
        }
        Ok(())
    }

    /// Keeps the protective orders of the bots that rest them (`exits.broker_stop`, on by
    /// default): places one for each of their positions that has none (recorded before it is
    /// sent, like any order), and cancels one whose position is gone or whose quantity no longer
    /// matches (the position was capped) — the next iteration places the right one. A position
    /// with another exit in flight, its entry still working, or waiting after a refusal, is left
    /// to the daemon's watch for now.
    pub fn protect(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        bots: &[&dyn Bot],
        now: Timestamp,
        report: &mut StepReport,
    ) -> Result<(), StateError> {
        let unfinished = state.unfinished_orders()?;
        let guards: Vec<OrderRecord> = unfinished.iter().filter(|o| is_protective(o)).cloned().collect();
        let owned = state.owned_positions()?;
        for g in &guards {
            let held = owned.iter().find(|p| p.bot == g.bot && p.symbol == g.symbol).map(|p| p.qty.abs().to_string());
            if held.as_deref() != g.qty.as_deref()
                && let Some(id) = g.broker_order_id.as_deref()
            {
                let _ = cancel_ours(broker, g, id, "protection_stale");
            }
        }
        // A trailing stop moves its resting order up (down, for a short) as the best price
        // does: replaced at most once a `REPLACE_EVERY`, and only by a step worth it.
        for bot in bots {
            let Some(pct) = bot.broker_stop_pct() else { continue };
            let Some(trail) = bot.trailing_stop_pct() else { continue };
            for g in
                guards.iter().filter(|g| g.bot == bot.id() && bot.watches(&g.symbol) && g.broker_order_id.is_some())
            {
                let Some(p) = owned.iter().find(|p| p.bot == g.bot && p.symbol == g.symbol) else { continue };
                let (Some(want), Some(now_at)) = (protection_for(p, pct, Some(trail)), g.stop_price.as_deref()) else {
                    continue;
                };
                let Ok(now_at) = now_at.parse::<Dec>() else { continue };
                let gain = (want.stop.to_f64() - now_at.to_f64()) / now_at.to_f64();
                let better = if want.side == Side::Sell { gain } else { -gain };
                let key = (g.bot.clone(), g.symbol.clone());
                let due = self.replaced_at.get(&key).is_none_or(|t| now.duration_since(*t) >= REPLACE_EVERY);
                if better >= REPLACE_MIN_STEP && due && Some(want.qty.to_string()) == g.qty {
                    self.replaced_at.insert(key, now);
                    if let Err(e) = self.replace_guard(state, broker, g, &want, now) {
                        self.ledger_failed(&e);
                    }
                }
            }
        }
        // Other exits in flight (the daemon's own, or one held unrecorded) go first.
        let in_flight = self.exits_in_flight(state)?;
        // An entry still working on the symbol: its stop waits for it (Alpaca refuses a resting
        // sell stop opposite an open buy as a potential wash trade), the daemon's watch meanwhile.
        let entering: BTreeSet<(String, String)> = unfinished
            .iter()
            .filter(|o| o.intent == Intent::Entry)
            .map(|o| (o.bot.clone(), o.symbol.clone()))
            .collect();
        for bot in bots {
            let Some(pct) = bot.broker_stop_pct() else { continue };
            for p in owned.iter().filter(|p| p.bot == bot.id() && bot.watches(&p.symbol)) {
                let key = (p.bot.clone(), p.symbol.clone());
                if guards.iter().any(|g| g.bot == p.bot && g.symbol == p.symbol)
                    || in_flight.contains(&key)
                    || entering.contains(&key)
                    || self.exit_waits(&p.bot, &p.symbol, now)
                    || self.stop_waits(&p.bot, &p.symbol, now)
                {
                    continue;
                }
                let Some(guard) = protection_for(p, pct, bot.trailing_stop_pct()) else { continue };
                let spec = protective_spec(&p.bot, &p.symbol, &guard);
                // The ledger takes no writes: no stop is placed unrecorded; the exits go on.
                if let Err(e) = self.place_stop(state, broker, p, &spec, now, report) {
                    self.ledger_failed(&e);
                }
            }
        }
        Ok(())
    }

    /// Places one protective stop, and acts on what a refusal means: a stop the market is
    /// already through means the position's stop is due, so it is sold now at market (rule
    /// `stop_loss`, `protection_through_market`); a stop refused for held quantity (a coin's fee
    /// taken in the coin, a position shrunk by hand) rests again at what the broker holds free,
    /// the ledger capped to it (`sellable`); any other refusal waits out its backoff, and one that
    /// lasts a minute is `protection_stuck`. None of it holds back an exit of the position.
    fn place_stop(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        p: &OwnedPosition,
        spec: &OrderSpec,
        now: Timestamp,
        report: &mut StepReport,
    ) -> Result<(), StateError> {
        let sent = self.send(state, broker, spec, now)?;
        self.exit_outcome(spec, &sent, now);
        count(report, &sent);
        let Sent::Refused { error, .. } = &sent else { return Ok(()) };
        match exit_refusal(error) {
            ExitRefusal::StopThroughMarket => {
                event!(
                    Warn,
                    "protection_through_market",
                    bot = p.bot.as_str(),
                    symbol = p.symbol.as_str(),
                    stop_price = spec.stop_price.map(|s| s.to_string()),
                    detail =
                        format!("the market is through the stop, so the stop is due: sold now at market ({error})"),
                );
                let exit = single_exit(p, STOP_DUE);
                for sent in self.send_exit(state, broker, &exit, now)? {
                    count(report, &sent);
                }
            }
            ExitRefusal::InsufficientQty => {
                if let Some(smaller) = self.sellable(state, broker, spec, now) {
                    let again = self.send(state, broker, &smaller, now)?;
                    self.exit_outcome(&smaller, &again, now);
                    count(report, &again);
                }
            }
            ExitRefusal::WashTrade | ExitRefusal::Other => {}
        }
        Ok(())
    }

    /// After an "insufficient qty available": the exit of `spec` resized to what the broker holds
    /// and open orders leave free, if that is something and less than was asked; the ledger's
    /// position capped to what the broker holds. `None` when there is nothing to sell now (it
    /// waits out the backoff) or the position could not be read.
    fn sellable(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        spec: &OrderSpec,
        now: Timestamp,
    ) -> Option<OrderSpec> {
        let Amount::Qty(asked) = spec.amount else { return None };
        if !spec.legs.is_empty() {
            return None;
        }
        let positions = broker.positions().ok()?;
        let found = positions.iter().find(|p| p.symbol == spec.symbol);
        // Only a position on the side we hold counts (an exit sells a long, buys back a short).
        let held = found.filter(|p| p.qty.is_negative() == (spec.side == Side::Buy)).map_or(Dec::ZERO, |p| p.qty.abs());
        let free = found.and_then(|p| p.qty_available).unwrap_or(held).min(held);
        if held < asked {
            let signed = if spec.side == Side::Buy { Dec::ZERO.checked_sub(held).unwrap_or(Dec::ZERO) } else { held };
            let detail = format!("the broker holds {held} of the {asked} on record: managed quantity capped");
            event!(Warn, "reconcile", bot = spec.bot.as_str(), symbol = spec.symbol.as_str(), detail = detail.as_str());
            if let Err(e) = state.set_owned_qty(&spec.bot, &spec.symbol, signed, now) {
                self.ledger_failed(&e);
            }
        }
        // Never more than asked, held or free; rounded down, so rounding never sells short.
        let places = if AssetClass::of(&spec.symbol) == AssetClass::UsOption { 0 } else { 9 };
        let qty = asked.min(free).round_down(places);
        if qty.is_zero() || qty.is_negative() || qty >= asked {
            return None;
        }
        event!(
            Warn,
            "exit_resized",
            bot = spec.bot.as_str(),
            symbol = spec.symbol.as_str(),
            asked = asked.to_string(),
            held = held.to_string(),
            available = free.to_string(),
            qty = qty.to_string(),
        );
        Some(OrderSpec { amount: Amount::Qty(qty), ..spec.clone() })
    }

    /// After a wash-trade refusal: cancels our own unfinished orders on the exit's symbol that
    /// stand on the other side (an entry still resting), one by one. Never another's order.
    fn cancel_opposite(&mut self, state: &State, broker: &mut dyn Broker, spec: &OrderSpec) {
        let Ok(unfinished) = state.unfinished_orders() else { return };
        for rec in unfinished.iter().filter(|o| o.symbol == spec.symbol && o.side != spec.side) {
            if let Some(id) = rec.broker_order_id.as_deref() {
                let _ = cancel_ours(broker, rec, id, "wash_trade");
            }
        }
    }

    /// (bot, symbol) pairs with an exit order still in flight: in the ledger, or held unrecorded.
    /// A resting protective stop is no exit in flight: an exit of the daemon's own clears it
    /// first (`clear_protection`).
    pub fn exits_in_flight(&self, state: &State) -> Result<BTreeSet<(String, String)>, StateError> {
        let mut busy: BTreeSet<(String, String)> = state.exits_in_flight()?.into_iter().collect();
        busy.extend(
            self.unrecorded.iter().filter(|u| u.in_flight()).map(|u| (u.order.bot.clone(), u.order.symbol.clone())),
        );
        Ok(busy)
    }

    /// Whether the protective stop of `bot`'s `symbol` waits after a refusal.
    fn stop_waits(&self, bot: &str, symbol: &str, now: Timestamp) -> bool {
        self.refused_stops.get(&(bot.to_string(), symbol.to_string())).is_some_and(|r| now < r.next)
    }

    /// Whether the exit of `bot`'s `symbol` waits after a refusal.
    pub fn exit_waits(&self, bot: &str, symbol: &str, now: Timestamp) -> bool {
        self.refused_exits.get(&(bot.to_string(), symbol.to_string())).is_some_and(|r| now < r.next)
    }

    /// Forgets the refusals of exits whose position is gone: a refused exit's wait ends with its
    /// position (a spread's exit is named by its underlying), so a later position in the symbol
    /// starts with a clean count.
    pub fn forget_refusals_of_closed(&mut self, owned: &[OwnedPosition]) {
        let held = |(bot, symbol): &(String, String)| {
            owned.iter().any(|p| {
                p.bot == *bot && (p.symbol == *symbol || OccSymbol::parse(&p.symbol).is_some_and(|o| o.root == *symbol))
            })
        };
        self.refused_exits.retain(|key, _| held(key));
        self.refused_stops.retain(|key, _| held(key));
    }

    /// Keeps count of refused exits: each refusal doubles the wait before the next try (up to
    /// `EXIT_RETRY_MAX`); one still refused after `EXIT_STUCK_AFTER` is an `exit_stuck` event and
    /// a notification; one the broker took, or whose answer was lost, is forgotten.
    fn exit_outcome(&mut self, spec: &OrderSpec, sent: &Sent, now: Timestamp) {
        let key = (spec.bot.clone(), spec.symbol.clone());
        // A protective stop's refusals are counted apart, and alerted by its own name.
        let stop = spec.rule == Some(BROKER_STOP);
        let (book, name, what) = if stop {
            (&mut self.refused_stops, "protection_stuck", "Protective stop")
        } else {
            (&mut self.refused_exits, "exit_stuck", "Exit")
        };
        let Sent::Refused { error, .. } = sent else {
            book.remove(&key);
            return;
        };
        let r = book.entry(key).or_insert(RefusedExit { attempts: 0, first: now, next: now, notified: false });
        r.attempts += 1;
        let wait = EXIT_RETRY_FIRST.checked_mul(1 << r.attempts.saturating_sub(1).min(6)).unwrap_or(EXIT_RETRY_MAX);
        r.next = now.saturating_add(wait.min(EXIT_RETRY_MAX)).unwrap_or(now);
        if !r.notified && now.duration_since(r.first) >= EXIT_STUCK_AFTER {
            r.notified = true;
            let detail = format!("refused {} times since {}: {error}", r.attempts, clock::db_ts(r.first));
            let (bot, symbol) = (spec.bot.as_str(), spec.symbol.as_str());
            if stop {
                event!(Error, "protection_stuck", bot = bot, symbol = symbol, detail = detail.as_str());
            } else {
                event!(Error, "exit_stuck", bot = bot, symbol = symbol, detail = detail.as_str());
            }
            crate::services::notify::send(crate::services::notify::Note {
                event: name,
                title: format!("{what} refused for a minute: {} {}", spec.bot, spec.symbol),
                text: detail,
            });
        }
    }
}

/// One of our orders, as the conflict handling names it.
struct Ours<'a> {
    bot: &'a str,
    symbol: &'a str,
    client_order_id: &'a str,
}

/// Why the broker's `found`, under the client order id of our record `rec`, is not that order —
/// `None` when it is. With the broker's id on record (the broker answered our send) the order must
/// carry that id; without it (the answer was lost, or the process died after recording) it must
/// be what we recorded, field by field (`order_mismatch`).
/// Re-bases `p` for `split`, found between the broker's position `before` and `after` (in `to`,
/// its symbol now: a new ticker, or the same): the whole of what the broker now holds when the
/// daemon held all of it before (a reverse split's cash in lieu included), else the daemon's part
/// by the split, rounded down and never above what the broker holds. Logs `corporate_action`.
fn rebase_for_split(
    state: &State,
    p: &OwnedPosition,
    to: &str,
    (split, before): (corporate_action::Split, (Dec, Dec)),
    after: (Dec, Dec),
    now: Timestamp,
) -> Result<(), StateError> {
    let places = if p.qty.is_whole() { 0 } else { 9 };
    let was = Holding { qty: p.qty, avg_entry_price: p.avg_entry_price };
    let rebased = corporate_action::rebase(was, split, places);
    let qty = if before.0 == p.qty {
        Some(after.0)
    } else {
        rebased.map(|h| if h.qty.abs() > after.0.abs() { after.0 } else { h.qty })
    };
    let detail = match (qty, rebased) {
        (Some(qty), Some(h)) => {
            state.rebase_split(
                &p.bot,
                (&p.symbol, to),
                Holding { qty, avg_entry_price: h.avg_entry_price },
                split,
                now,
            )?;
            let renamed = if to == p.symbol { String::new() } else { format!(", now {to}") };
            format!(
                "a {split} split at the broker{renamed}: {} at {} re-based to {qty} at {}, with its best price, its \
                 exit rules and its orders in flight; nothing booked",
                p.qty, p.avg_entry_price, h.avg_entry_price
            )
        }
        _ => {
            state.set_owned_qty(&p.bot, &p.symbol, Dec::ZERO, now)?;
            format!(
                "a {split} split at the broker left less than one share of {}: paid in cash, no longer managed",
                p.qty
            )
        }
    };
    event!(
        Warn,
        "corporate_action",
        bot = p.bot.as_str(),
        symbol = p.symbol.as_str(),
        to = to,
        split = split.to_string(),
        detail = detail.as_str()
    );
    Ok(())
}

fn not_ours(state: &State, rec: &OrderRecord, found: &Order) -> Result<Option<String>, StateError> {
    if let Some(id) = &rec.broker_order_id {
        return Ok((found.id != *id).then(|| format!("broker id {} (ours {id})", found.id)));
    }
    let bad = |what: &'static str, detail: &str| StateError::BadRow { what, detail: detail.to_string() };
    let num = |what: &'static str, t: &Option<String>| {
        t.as_deref().map(|t| t.parse::<Dec>().map_err(|e| bad(what, &e.to_string()))).transpose()
    };
    let amount = match (num("orders.qty", &rec.qty)?, num("orders.notional", &rec.notional)?) {
        (Some(q), _) => Amount::Qty(q),
        (None, Some(n)) => Amount::Notional(n),
        (None, None) => return Err(bad("orders.qty", "neither qty nor notional")),
    };
    let order_type = rec.order_type;
    let mut legs = Vec::new();
    for l in state.order_legs(&rec.client_order_id)? {
        let position_intent = PositionIntent::parse(&l.position_intent)
            .ok_or_else(|| bad("order_legs.position_intent", &l.position_intent))?;
        legs.push(Leg { symbol: l.symbol, ratio_qty: l.ratio, position_intent });
    }
    let mut limit_price = num("orders.limit_price", &rec.limit_price)?;
    if limit_price.is_none() && matches!(order_type, OrderType::Limit | OrderType::StopLimit) {
        // Recorded before migration 9 stored limit prices: that one field cannot be checked.
        limit_price = found.limit_price;
    }
    let sent = OrderRequest {
        client_order_id: rec.client_order_id.clone(),
        symbol: rec.symbol.clone(),
        side: rec.side,
        amount,
        order_type,
        // Not recorded, and not compared.
        time_in_force: TimeInForce::Day,
        limit_price,
        stop_price: num("orders.stop_price", &rec.stop_price)?,
        extended_hours: false,
        legs,
    };
    Ok(order_mismatch(&sent, found))
}

/// What a broker's report on one of our orders booked (`record_report`).
#[derive(Debug, Default)]
struct Booked {
    /// The fills it moved positions by, each a `fill` event.
    fills: Vec<FillDelta>,
    /// The broker reports more filled than could be booked: a fill without its price, or a
    /// multi-leg order whose legs do not carry the parent's fill yet (or were left out). The
    /// order stays in flight and is asked again; `fill_unpriced` says so once.
    waiting: bool,
}

/// Books a broker's report on one of our orders (`booked_before`: what the ledger had booked of
/// it): a simple order moves its symbol's position, a multi-leg order each leg's.
fn record_report(
    state: &mut State,
    client_order_id: &str,
    o: &Order,
    booked_before: Dec,
    now: Timestamp,
) -> Result<Booked, StateError> {
    // A report is believed only when it is whole: the broker said what filled, not more than the
    // order's quantity; a report that is not books nothing and finishes nothing (the order stays
    // in flight, is read again, and `fill_unpriced` says so once).
    let Some(filled) = o.filled_qty.filter(|f| !f.is_negative() && o.qty.is_none_or(|q| *f <= q)) else {
        return Ok(Booked { fills: Vec::new(), waiting: true });
    };
    // A price of zero or below is no price: such a fill is not booked (never at 0).
    let priced = |p: Option<Dec>| p.filter(|p| *p > Dec::ZERO);
    // We sent legs: only legs move positions. An answer without them (an endpoint that does not
    // nest them) books nothing and finishes nothing — booking the parent's fill would invent a
    // position in the underlying.
    let sent_legs = !state.order_legs(client_order_id)?.is_empty();
    // When it filled, as the broker says, for the fills' record (never later than now: a clock
    // ahead of ours would date a fill in our future).
    let at = FillTime { booked: now, filled: o.filled_at.filter(|t| *t <= now) };
    if o.legs.is_empty() && !sent_legs {
        let price = priced(o.filled_avg_price);
        let delta = state.apply_order_report(client_order_id, &o.status, Some(&o.id), filled, price, at)?;
        let waiting = filled > booked_before && price.is_none();
        Ok(Booked { fills: delta.into_iter().collect(), waiting })
    } else {
        // A leg whose filled quantity is not said counts as nothing filled yet: the parent then
        // waits for its legs (`apply_leg_reports`).
        let legs: Vec<(String, Dec, Option<Dec>)> = o
            .legs
            .iter()
            .map(|l| (l.symbol.clone(), l.filled_qty.unwrap_or(Dec::ZERO), priced(l.filled_avg_price)))
            .collect();
        let booking = state.apply_leg_reports(client_order_id, &o.status, Some(&o.id), filled, &legs, at)?;
        Ok(Booked { fills: booking.fills, waiting: !booking.settled })
    }
}

/// Cancels one of our orders and logs `order_canceled` with `reason`; `false` when the broker
/// refused because the order was already filled or cancelled meanwhile (the next sync sees it).
fn cancel_ours(
    broker: &mut dyn Broker,
    rec: &OrderRecord,
    broker_order_id: &str,
    reason: &str,
) -> Result<bool, ExecError> {
    match broker.cancel_order(broker_order_id) {
        Ok(()) => {
            event!(
                Info,
                "order_canceled",
                bot = rec.bot.as_str(),
                client_order_id = rec.client_order_id.as_str(),
                reason = reason
            );
            Ok(true)
        }
        Err(BrokerError::Rejected { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A market exit of all of one owned position.
fn single_exit(p: &OwnedPosition, rule: &'static str) -> OrderSpec {
    OrderSpec {
        bot: p.bot.clone(),
        symbol: p.symbol.clone(),
        side: if p.qty.is_negative() { Side::Buy } else { Side::Sell },
        amount: Amount::Qty(p.qty.abs()),
        order_type: OrderType::Market,
        limit_price: None,
        stop_price: None,
        time_in_force: if AssetClass::of(&p.symbol) == AssetClass::Crypto {
            TimeInForce::Gtc
        } else {
            TimeInForce::Day
        },
        intent: Intent::Exit,
        rule: Some(rule),
        legs: Vec::new(),
        // A flatten is decided on the account, not on a price.
        ref_price: None,
    }
}

/// The legs a bot owns on one underlying, closed at market as one order: a multi-leg order of
/// 2 to 4 legs, or a plain order for a lone leg (closing a lone leg only reduces risk).
pub fn close_legs(bot: &str, root: &str, legs: &[&OwnedPosition], rule: &'static str) -> Option<OrderSpec> {
    if legs.len() == 1 {
        return Some(single_exit(legs[0], rule));
    }
    let (count, legs) = crate::bots::options::closing_legs(legs)?;
    Some(OrderSpec {
        bot: bot.into(),
        symbol: root.into(),
        side: Side::Buy,
        amount: Amount::Qty(count),
        order_type: OrderType::Market,
        limit_price: None,
        stop_price: None,
        time_in_force: TimeInForce::Day,
        intent: Intent::Exit,
        rule: Some(rule),
        legs,
        ref_price: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(data_error: bool, stale: &[&str]) -> StepReport {
        StepReport {
            data_error: data_error.then(|| "quotes: timed out".to_string()),
            stale: stale.iter().map(|s| s.to_string()).collect(),
            ..StepReport::default()
        }
    }

    /// A market buy of `qty` AAPL for `mom_AAPL`.
    fn aapl_buy(qty: i64) -> OrderSpec {
        OrderSpec {
            bot: "mom_AAPL".into(),
            symbol: "AAPL".into(),
            side: Side::Buy,
            amount: Amount::Qty(Dec::from_int(qty)),
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Day,
            intent: Intent::Entry,
            rule: None,
            legs: Vec::new(),
            ref_price: None,
        }
    }

    #[test]
    fn the_entry_gate_names_every_reason_and_stale_data_only_for_the_symbols_asked() {
        let mut orders = Orders::default();
        assert_eq!(orders.entry_stop(&["AAPL"]), Some(EntryStop::Stopped), "closed until step 4 opens it");
        orders.open_gate(true, &report(false, &[]));
        assert_eq!(orders.entry_stop(&["AAPL"]), None);
        orders.open_gate(false, &report(false, &[]));
        assert_eq!(orders.entry_stop(&["AAPL"]), Some(EntryStop::Stopped));
        orders.open_gate(true, &report(true, &[]));
        assert_eq!(orders.entry_stop(&["AAPL"]), Some(EntryStop::NoMarketData));
        // Stale data stops the entries of the stale symbol, and only those.
        orders.open_gate(true, &report(false, &["AAPL"]));
        assert_eq!(orders.entry_stop(&["AAPL", "SPY"]), Some(EntryStop::StaleData(vec!["AAPL".into()])));
        assert_eq!(orders.entry_stop(&["SPY"]), None);
        assert!(orders.entry_stop(&["AAPL"]).unwrap().to_string().contains("stale market data for AAPL"));
        // What the lifecycle met while sending stops every later entry of the iteration.
        orders.ledger_failed(&StateError::BadRow { what: "orders", detail: "disk full".into() });
        assert_eq!(orders.entry_stop(&["SPY"]), Some(EntryStop::LedgerRefused));
        orders.ledger_failure = None;
        orders.conflict_seen = true;
        assert_eq!(orders.entry_stop(&["SPY"]), Some(EntryStop::ConflictSeen));
        orders.conflict_seen = false;
        assert_eq!(orders.entry_stop(&["SPY"]), None);
        // Step 4 over, the gate is shut until the next one opens it.
        orders.close_gate();
        assert_eq!(orders.entry_stop(&["SPY"]), Some(EntryStop::Stopped));
    }

    #[test]
    fn an_entry_the_gate_stops_writes_nothing_and_sends_nothing() {
        let mut state = State::open_memory().unwrap();
        let now = Timestamp::from_second(1_795_000_000).unwrap();
        let clock = std::sync::Arc::new(crate::core::clock::ManualClock::new(now));
        let mut broker =
            crate::sim::sim_broker::SimBroker::open(clock, crate::core::config::Sim::default(), 1, None).unwrap();
        let spec = aapl_buy(1);
        let mut orders = Orders::default();
        let stopped = orders.send_entry(&mut state, &mut broker, &spec, None, now).unwrap();
        assert_eq!(stopped, Err(EntryStop::Stopped), "a gate never opened stops the entry");
        orders.open_gate(true, &report(false, &["AAPL"]));
        let stale = orders.send_entry(&mut state, &mut broker, &spec, None, now).unwrap();
        assert_eq!(stale, Err(EntryStop::StaleData(vec!["AAPL".into()])));
        assert!(state.all_orders().unwrap().is_empty(), "nothing recorded");
        assert_eq!(broker.take_call_stats().requests, 0, "nothing sent");
        // Opened with nothing against it, the same entry goes: the test above is not vacuous.
        orders.open_gate(true, &report(false, &[]));
        let sent = orders.send_entry(&mut state, &mut broker, &spec, None, now).unwrap();
        assert!(matches!(sent, Ok(Sent::Accepted { .. }) | Ok(Sent::Refused { .. })), "{sent:?}");
        assert_eq!(state.all_orders().unwrap().len(), 1, "recorded once past the gate");
        assert_eq!(broker.take_call_stats().requests, 1, "and sent");
    }

    #[test]
    fn a_report_is_booked_only_when_it_is_whole() {
        let mut state = State::open_memory().unwrap();
        let now = Timestamp::from_second(1_795_000_000).unwrap();
        let spec = aapl_buy(10);
        let id = state.record_order(&new_order(&spec, now)).unwrap();
        let report = |filled: Option<i64>, price: Option<&str>| Order {
            id: "b-1".into(),
            client_order_id: id.clone(),
            symbol: "AAPL".into(),
            asset_class: AssetClass::UsEquity,
            side: Some(Side::Buy),
            order_type: Some(OrderType::Market),
            time_in_force: Some(TimeInForce::Day),
            qty: Some(Dec::from_int(10)),
            notional: None,
            filled_qty: filled.map(Dec::from_int),
            filled_avg_price: price.map(|p| p.parse().unwrap()),
            limit_price: None,
            stop_price: None,
            status: OrderStatus::Filled,
            order_class: "simple".into(),
            position_intent: None,
            legs: Vec::new(),
            created_at: None,
            filled_at: None,
        };
        for (filled, price, why) in [
            (None, Some("190"), "no filled quantity"),
            (Some(11), Some("190"), "more filled than ordered"),
            (Some(10), Some("0"), "a price of zero"),
            (Some(10), Some("-1"), "a price below zero"),
            (Some(10), None, "no price"),
        ] {
            let booked = record_report(&mut state, &id, &report(filled, price), Dec::ZERO, now).unwrap();
            assert!(booked.waiting && booked.fills.is_empty(), "{why}: {booked:?}");
            assert!(state.owned_positions().unwrap().is_empty(), "{why}: nothing owned");
            let rec = state.order(&id).unwrap().unwrap();
            assert!(!rec.status.is_final(), "{why}: not final ({:?})", rec.status);
        }
        let booked = record_report(&mut state, &id, &report(Some(10), Some("190")), Dec::ZERO, now).unwrap();
        assert!(!booked.waiting && booked.fills.len() == 1, "whole: booked {booked:?}");
        assert!(state.order(&id).unwrap().unwrap().status.is_final());
    }
}
