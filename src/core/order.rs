//! The order words: side, order type, time in force, the broker's order status, an option leg's
//! position intent, how much an order asks for, a leg; and of our own records of orders, what
//! one is for (`Intent`) and where it stands (`RecordStatus`).
//!
//! Owns: these types and their text forms (Alpaca's spellings). Every layer speaks them: the bots
//! decide in them, the execution service records them, the broker implementations send them.
//!
//! Never: talks to a broker or the database; reading an unknown status never fails (it is kept,
//! and treated as not final).

use crate::core::decimal::Dec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    pub fn parse(text: &str) -> Option<Side> {
        match text {
            "buy" => Some(Side::Buy),
            "sell" => Some(Side::Sell),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderType {
    Market,
    Limit,
    Stop,
    StopLimit,
    TrailingStop,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
            OrderType::Stop => "stop",
            OrderType::StopLimit => "stop_limit",
            OrderType::TrailingStop => "trailing_stop",
        }
    }

    pub fn parse(text: &str) -> Option<OrderType> {
        [OrderType::Market, OrderType::Limit, OrderType::Stop, OrderType::StopLimit, OrderType::TrailingStop]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeInForce {
    Day,
    Gtc,
    Opg,
    Cls,
    Ioc,
    Fok,
}

impl TimeInForce {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Day => "day",
            TimeInForce::Gtc => "gtc",
            TimeInForce::Opg => "opg",
            TimeInForce::Cls => "cls",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
        }
    }

    pub fn parse(text: &str) -> Option<TimeInForce> {
        [TimeInForce::Day, TimeInForce::Gtc, TimeInForce::Opg, TimeInForce::Cls, TimeInForce::Ioc, TimeInForce::Fok]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

/// Alpaca's order statuses, read tolerantly: an unknown one is kept as text and treated as open
/// (the safe assumption: it may still fill).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderStatus {
    New,
    Accepted,
    PendingNew,
    AcceptedForBidding,
    PartiallyFilled,
    Filled,
    DoneForDay,
    Canceled,
    Expired,
    Replaced,
    PendingCancel,
    PendingReplace,
    Stopped,
    Rejected,
    Suspended,
    Calculated,
    Held,
    Other(String),
}

impl OrderStatus {
    pub fn parse(text: &str) -> OrderStatus {
        match text {
            "new" => OrderStatus::New,
            "accepted" => OrderStatus::Accepted,
            "pending_new" => OrderStatus::PendingNew,
            "accepted_for_bidding" => OrderStatus::AcceptedForBidding,
            "partially_filled" => OrderStatus::PartiallyFilled,
            "filled" => OrderStatus::Filled,
            "done_for_day" => OrderStatus::DoneForDay,
            "canceled" => OrderStatus::Canceled,
            "expired" => OrderStatus::Expired,
            "replaced" => OrderStatus::Replaced,
            "pending_cancel" => OrderStatus::PendingCancel,
            "pending_replace" => OrderStatus::PendingReplace,
            "stopped" => OrderStatus::Stopped,
            "rejected" => OrderStatus::Rejected,
            "suspended" => OrderStatus::Suspended,
            "calculated" => OrderStatus::Calculated,
            "held" => OrderStatus::Held,
            other => OrderStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::Accepted => "accepted",
            OrderStatus::PendingNew => "pending_new",
            OrderStatus::AcceptedForBidding => "accepted_for_bidding",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::DoneForDay => "done_for_day",
            OrderStatus::Canceled => "canceled",
            OrderStatus::Expired => "expired",
            OrderStatus::Replaced => "replaced",
            OrderStatus::PendingCancel => "pending_cancel",
            OrderStatus::PendingReplace => "pending_replace",
            OrderStatus::Stopped => "stopped",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Suspended => "suspended",
            OrderStatus::Calculated => "calculated",
            OrderStatus::Held => "held",
            OrderStatus::Other(s) => s,
        }
    }

    /// Done for good: it will neither fill further nor need cancelling.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Canceled
                | OrderStatus::Expired
                | OrderStatus::Replaced
                | OrderStatus::Rejected
                | OrderStatus::DoneForDay
        )
    }
}

/// What an option leg does to the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIntent {
    BuyToOpen,
    BuyToClose,
    SellToOpen,
    SellToClose,
}

impl PositionIntent {
    pub fn as_str(self) -> &'static str {
        match self {
            PositionIntent::BuyToOpen => "buy_to_open",
            PositionIntent::BuyToClose => "buy_to_close",
            PositionIntent::SellToOpen => "sell_to_open",
            PositionIntent::SellToClose => "sell_to_close",
        }
    }

    pub fn side(self) -> Side {
        match self {
            PositionIntent::BuyToOpen | PositionIntent::BuyToClose => Side::Buy,
            PositionIntent::SellToOpen | PositionIntent::SellToClose => Side::Sell,
        }
    }

    pub fn parse(text: &str) -> Option<PositionIntent> {
        [PositionIntent::BuyToOpen, PositionIntent::BuyToClose, PositionIntent::SellToOpen, PositionIntent::SellToClose]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// How much an order asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Qty(Dec),
    /// Dollars (fractional stocks and crypto).
    Notional(Dec),
}

/// One leg of a multi-leg option order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub symbol: String,
    pub ratio_qty: u32,
    pub position_intent: PositionIntent,
}

/// The rule a protective order names, in the ledger and the events, and the exit it becomes when
/// it fills (`bots::protection`). Here because the ledger's read of the exits in flight leaves
/// protective stops out by it.
pub const BROKER_STOP: &str = "broker_stop";

/// What one of our orders is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Entry,
    Exit,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Entry => "entry",
            Intent::Exit => "exit",
        }
    }

    pub fn parse(text: &str) -> Option<Intent> {
        [Intent::Entry, Intent::Exit].into_iter().find(|i| i.as_str() == text)
    }
}

/// Where one of our order records stands: our own words before (or instead of) the broker's,
/// else the broker's status.
///
/// Every transition, and the evidence that moves an order along it, is the table at the top of
/// `services::order_lifecycle`, the one module that moves an order. The final ones are
/// `FINAL_ORDER_STATUSES` (`core::state`): `filled`, `canceled`, `expired`, `replaced`,
/// `rejected`, `done_for_day`, `abandoned`, `conflict`. Nothing leaves a final status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStatus {
    /// Recorded, not (yet) known to have been sent.
    Recorded,
    /// Sent, and the answer was lost: looked up by its client order id every iteration.
    Unknown,
    /// Refused by the broker or by our own checks: never sent again.
    Rejected,
    /// Recorded, then not at the broker by its own word: the process died before sending.
    Abandoned,
    /// The broker holds another order under this id: ours was never placed.
    Conflict,
    /// The broker's status (an unknown one is kept, and is not final).
    Broker(OrderStatus),
}

impl RecordStatus {
    /// The text stored in the database.
    pub fn as_str(&self) -> &str {
        match self {
            RecordStatus::Recorded => "recorded",
            RecordStatus::Unknown => "unknown",
            RecordStatus::Rejected => "rejected",
            RecordStatus::Abandoned => "abandoned",
            RecordStatus::Conflict => "conflict",
            RecordStatus::Broker(s) => s.as_str(),
        }
    }

    /// Reads stored text back; never fails. Text this build does not know (a newer build's, a
    /// hand edit) reads as a broker status it does not know: not final, so the order is followed
    /// and its symbol stays busy — the safe side.
    pub fn parse(text: &str) -> RecordStatus {
        match text {
            "recorded" => RecordStatus::Recorded,
            "unknown" => RecordStatus::Unknown,
            "rejected" => RecordStatus::Rejected,
            "abandoned" => RecordStatus::Abandoned,
            "conflict" => RecordStatus::Conflict,
            other => RecordStatus::Broker(OrderStatus::parse(other)),
        }
    }

    /// Nothing more will happen to the order.
    pub fn is_final(&self) -> bool {
        match self {
            RecordStatus::Recorded | RecordStatus::Unknown => false,
            RecordStatus::Rejected | RecordStatus::Abandoned | RecordStatus::Conflict => true,
            RecordStatus::Broker(s) => s.is_final(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_status_is_not_final() {
        assert!(!OrderStatus::parse("pending_review").is_final());
        assert!(OrderStatus::parse("filled").is_final());
        assert_eq!(OrderStatus::parse("held").as_str(), "held");
    }

    #[test]
    fn record_statuses_round_trip_and_an_unknown_one_is_not_final() {
        for text in ["recorded", "unknown", "rejected", "abandoned", "conflict", "filled", "pending_review"] {
            assert_eq!(RecordStatus::parse(text).as_str(), text);
        }
        assert!(!RecordStatus::parse("something_new").is_final());
        assert!(!RecordStatus::parse("unknown").is_final());
        assert!(RecordStatus::parse("conflict").is_final());
    }
}
