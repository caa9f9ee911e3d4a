//! What the bots are doing when they do not enter, for the person who asks: a `bot_idle` event
//! when a bot's causes change, its `bot_activity` row (read by `status`), and `order_rejected`
//! once per risk check's refusal while it lasts.
//!
//! Owns: the last causes noted per bot and the last refusal logged per (bot, symbol).
//! Never: decides whether an entry may go (`order_lifecycle::Orders::entry_stop` and
//! `entry_checks` do), and a row the ledger refuses never stops a trade.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::core::idle::{Cause, Idle};
use crate::core::state::State;
use crate::event;
use crate::services::entry_checks::Refusal;

/// How often the same causes with new numbers rewrite a bot's `bot_activity` row at most.
const IDLE_REFRESH: SignedDuration = SignedDuration::from_mins(5);

/// A bot's reason for not entering as `note_idle` last saw it: its causes (`None`: it entered),
/// since when, and when and with which detail the ledger's row was last written (`None`: not
/// yet, or the write failed).
#[derive(Debug, Clone)]
struct Noted {
    causes: Option<Vec<Cause>>,
    since: Timestamp,
    written: Option<(Timestamp, Option<String>)>,
}

/// The notes kept between iterations.
#[derive(Debug, Default)]
pub struct IdleNotes {
    /// The last refusal logged per (bot, symbol): a signal that holds for many iterations is
    /// refused for the same reason each time, and the log says so once.
    refusals: BTreeMap<(String, String), String>,
    /// Each bot's reason for not entering as last noted (`note_idle`).
    idle: BTreeMap<String, Noted>,
}

impl IdleNotes {
    /// Notes why `bot` is not entering (`None`: it just sent an entry). A change of its causes
    /// (and the first note after start-up, which keeps the ledger's `since` when the causes are
    /// the same) is a `bot_idle` event and a ledger row at once; the same causes with new numbers refresh
    /// the row every `IDLE_REFRESH` at most, so `status` stays current without a write per
    /// iteration. A row the ledger refuses is tried again next iteration; it never stops a trade.
    pub fn note_idle(&mut self, state: &State, bot: &str, idle: Option<Idle>, now: Timestamp) {
        // Updated in place: this runs for every bot every minute, and a quiet minute copies
        // nothing (a backtest's minutes are mostly quiet).
        let causes = idle.as_ref().map(|i| i.causes.as_slice());
        // Whether the causes are those last noted (`None`: nothing noted since start-up).
        let same = self.idle.get(bot).map(|n| n.causes.as_deref() == causes);
        if same != Some(true) {
            if let Some(i) = &idle {
                event!(
                    Info,
                    "bot_idle",
                    bot = bot,
                    causes = i.causes_text().as_str(),
                    reason = i.detail.to_string().as_str()
                );
            }
            let since = match same {
                Some(_) => now,
                // The first note since start-up: the same causes as the ledger holds go on from
                // when they began, across the restart.
                None => {
                    let stored = state.bot_activity().ok().and_then(|rows| rows.into_iter().find(|a| a.bot == bot));
                    stored
                        .filter(|a| a.reason.is_some() == causes.is_some() && Some(a.causes.as_slice()) == causes)
                        .map_or(now, |a| a.since)
                }
            };
            let noted = Noted { causes: causes.map(<[Cause]>::to_vec), since, written: None };
            self.idle.insert(bot.to_string(), noted);
        }
        let Some(noted) = self.idle.get_mut(bot) else { return };
        // A ledger that keeps no bot activity (a backtest's) needs no text written out for it.
        if !state.keeps_status_rows()
            || noted.written.as_ref().is_some_and(|(at, _)| now.duration_since(*at) < IDLE_REFRESH)
        {
            return;
        }
        // The detail is written out only here, when the row may be due: not every minute.
        let detail = idle.as_ref().map(|i| i.detail.to_string());
        if noted.written.as_ref().is_none_or(|(_, written)| *written != detail) {
            noted.written = match state.put_bot_activity(bot, idle.as_ref(), noted.since, now) {
                Ok(()) => Some((now, detail)),
                Err(e) => {
                    event!(Debug, "bot_activity_unwritten", bot = bot, error = e.to_string().as_str());
                    None
                }
            };
        }
    }

    /// `order_rejected` for a risk check's refusal, once per reason while it lasts. Waiting for
    /// an entry in flight is no refusal: debug only.
    pub fn log_refusal(&mut self, bot: &str, symbol: &str, refusal: Refusal) {
        let why = refusal.to_string();
        if refusal == Refusal::InFlight {
            event!(Debug, "entry_skipped", bot = bot, symbol = symbol, reason = why.as_str());
            return;
        }
        let key = (bot.to_string(), symbol.to_string());
        if self.refusals.get(&key) != Some(&why) {
            event!(Info, "order_rejected", bot = bot, symbol = symbol, reason = why.as_str());
            self.refusals.insert(key, why);
        }
    }

    /// Forgets the refusal logged for `bot`'s `symbol`: it entered.
    pub fn entered(&mut self, bot: &str, symbol: &str) {
        self.refusals.remove(&(bot.to_string(), symbol.to_string()));
    }
}
