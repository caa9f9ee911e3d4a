//! Time: where "now" comes from, the trading date, the regular stock session and the
//! `HH:MM` windows of the bots.
//!
//! Owns: the `Clock` and `MarketCalendar` interfaces (so the broker's clock, a simulated clock or a
//! test can stand in for the system's), the embedded time-zone database, and the formats in which
//! timestamps are shown and stored.
//!
//! Never: asks the network, reads the host's `/usr/share/zoneinfo`, or trusts the configured
//! `system.timezone` for market hours (the Python daemon put 09:30–16:00 in Los Angeles time and
//! traded three hours off). Market hours and the trading date are always New York's.

use std::cell::Cell;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp};

/// The exchange's zone: stock sessions and the trading date are defined here.
pub const MARKET_TIME_ZONE: &str = "America/New_York";

/// The time-zone database compiled into the binary.
///
/// We always use the embedded copy, never the host's: a static binary on a Raspberry Pi may have
/// no zoneinfo at all, and the same binary should see the same rules everywhere.
fn tz_db() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// Looks up an IANA zone name in the embedded database.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    tz_db().get(name).map_err(|_| format!("{name:?} is not an IANA time zone (for example America/Los_Angeles)"))
}

/// New York, from the embedded database.
pub fn market_tz() -> TimeZone {
    static NY: OnceLock<TimeZone> = OnceLock::new();
    NY.get_or_init(|| {
        // Infallible: the bundled database is compiled into the binary (jiff feature
        // `tzdb-bundle-always`) and always holds America/New_York; the unit test
        // `market_zone_is_embedded` proves it for every build.
        time_zone(MARKET_TIME_ZONE).expect("America/New_York is in the embedded tz database")
    })
    .clone()
}

/// The trading date of an instant: its calendar date in New York (not UTC, not the configured
/// zone). A day-start equity, a daily-loss halt and a day's budgets all belong to one.
pub fn trading_date(now: Timestamp) -> Date {
    // Asked many times a minute by every step: the last date's span of instants is kept (per
    // thread, so a sweep's simulations never share it) and answers without the zone's rules.
    thread_local! {
        static LAST: Cell<Option<(Timestamp, Timestamp, Date)>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        if let Some((start, end, date)) = last.get()
            && start <= now
            && now < end
        {
            return date;
        }
        let date = market_tz().to_datetime(now).date();
        let end = date.tomorrow().map_or(Timestamp::MAX, start_of_date);
        last.set(Some((start_of_date(date), end, date)));
        date
    })
}

/// The trading dates `from` to `to` (both included; `None` leaves that end open) as the instants
/// they span: whether an instant's trading date is among them, without working out its date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dates {
    pub from: Option<Date>,
    pub to: Option<Date>,
    start: Timestamp,
    end: Timestamp,
}

impl Dates {
    pub fn new(from: Option<Date>, to: Option<Date>) -> Dates {
        // New York midnight starts each date (it never falls in a DST change, which happens at
        // 2:00), so dates compare as the instants of their midnights.
        let start = from.map_or(Timestamp::MIN, start_of_date);
        let end = to.and_then(|d| d.tomorrow().ok()).map_or(Timestamp::MAX, start_of_date);
        Dates { from, to, start, end }
    }

    /// Whether `t`'s trading date is one of these.
    pub fn contains(&self, t: Timestamp) -> bool {
        t >= self.start && t < self.end
    }

    /// Whether `t`'s trading date is after the last of these.
    pub fn ended_by(&self, t: Timestamp) -> bool {
        t >= self.end
    }
}

/// Midnight in New York that starts the trading date after `now`'s: when a daily-loss halt ends.
///
/// Crypto trades every day, so a Saturday is a trading date too; stocks simply stay closed.
pub fn next_trading_date_start(now: Timestamp) -> Timestamp {
    let tomorrow = trading_date(now).tomorrow().unwrap_or(Date::MAX);
    start_of_date(tomorrow)
}

/// The first instant of a New York calendar date.
pub fn start_of_date(date: Date) -> Timestamp {
    // `to_zoned_datetime` resolves a civil time that does not exist (a DST gap) forward, so this
    // cannot fail for a date jiff can represent; New York has never skipped midnight anyway.
    match date.to_datetime(Time::midnight()).to_zoned_datetime(market_tz()) {
        Ok(z) => z.timestamp(),
        Err(_) => Timestamp::MAX,
    }
}

/// Where "now" comes from. The runner uses the system clock; the simulated broker and the tests use
/// a clock they move themselves.
pub trait Clock: Send {
    fn now(&self) -> Timestamp;
}

/// A shared clock: the test or simulator keeps one handle to move it, the orchestrator another.
impl<C: Clock + Sync> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to: for tests and the simulated market.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Mutex::new(start))
    }

    pub fn set(&self, to: Timestamp) {
        *self.lock() = to;
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.lock();
        *now = now.saturating_add(by).unwrap_or(*now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A poisoned lock only means another thread panicked while holding a plain Timestamp,
        // which cannot be left half-written: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}

/// Simulated time: starts at `start` and runs `speed` times as fast as the real (monotonic) clock
/// — except while held (`hold`): then it stands still. The `run --sim` loop holds it for each
/// iteration, so every step of one iteration sees one instant, as in a backtest (at 6,000× a
/// millisecond of real time is six simulated seconds: an order's fill would otherwise depend on
/// how long the iteration took), and `replay` reproduces a simulated day at its iterations'
/// times, trade for trade.
#[derive(Debug)]
pub struct ScaledClock {
    start: Timestamp,
    real_start: std::time::Instant,
    speed: f64,
    held: std::sync::Mutex<Option<Timestamp>>,
}

impl ScaledClock {
    pub fn new(start: Timestamp, speed: f64) -> ScaledClock {
        ScaledClock { start, real_start: std::time::Instant::now(), speed, held: std::sync::Mutex::new(None) }
    }

    fn running(&self) -> Timestamp {
        let elapsed = self.real_start.elapsed().as_secs_f64() * self.speed;
        let by = SignedDuration::try_from_secs_f64(elapsed).unwrap_or(SignedDuration::MAX);
        self.start.saturating_add(by).unwrap_or(Timestamp::MAX)
    }

    /// Stops the clock at the time it shows now, until `release`.
    pub fn hold(&self) {
        let now = self.running();
        // (A poisoned lock still holds a plain value: nothing is half-written.)
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
    }

    /// Lets it run on (from where the real clock has got to meanwhile).
    pub fn release(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let held = *self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.unwrap_or_else(|| self.running())
    }
}

/// Where a simulated market starts: the 09:30 New York open of the trading date of `now` if that
/// is a weekday, else of the next weekday. So `--sim` trades stocks at once, whatever the hour.
pub fn sim_start(now: Timestamp) -> Timestamp {
    let day = RegularSession::trading_day_from(trading_date(now));
    RegularSession::at(day, RegularSession::OPEN)
}

/// The stock market's state at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub is_open: bool,
    /// The next open strictly after now while closed; the current session's open while open.
    pub next_open: Timestamp,
    /// The close of the current session while open; of the next session while closed.
    pub next_close: Timestamp,
}

/// The source of truth for the stock session. Against Alpaca it is the broker's clock and calendar
/// (holidays, half days); this module's `RegularSession` is the fallback and the simulator's.
pub trait MarketCalendar {
    fn session_at(&self, now: Timestamp) -> SessionState;
}

/// The regular session, 09:30–16:00 New York, Monday to Friday. It knows no holidays and no half
/// days: those come from the broker's calendar.
#[derive(Debug, Default, Clone, Copy)]
pub struct RegularSession;

impl RegularSession {
    pub const OPEN: HhMm = HhMm { hour: 9, minute: 30 };
    pub const CLOSE: HhMm = HhMm { hour: 16, minute: 0 };

    fn is_trading_day(date: Date) -> bool {
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
    }

    fn at(date: Date, t: HhMm) -> Timestamp {
        match date.to_datetime(t.to_time()).to_zoned_datetime(market_tz()) {
            Ok(z) => z.timestamp(),
            // 09:30 and 16:00 never fall in a New York DST gap (those are at 02:00).
            Err(_) => Timestamp::MAX,
        }
    }

    /// The first trading day on or after `date`.
    fn trading_day_from(mut date: Date) -> Date {
        while !Self::is_trading_day(date) {
            date = date.tomorrow().unwrap_or(Date::MAX);
        }
        date
    }
}

impl MarketCalendar for RegularSession {
    fn session_at(&self, now: Timestamp) -> SessionState {
        let today = trading_date(now);
        if Self::is_trading_day(today) {
            let open = Self::at(today, Self::OPEN);
            let close = Self::at(today, Self::CLOSE);
            if now >= open && now < close {
                return SessionState { is_open: true, next_open: open, next_close: close };
            }
            if now < open {
                return SessionState { is_open: false, next_open: open, next_close: close };
            }
        }
        let day = Self::trading_day_from(today.tomorrow().unwrap_or(Date::MAX));
        SessionState { is_open: false, next_open: Self::at(day, Self::OPEN), next_close: Self::at(day, Self::CLOSE) }
    }
}

/// A wall-clock time of day as the config writes it, `"HH:MM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HhMm {
    pub hour: i8,
    pub minute: i8,
}

impl HhMm {
    /// `23:59`: as a window's end, midnight (`in_window`).
    pub const LAST_MINUTE: HhMm = HhMm { hour: 23, minute: 59 };

    pub fn to_time(self) -> Time {
        // In range by construction: `parse` and the constants only hold 0–23 and 0–59.
        Time::constant(self.hour, self.minute, 0, 0)
    }

    pub fn parse(text: &str) -> Result<HhMm, String> {
        let bad = || format!("expected a time of day \"HH:MM\" (00:00 to 23:59), got {text:?}");
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let hour: i8 = h.parse().map_err(|_| bad())?;
        let minute: i8 = m.parse().map_err(|_| bad())?;
        if !(0..=23).contains(&hour) || !(0..=59).contains(&minute) {
            return Err(bad());
        }
        Ok(HhMm { hour, minute })
    }
}

impl fmt::Display for HhMm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl<'de> serde::Deserialize<'de> for HhMm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HhMm, D::Error> {
        // A visitor, not `String::deserialize` then a check: an error raised inside the visit
        // carries the YAML key path (`momentum_bots[0].session.trade_start`) in its message.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HhMm;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time of day \"HH:MM\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HhMm, E> {
                HhMm::parse(text).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Whether `now`, read on the wall clock of `tz`, lies in `[start, end)`. An `end` of `23:59`
/// runs to midnight (`HH:MM` cannot write `24:00`): the Python daemon's crypto window
/// `00:00`–`23:59` is the whole day, not a day with its last minute off.
///
/// The window is a wall-clock one on purpose: a bot configured for "06:35" in Los Angeles trades
/// at 06:35 local time in both winter and summer, as its operator wrote it.
pub fn in_window(now: Timestamp, tz: &TimeZone, start: HhMm, end: HhMm) -> bool {
    let local = now.to_zoned_datetime(tz.clone()).time();
    local >= start.to_time() && (local < end.to_time() || end == HhMm::LAST_MINUTE)
}

/// The instant `at` falls on today's date (the date of `now` in `tz`) on the wall clock of `tz`.
/// `None` only for a time jiff cannot place (it resolves DST gaps forward).
pub fn today_at(now: Timestamp, tz: &TimeZone, at: HhMm) -> Option<Timestamp> {
    let date = now.to_zoned_datetime(tz.clone()).date();
    date.to_datetime(at.to_time()).to_zoned_datetime(tz.clone()).ok().map(|z| z.timestamp())
}

/// How many weekdays of `year` have `at`, on the wall clock of `tz`, at or after the 16:00 New
/// York close: never for New York itself, some weeks a year for a zone whose daylight-saving dates
/// differ (London, most of Europe, the southern hemisphere).
pub fn weekdays_at_or_after_the_close(tz: &TimeZone, at: HhMm, year: i16) -> usize {
    weekdays_past_the_close(tz, at, year, true)
}

/// Like `weekdays_at_or_after_the_close`, counting only the weekdays `at` falls strictly after
/// the close (an options bot's day may end at the close itself).
pub fn weekdays_after_the_close(tz: &TimeZone, at: HhMm, year: i16) -> usize {
    weekdays_past_the_close(tz, at, year, false)
}

fn weekdays_past_the_close(tz: &TimeZone, at: HhMm, year: i16, at_counts: bool) -> usize {
    let Ok(first) = Date::new(year, 1, 1) else { return 0 };
    let close = Time::new(16, 0, 0, 0).unwrap_or(Time::midnight());
    let mut n = 0;
    let mut d = first;
    while d.year() == year {
        let weekday = !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday);
        let local = d.to_datetime(at.to_time()).to_zoned_datetime(tz.clone()).ok();
        let in_ny = local.map(|z| z.timestamp().to_zoned_datetime(market_tz()));
        let past = |t: Time| if at_counts { t >= close } else { t > close };
        if weekday && in_ny.is_some_and(|z| z.date() > d || (z.date() == d && past(z.time()))) {
            n += 1;
        }
        let Ok(next) = d.tomorrow() else { break };
        d = next;
    }
    n
}

/// A timestamp for people and the JSONL log: RFC 3339 with the zone's offset, milliseconds.
pub fn display_ts(ts: Timestamp, tz: &TimeZone) -> String {
    ts.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

/// A timestamp for a person's line (the console, a bot's reason): the wall clock of `tz` to the
/// second, with the zone's abbreviation: `2026-12-07 07:15:00 PST`.
pub fn person_ts(ts: Timestamp, tz: &TimeZone) -> String {
    ts.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// A timestamp for the database: UTC, fixed width, so text order is time order.
pub fn db_ts(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Reads a timestamp written by `db_ts` (or any RFC 3339 text).
pub fn parse_ts(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>().map_err(|e| format!("bad timestamp {text:?}: {e}"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn dates_contain_the_instants_whose_trading_date_they_hold() {
        let d = |s: &str| -> Date { s.parse().unwrap() };
        // Around the two DST changes of 2026 and a plain week; from and to open or set.
        let spans = [
            Dates::new(Some(d("2026-03-08")), Some(d("2026-03-09"))),
            Dates::new(Some(d("2026-11-01")), None),
            Dates::new(None, Some(d("2026-11-01"))),
            Dates::new(Some(d("2026-11-24")), Some(d("2026-11-24"))),
            Dates::new(None, None),
        ];
        for first in ["2026-03-07T00:00:00Z", "2026-10-31T00:00:00Z", "2026-11-23T00:00:00Z"] {
            let first: Timestamp = first.parse().unwrap();
            for m in 0..4 * 1440 {
                let t = first + SignedDuration::from_mins(m);
                let date = trading_date(t);
                for s in &spans {
                    let held = s.from.is_none_or(|f| date >= f) && s.to.is_none_or(|to| date <= to);
                    assert_eq!(s.contains(t), held, "{t} {s:?}");
                    assert_eq!(s.ended_by(t), s.to.is_some_and(|to| date > to), "{t} {s:?}");
                }
            }
        }
    }

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hm(s: &str) -> HhMm {
        HhMm::parse(s).unwrap()
    }

    /// The kept span answers as the zone does: every 7 minutes across two years (both daylight
    /// saving changes of each), forwards and back, and at each New York midnight's edges.
    #[test]
    fn the_trading_date_kept_between_calls_is_the_zones_date() {
        let plain = |t: Timestamp| t.to_zoned_datetime(market_tz()).date();
        let start = ts("2025-01-01T00:00:00Z").as_second();
        let times: Vec<Timestamp> =
            (0..2 * 366 * 24 * 60 / 7).map(|i| Timestamp::from_second(start + i * 7 * 60).unwrap()).collect();
        for t in times.iter().chain(times.iter().rev()) {
            assert_eq!(trading_date(*t), plain(*t), "{t}");
        }
        for d in [jiff::civil::date(2025, 3, 9), jiff::civil::date(2025, 3, 10), jiff::civil::date(2025, 11, 3)] {
            let midnight = start_of_date(d);
            for t in [midnight - SignedDuration::from_secs(1), midnight, midnight + SignedDuration::from_secs(1)] {
                assert_eq!(trading_date(t), plain(t), "{t}");
            }
        }
    }

    #[test]
    fn market_zone_is_embedded() {
        assert!(time_zone(MARKET_TIME_ZONE).is_ok());
        assert!(time_zone("America/Los_Angeles").is_ok());
        assert!(time_zone("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn hhmm_parses_and_rejects() {
        assert_eq!(hm("06:35"), HhMm { hour: 6, minute: 35 });
        assert_eq!(hm("6:05").to_string(), "06:05");
        for bad in ["24:00", "12:60", "1235", "12:5", "", "ab:cd", "-1:00", "12:345"] {
            assert!(HhMm::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn trading_date_is_new_york_not_utc() {
        // 02:00 UTC on the 25th is 21:00 (EST) on the 24th in New York.
        assert_eq!(trading_date(ts("2026-11-25T02:00:00Z")), jiff::civil::date(2026, 11, 24));
        assert_eq!(trading_date(ts("2026-11-25T05:00:00Z")), jiff::civil::date(2026, 11, 25));
        assert_eq!(next_trading_date_start(ts("2026-11-25T02:00:00Z")), ts("2026-11-25T05:00:00Z"));
        // Summer: midnight New York is 04:00 UTC.
        assert_eq!(next_trading_date_start(ts("2026-07-01T12:00:00Z")), ts("2026-07-02T04:00:00Z"));
    }

    /// The regular session follows New York's DST: 14:30Z in winter, 13:30Z in summer.
    /// DST started 2026-03-08 and ended 2026-11-01 in the US.
    #[test]
    fn regular_session_on_both_sides_of_each_dst_change() {
        let cal = RegularSession;
        let open = |s: &str| cal.session_at(ts(s)).is_open;
        // Friday before spring forward (EST, UTC-5).
        assert!(!open("2026-03-06T14:29:59Z"));
        assert!(open("2026-03-06T14:30:00Z"));
        assert!(open("2026-03-06T20:59:59Z"));
        assert!(!open("2026-03-06T21:00:00Z"));
        // Monday after (EDT, UTC-4).
        assert!(!open("2026-03-09T13:29:59Z"));
        assert!(open("2026-03-09T13:30:00Z"));
        assert!(!open("2026-03-09T20:00:00Z"));
        // Friday before fall back (EDT).
        assert!(open("2026-10-30T13:30:00Z"));
        assert!(!open("2026-10-30T20:00:00Z"));
        // Monday after (EST).
        assert!(!open("2026-11-02T13:30:00Z"));
        assert!(open("2026-11-02T14:30:00Z"));
        assert!(open("2026-11-02T20:59:00Z"));
        // Weekend.
        assert!(!open("2026-03-07T16:00:00Z"));
        assert!(!open("2026-11-01T16:00:00Z"));
    }

    #[test]
    fn next_open_skips_the_weekend_and_spans_the_dst_change() {
        let cal = RegularSession;
        // Friday after the close, the weekend of spring forward: next open Monday 13:30Z.
        let s = cal.session_at(ts("2026-03-06T22:00:00Z"));
        assert!(!s.is_open);
        assert_eq!(s.next_open, ts("2026-03-09T13:30:00Z"));
        assert_eq!(s.next_close, ts("2026-03-09T20:00:00Z"));
        // Before the open on a weekday: today's open.
        let s = cal.session_at(ts("2026-11-02T12:00:00Z"));
        assert_eq!(s.next_open, ts("2026-11-02T14:30:00Z"));
        // During the session: the current close.
        let s = cal.session_at(ts("2026-11-02T15:00:00Z"));
        assert!(s.is_open);
        assert_eq!(s.next_close, ts("2026-11-02T21:00:00Z"));
    }

    /// A Los Angeles bot window (06:35–09:30 local) is a wall-clock window: it moves in UTC with DST.
    #[test]
    fn los_angeles_window_on_both_sides_of_each_dst_change() {
        let la = time_zone("America/Los_Angeles").unwrap();
        let (start, end) = (hm("06:35"), hm("09:30"));
        let inw = |s: &str| in_window(ts(s), &la, start, end);
        // PST (UTC-8) before 2026-03-08.
        assert!(!inw("2026-03-06T14:34:59Z"));
        assert!(inw("2026-03-06T14:35:00Z"));
        assert!(inw("2026-03-06T17:29:59Z"));
        assert!(!inw("2026-03-06T17:30:00Z"));
        // PDT (UTC-7) after.
        assert!(!inw("2026-03-09T13:34:59Z"));
        assert!(inw("2026-03-09T13:35:00Z"));
        assert!(!inw("2026-03-09T16:30:00Z"));
        // Before and after fall back (2026-11-01).
        assert!(inw("2026-10-30T13:35:00Z"));
        assert!(!inw("2026-11-02T13:35:00Z"));
        assert!(inw("2026-11-02T14:35:00Z"));
    }

    #[test]
    fn new_york_window_on_both_sides_of_each_dst_change() {
        let ny = market_tz();
        let (start, end) = (hm("09:40"), hm("15:30"));
        let inw = |s: &str| in_window(ts(s), &ny, start, end);
        assert!(inw("2026-03-06T14:40:00Z"));
        assert!(!inw("2026-03-06T13:40:00Z"));
        assert!(inw("2026-03-09T13:40:00Z"));
        assert!(!inw("2026-03-09T19:30:00Z"));
        assert!(inw("2026-10-30T19:29:00Z"));
        assert!(!inw("2026-11-02T13:40:00Z"));
        assert!(inw("2026-11-02T20:29:00Z"));
    }

    /// `00:00`–`23:59` is the whole day: no minute off at midnight (the console said "outside
    /// its window" every night at 23:59). Another end stays exclusive.
    #[test]
    fn a_window_ending_at_23_59_runs_to_midnight() {
        let la = time_zone("America/Los_Angeles").unwrap();
        let all_day = |s: &str| in_window(ts(s), &la, hm("00:00"), hm("23:59"));
        for t in ["2026-12-06T07:59:00Z", "2026-12-06T07:59:59Z", "2026-12-06T08:00:00Z", "2026-12-05T20:00:00Z"] {
            assert!(all_day(t), "{t}");
        }
        let evening = |s: &str| in_window(ts(s), &la, hm("18:00"), hm("23:58"));
        assert!(evening("2026-12-06T07:57:59Z"));
        assert!(!evening("2026-12-06T07:58:00Z"));
        assert!(!evening("2026-12-06T07:59:30Z"));
    }

    #[test]
    fn a_persons_timestamp_is_the_zones_wall_clock_with_its_abbreviation() {
        let la = time_zone("America/Los_Angeles").unwrap();
        assert_eq!(person_ts(ts("2026-12-07T15:15:00Z"), &la), "2026-12-07 07:15:00 PST");
        assert_eq!(person_ts(ts("2026-07-07T15:15:00Z"), &la), "2026-07-07 08:15:00 PDT");
    }

    #[test]
    fn timestamps_format_with_offset_and_round_trip() {
        let la = time_zone("America/Los_Angeles").unwrap();
        let t = ts("2026-11-25T14:23:22.5Z");
        assert_eq!(display_ts(t, &la), "2026-11-25T06:23:22.500-08:00");
        assert_eq!(db_ts(t), "2026-11-25T14:23:22.500Z");
        assert_eq!(parse_ts(&db_ts(t)).unwrap(), t);
        assert_eq!(parse_ts(&display_ts(t, &la)).unwrap(), t);
    }

    #[test]
    fn the_simulated_market_starts_at_an_open() {
        // Wednesday evening New York: that day's open.
        // A held simulated clock stands still; released, it runs on.
        let c = ScaledClock::new(ts("2026-11-25T14:30:00Z"), 1e6);
        c.hold();
        let held = c.now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(c.now(), held, "two milliseconds are half an hour at 10⁶×: held, not one second of it");
        c.release();
        assert!(c.now() > held + SignedDuration::from_secs(1000));
        assert_eq!(sim_start(ts("2026-11-25T23:00:00Z")), ts("2026-11-25T14:30:00Z"));
        // Saturday: Monday's open.
        assert_eq!(sim_start(ts("2026-11-28T12:00:00Z")), ts("2026-11-30T14:30:00Z"));
        let c = ScaledClock::new(ts("2026-11-25T14:30:00Z"), 3600.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(c.now() >= ts("2026-11-25T14:31:00Z"));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(ts("2026-01-02T15:00:00Z"));
        assert_eq!(c.now(), ts("2026-01-02T15:00:00Z"));
        c.advance(SignedDuration::from_secs(90));
        assert_eq!(c.now(), ts("2026-01-02T15:01:30Z"));
    }

    #[test]
    fn a_london_manage_until_falls_after_the_close_in_the_weeks_of_mismatched_daylight_saving() {
        let at = HhMm::parse("20:50").unwrap();
        let london = TimeZone::get("Europe/London").unwrap();
        // 2026: the US springs forward on March 8, the UK on March 29 (three weeks: 15 weekdays),
        // the UK falls back on October 25, the US on November 1 (one week: 5 weekdays).
        assert_eq!(weekdays_at_or_after_the_close(&london, at, 2026), 20);
        assert_eq!(weekdays_at_or_after_the_close(&market_tz(), HhMm::parse("15:55").unwrap(), 2026), 0);
        let la = TimeZone::get("America/Los_Angeles").unwrap();
        assert_eq!(
            weekdays_at_or_after_the_close(&la, HhMm::parse("12:55").unwrap(), 2026),
            0,
            "same dates as New York"
        );
        assert_eq!(weekdays_at_or_after_the_close(&la, HhMm::parse("13:00").unwrap(), 2026), 261, "every weekday");
        // Strictly after: a day that ends at the close itself is not counted (the options bot's
        // shipped 13:00 Los Angeles), a London 21:00 only in the mismatched weeks.
        assert_eq!(weekdays_after_the_close(&la, HhMm::parse("13:00").unwrap(), 2026), 0);
        assert_eq!(weekdays_after_the_close(&london, HhMm::parse("21:00").unwrap(), 2026), 20);
    }
}
