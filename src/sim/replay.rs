//! Recorded bars as the simulated broker replays them: for each symbol, the last bar at or before
//! a time, and the bars that began since a start and have closed by now.
//!
//! Owns: where those bars live. A `Replay` is a handle: its clones read the same bars (the
//! simulated broker prices from it while the backtest reads the buy-and-hold benchmark from it,
//! on one thread). `Replay::held` answers from one copy in memory, shared by every
//! simulation of a sweep; `Replay::streamed` reads each file as the clock reaches it and keeps only
//! a window of recent bars, so a year of ten symbols is never in memory at once (a backtest of
//! bar files, which `bar_files::check` has read through first). Both give the same answers to the
//! same questions, bit for bit, while the clock goes forward: the window keeps every bar of the
//! last `KEEP_MINUTES` and every bar since the start of the symbol's latest bar request, and the
//! last bar before them (a price between sessions is the last close).
//!
//! Never: answers from bars it no longer holds or guesses past the end of a file. A question the
//! window cannot answer (only possible if the clock went back) or a file that changed since it was
//! checked is recorded as the replay's failure, which the backtest turns into its error: such a run
//! writes no report.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use jiff::{SignedDuration, Timestamp};

use crate::core::market_data::{Bar, BySymbol};
use crate::sim::bar_files::{Checked, OnDates};

/// How far behind the clock a streamed symbol keeps its bars at least (the synthetic market's own
/// history is as long).
pub const KEEP_MINUTES: i64 = 3000;

/// The failure of a streamed replay, set once; `None` while it has none.
pub type Failure = Arc<OnceLock<String>>;

#[derive(Clone)]
pub struct Replay {
    /// Borrowed mutably only inside one method call here, which calls no other: never twice.
    source: Rc<RefCell<Source>>,
    failure: Failure,
}

enum Source {
    Held(Arc<BySymbol<Vec<Bar>>>),
    Streamed(BySymbol<Stream>),
}

/// One file's bars from the one after the last dropped to the last read.
struct Stream {
    bars: Option<OnDates>,
    /// The first bar read from the file.
    first: Option<Bar>,
    /// The next bar of the file, read but not yet reached by the clock.
    next: Option<Bar>,
    kept: VecDeque<Bar>,
    /// The time of the newest bar dropped from `kept`.
    dropped: Option<Timestamp>,
    /// The start of the symbol's latest bar request: kept bars reach back to it.
    asked_from: Option<Timestamp>,
}

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

impl Replay {
    /// No recorded bars: the simulated market's own.
    pub fn none() -> Replay {
        Replay::held(Arc::new(BySymbol::new()))
    }

    /// Bars held in memory, shared.
    pub fn held(bars: Arc<BySymbol<Vec<Bar>>>) -> Replay {
        Replay { source: Rc::new(RefCell::new(Source::Held(bars))), failure: Failure::default() }
    }

    /// The checked files' bars, read as the clock reaches them.
    pub fn streamed(checked: &Checked) -> Result<Replay, String> {
        let mut streams = BySymbol::new();
        for symbol in checked.files.keys() {
            streams.insert(symbol.clone(), Stream::new(checked.open(symbol)?));
        }
        Ok(Replay { source: Rc::new(RefCell::new(Source::Streamed(streams))), failure: Failure::default() })
    }

    /// Where the replay's failure, if it has one, will be: the caller keeps a clone.
    pub fn failure(&self) -> Failure {
        self.failure.clone()
    }

    /// Whether the replay has bars of `symbol` (otherwise the synthetic market prices it).
    pub fn has(&self, symbol: &str) -> bool {
        match &*self.source.borrow() {
            Source::Held(bars) => bars.contains_key(symbol),
            Source::Streamed(streams) => streams.contains_key(symbol),
        }
    }

    /// The last bar of `symbol` that began at or before `t` (`None` when none has yet).
    pub fn last_at_or_before(&self, symbol: &str, t: Timestamp) -> Option<Bar> {
        self.recorded(symbol, t).flatten()
    }

    /// The last bar of `symbol` that began strictly before `t`.
    pub fn last_before(&self, symbol: &str, t: Timestamp) -> Option<Bar> {
        self.last_at_or_before(symbol, t.checked_sub(SignedDuration::from_nanos(1)).ok()?)
    }

    /// The first bar of `symbol` on the replayed dates, once the clock has reached it (`None`
    /// before, and for a symbol without bars).
    pub fn first(&self, symbol: &str) -> Option<Bar> {
        match &*self.source.borrow() {
            Source::Held(bars) => bars.get(symbol)?.first().copied(),
            Source::Streamed(streams) => streams.get(symbol)?.first,
        }
    }

    /// `last_at_or_before`, telling apart a symbol without recorded bars (`None`: the synthetic
    /// market prices it) from one with no bar yet (`Some(None)`), in one look-up.
    pub fn recorded(&self, symbol: &str, t: Timestamp) -> Option<Option<Bar>> {
        match &mut *self.source.borrow_mut() {
            Source::Held(bars) => {
                let bars = bars.get(symbol)?;
                Some(bars.partition_point(|b| b.t <= t).checked_sub(1).map(|i| bars[i]))
            }
            Source::Streamed(streams) => {
                let s = streams.get_mut(symbol)?;
                s.reach(t, &self.failure);
                // Most questions are about now, whose answer is the newest bar kept (the times
                // strictly increase, as `bar_files` checked): no search.
                if let Some(newest) = s.kept.back().filter(|b| b.t <= t) {
                    return Some(Some(*newest));
                }
                let i = s.kept.partition_point(|b| b.t <= t).checked_sub(1);
                if i.is_none() && s.dropped.is_some() {
                    fail(&self.failure, format!("{symbol}: asked for the bar at {t}, older than the replay keeps"));
                }
                Some(i.map(|i| s.kept[i]))
            }
        }
    }

    /// The bars of `symbol` that began at or after `start` and have closed by `now`, oldest first.
    pub fn closed_between(&self, symbol: &str, start: Timestamp, now: Timestamp) -> Result<Vec<Bar>, String> {
        // A bar has closed by `now` when it began a minute or more before (`now` moved back once,
        // not each bar forward: this runs for every bot's symbol every minute).
        let last_open = now.saturating_sub(minutes(1)).unwrap_or(now);
        let closed = |b: &Bar| b.t <= last_open;
        match &mut *self.source.borrow_mut() {
            Source::Held(bars) => {
                let Some(bars) = bars.get(symbol) else { return Ok(Vec::new()) };
                let from = bars.partition_point(|b| b.t < start);
                let to = bars.partition_point(closed);
                Ok(bars[from..to.max(from)].to_vec())
            }
            Source::Streamed(streams) => {
                let Some(s) = streams.get_mut(symbol) else { return Ok(Vec::new()) };
                if s.dropped.is_some_and(|d| d >= start) {
                    let why = format!("{symbol}: asked for bars from {start}, older than the replay keeps");
                    fail(&self.failure, why.clone());
                    return Err(why);
                }
                s.asked_from = Some(start);
                s.reach(now, &self.failure);
                let from = s.kept.partition_point(|b| b.t < start);
                let to = s.kept.partition_point(closed);
                // Copied slice by slice: the window is most of what a bot reads every minute.
                let (front, back) = s.kept.as_slices();
                let (to, split) = (to.max(from), front.len());
                let mut out = Vec::with_capacity(to - from);
                out.extend_from_slice(&front[from.min(split)..to.min(split)]);
                out.extend_from_slice(&back[from.max(split) - split..to.max(split) - split]);
                Ok(out)
            }
        }
    }
}

/// Records the replay's first failure (later ones follow from it).
fn fail(failure: &Failure, why: String) {
    let _ = failure.set(why);
}

impl Stream {
    fn new(bars: OnDates) -> Stream {
        Stream { bars: Some(bars), first: None, next: None, kept: VecDeque::new(), dropped: None, asked_from: None }
    }

    /// Reads on until every bar that began at or before `t` is kept, then drops what is older than
    /// both `KEEP_MINUTES` before `t` and the latest request's start — always keeping the last
    /// bar before them, which a price at any later time may still need.
    fn reach(&mut self, t: Timestamp, failure: &Failure) {
        loop {
            if self.next.is_none() {
                self.next = self.read(failure);
            }
            match self.next {
                Some(b) if b.t <= t => {
                    self.first.get_or_insert(b);
                    self.kept.push_back(b);
                    self.next = None;
                }
                _ => break,
            }
        }
        let mut keep_from = t.saturating_sub(minutes(KEEP_MINUTES)).unwrap_or(t);
        if let Some(asked) = self.asked_from {
            keep_from = keep_from.min(asked);
        }
        while self.kept.get(1).is_some_and(|b| b.t < keep_from) {
            self.dropped = self.kept.pop_front().map(|b| b.t);
        }
    }

    /// The file's next bar on the replayed dates, `None` at its end.
    fn read(&mut self, failure: &Failure) -> Option<Bar> {
        match self.bars.as_mut()?.next() {
            Some(Ok(b)) => return Some(b),
            Some(Err(e)) => fail(failure, format!("{e} (the file changed since the backtest checked it)")),
            None => {}
        }
        self.bars = None;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::Dates;
    use crate::sim::bar_files;

    fn bar(m: i64, close: f64) -> Bar {
        let t = Timestamp::from_second(1_735_000_000 + 60 * m).unwrap_or(Timestamp::UNIX_EPOCH);
        Bar { t, open: close, high: close, low: close, close, volume: 1.0 }
    }

    fn at(m: i64) -> Timestamp {
        bar(m, 0.0).t
    }

    /// Both replays of the same bars, the streamed one from a file in a fresh folder (removed
    /// when the returned `TestDir` is dropped).
    fn both(name: &str, bars: &[Bar]) -> (crate::test_dir::TestDir, Replay, Replay) {
        let scratch = crate::test_dir::TestDir::new(&format!("replay-{name}"));
        let dir = scratch.path().to_path_buf();
        let mut text = format!("{}\n", bar_files::HEADER);
        for b in bars {
            text.push_str(&bar_files::line(b));
            text.push('\n');
        }
        std::fs::write(dir.join("SPY.csv"), text).unwrap();
        let checked = bar_files::check(&dir, Dates::new(None, None)).unwrap();
        let mut held = BySymbol::new();
        held.insert("SPY".to_string(), bars.to_vec());
        let streamed = Replay::streamed(&checked).unwrap();
        (scratch, Replay::held(Arc::new(held)), streamed)
    }

    #[test]
    fn the_streamed_replay_answers_as_the_held_one_while_the_clock_goes_forward() {
        // Two sessions a day apart, with a gap longer than the window kept.
        let bars: Vec<Bar> = (0..400).chain(4000..4400).map(|m| bar(m, 100.0 + m as f64 / 100.0)).collect();
        let (_scratch, mut held, mut streamed) = both("forward", &bars);
        for now in (-5..4500).step_by(7) {
            for r in [&mut held, &mut streamed] {
                assert!(r.has("SPY") && !r.has("QQQ"));
            }
            let price_at = at(now) - SignedDuration::from_secs(1);
            assert_eq!(held.last_at_or_before("SPY", price_at), streamed.last_at_or_before("SPY", price_at), "{now}");
            let start = at(now - 250);
            let a = held.closed_between("SPY", start, at(now)).unwrap();
            assert_eq!(a, streamed.closed_between("SPY", start, at(now)).unwrap(), "{now}");
        }
        assert!(streamed.failure().get().is_none());
        // Only a window is held: the first session is gone, its last bar kept for prices.
        let Source::Streamed(s) = &*streamed.source.borrow() else { panic!("streamed") };
        assert!(s["SPY"].kept.len() < 420, "{}", s["SPY"].kept.len());
    }

    #[test]
    fn a_window_that_wraps_around_the_kept_ring_is_copied_whole_and_in_order() {
        // Bars pushed at the back and dropped at the front wrap the ring's storage: a window
        // then lies in two slices, and the copy must join them.
        let bars: Vec<Bar> = (0..12_000).map(|m| bar(m, 100.0 + m as f64 / 100.0)).collect();
        let (_scratch, held, streamed) = both("wrap", &bars);
        let mut split = 0;
        for now in 3000..12_000 {
            let start = at(now - 160);
            let a = held.closed_between("SPY", start, at(now)).unwrap();
            assert_eq!(a, streamed.closed_between("SPY", start, at(now)).unwrap(), "{now}");
            assert_eq!(a.len(), 160, "{now}");
            let Source::Streamed(s) = &*streamed.source.borrow() else { panic!("streamed") };
            let (front, back) = s["SPY"].kept.as_slices();
            let from = s["SPY"].kept.partition_point(|b| b.t < start);
            if !back.is_empty() && from < front.len() && from + 160 > front.len() {
                split += 1;
            }
        }
        assert!(split > 0, "no window straddled the two slices");
    }

    #[test]
    fn a_question_older_than_the_window_is_the_replays_failure_not_a_wrong_answer() {
        let bars: Vec<Bar> = (0..5000).map(|m| bar(m, 100.0)).collect();
        let (_scratch, _, streamed) = both("back", &bars);
        assert_eq!(streamed.closed_between("SPY", at(4700), at(4800)).unwrap().len(), 100);
        let err = streamed.closed_between("SPY", at(10), at(4800)).unwrap_err();
        assert!(err.contains("older than the replay keeps"), "{err}");
        assert!(streamed.failure().get().is_some_and(|f| f.contains("SPY")));
    }

    #[test]
    fn a_file_that_changed_since_it_was_checked_fails_the_replay() {
        let scratch = crate::test_dir::TestDir::new("replay-changed");
        let dir = scratch.path().to_path_buf();
        let path = dir.join("SPY.csv");
        let good = format!(
            "{}\n{}\n{}\n",
            bar_files::HEADER,
            bar_files::line(&bar(0, 100.0)),
            bar_files::line(&bar(1, 101.0))
        );
        std::fs::write(&path, good).unwrap();
        let checked = bar_files::check(&dir, Dates::new(None, None)).unwrap();
        // Rewritten between the check and the replay: its second bar no longer reads.
        let bad = format!("{}\n{}\nnot a bar\n", bar_files::HEADER, bar_files::line(&bar(0, 100.0)));
        std::fs::write(&path, bad).unwrap();
        let streamed = Replay::streamed(&checked).unwrap();
        // The first bar is still answered; reading on to the next one finds the change.
        assert_eq!(streamed.last_at_or_before("SPY", at(5)).map(|b| b.close), Some(100.0));
        let failure = streamed.failure();
        assert!(failure.get().is_some_and(|f| f.contains("SPY.csv line 3") && f.contains("changed")), "{failure:?}");
    }
}
