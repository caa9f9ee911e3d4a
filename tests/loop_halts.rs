//! The orchestrator's halts, driven by a clock the test moves: the API-failure window trips and
//! clears exactly at its edges, halts persist across a restart, a daily-loss halt holds until the
//! next New York trading date, and a panicking iteration becomes an `internal_error` halt.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::{SignedDuration, Timestamp};
use trading_hydra::core::clock::{Clock, ManualClock};
use trading_hydra::core::config::{Config, Sim};
use trading_hydra::core::halt::{Halt, HaltReason};
use trading_hydra::core::state::State;
use trading_hydra::orchestrator::Orchestrator;
use trading_hydra::sim::sim_broker::SimBroker;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[path = "../src/test_dir.rs"]
mod test_dir;

fn temp_dir(name: &str) -> test_dir::TestDir {
    test_dir::TestDir::new(&format!("loop-{name}"))
}

/// The shipped config with a 5-failure / 60-second window and a 10-minute cool-off.
fn config(dir: &Path) -> Config {
    let mut cfg = Config::load(Path::new("config")).unwrap();
    cfg.settings.system.state_db_path = dir.join("state.db");
    cfg.settings.health.max_api_failures_in_window = 5;
    cfg.settings.health.api_failure_window_seconds = 60;
    cfg.bots.exitbot.cooloff_minutes = 10;
    cfg
}

/// An orchestrator on the simulated broker, both driven by the test's clock.
fn orchestrator(cfg: &Config, clock: &Arc<ManualClock>) -> Orchestrator {
    let state = State::open(&cfg.settings.system.state_db_path).unwrap();
    let broker = SimBroker::open(clock.clone(), Sim::default(), 1, None).unwrap();
    Orchestrator::new(cfg.clone(), state, Box::new(clock.clone()), Box::new(broker))
}

#[test]
fn api_failure_window_trips_and_clears_exactly_at_the_edges() {
    let dir = temp_dir("api");
    let cfg = config(&dir);
    let t0 = ts("2026-11-25T15:00:00Z");
    let clock = Arc::new(ManualClock::new(t0));
    let mut o = orchestrator(&cfg, &clock);

    // Four failures: not yet.
    for s in 0..4 {
        o.health_mut().record_failure(t0 + SignedDuration::from_secs(s * 10));
    }
    clock.set(t0 + SignedDuration::from_secs(40));
    let s = o.run_iteration();
    assert!(!s.halted && s.entries_allowed, "{s:?}");

    // The fifth inside the window trips it.
    let last = t0 + SignedDuration::from_secs(50);
    o.health_mut().record_failure(last);
    clock.set(last);
    let s = o.run_iteration();
    assert!(s.halted && !s.entries_allowed);
    assert_eq!(s.halts, vec![HaltReason::ApiFailures]);

    // Clean window (last + 60 s) but cool-off (last + 10 min) not over: still halted.
    clock.set(last + SignedDuration::from_secs(60));
    assert!(o.run_iteration().halted);
    // One nanosecond before the end of the cool-off: still halted.
    clock.set(last + SignedDuration::from_mins(10) - SignedDuration::from_nanos(1));
    assert!(o.run_iteration().halted);

    // A restart in between starts with an empty health window: the stored `until` still holds.
    drop(o);
    let mut o = orchestrator(&cfg, &clock);
    assert!(o.run_iteration().halted, "a restart must not lift the halt early");

    // Exactly at the end of the cool-off it lifts itself.
    clock.set(last + SignedDuration::from_mins(10));
    let s = o.run_iteration();
    assert!(!s.halted && s.entries_allowed, "{s:?}");
}

#[test]
fn failures_that_keep_coming_extend_the_halt() {
    let dir = temp_dir("extend");
    let cfg = config(&dir);
    let t0 = ts("2026-11-25T15:00:00Z");
    let clock = Arc::new(ManualClock::new(t0));
    let mut o = orchestrator(&cfg, &clock);
    for s in 0..5 {
        o.health_mut().record_failure(t0 + SignedDuration::from_secs(s));
    }
    assert!(o.run_iteration().halted);
    // Five more failures five minutes later: the halt now lasts until 10 minutes after those.
    let later = t0 + SignedDuration::from_mins(5);
    for s in 0..5 {
        o.health_mut().record_failure(later + SignedDuration::from_secs(s));
    }
    clock.set(later + SignedDuration::from_secs(5));
    assert!(o.run_iteration().halted);
    clock.set(t0 + SignedDuration::from_mins(11));
    assert!(o.run_iteration().halted, "the first cool-off is over, the second is not");
    clock.set(later + SignedDuration::from_secs(4) + SignedDuration::from_mins(10));
    assert!(!o.run_iteration().halted);
}

#[test]
fn daily_loss_and_manual_halts_hold_and_block_entries() {
    let dir = temp_dir("daily");
    let cfg = config(&dir);
    // 15:00 New York on Wednesday 2026-11-25 (20:00Z); the next trading date starts 05:00Z.
    let clock = Arc::new(ManualClock::new(ts("2026-11-25T20:00:00Z")));
    {
        let state = State::open(&cfg.settings.system.state_db_path).unwrap();
        let since = clock.now();
        let until = Some(ts("2026-11-26T05:00:00Z"));
        state.set_halt(&Halt { reason: HaltReason::DailyLoss, detail: "-1.2 %".into(), since, until }).unwrap();
        state.set_halt(&Halt { reason: HaltReason::Manual, detail: "earnings".into(), since, until: None }).unwrap();
    }
    let mut o = orchestrator(&cfg, &clock);
    let s = o.run_iteration();
    assert!(s.halted && !s.entries_allowed);
    assert_eq!(s.halts.len(), 2);

    // 23:59:59 New York: the daily-loss halt still holds (the Python daemon used the UTC date,
    // which had already turned at 19:00 New York).
    clock.set(ts("2026-11-26T04:59:59Z"));
    assert_eq!(o.run_iteration().halts, vec![HaltReason::DailyLoss, HaltReason::Manual]);
    // Midnight New York: the daily-loss halt lifts; the manual one never lifts itself.
    clock.set(ts("2026-11-26T05:00:00Z"));
    assert_eq!(o.run_iteration().halts, vec![HaltReason::Manual]);
    clock.set(ts("2027-01-01T00:00:00Z"));
    assert_eq!(o.run_iteration().halts, vec![HaltReason::Manual]);
}

/// A clock that panics once when armed: a stand-in for any bug inside an iteration.
struct TrapClock {
    inner: ManualClock,
    armed: AtomicBool,
}

impl Clock for TrapClock {
    fn now(&self) -> Timestamp {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("boom inside the iteration");
        }
        self.inner.now()
    }
}

#[test]
fn a_panicking_iteration_becomes_an_internal_error_halt_and_the_loop_goes_on() {
    let dir = temp_dir("panic");
    let cfg = config(&dir);
    let clock =
        Arc::new(TrapClock { inner: ManualClock::new(ts("2026-11-25T15:00:00Z")), armed: AtomicBool::new(false) });
    let state = State::open(&cfg.settings.system.state_db_path).unwrap();
    let broker = SimBroker::open(clock.clone(), Sim::default(), 1, None).unwrap();
    let mut o = Orchestrator::new(cfg.clone(), state, Box::new(clock.clone()), Box::new(broker));
    assert!(!o.run_iteration_guarded().unwrap().halted);

    clock.armed.store(true, Ordering::SeqCst);
    assert_eq!(o.run_iteration_guarded(), None);

    // The next iteration runs, halted by the bug, and stays halted until an operator resumes.
    let s = o.run_iteration_guarded().unwrap();
    assert_eq!(s.halts, vec![HaltReason::InternalError]);
    assert!(!s.entries_allowed);
    let halts = o.state().active_halts().unwrap();
    assert!(halts[0].detail.contains("boom inside the iteration"), "{:?}", halts[0]);
}

#[test]
fn every_iteration_records_a_loop_run() {
    let dir = temp_dir("runs");
    let cfg = config(&dir);
    let clock = Arc::new(ManualClock::new(ts("2026-11-25T15:00:00Z")));
    let mut o = orchestrator(&cfg, &clock);
    for _ in 0..3 {
        clock.advance(SignedDuration::from_secs(5));
        o.run_iteration();
    }
    let before = Timestamp::now();
    let last = o.state().last_loop_run().unwrap().unwrap();
    assert_eq!(last.iteration, 3);
    // Liveness is the wall clock's, whatever the market's clock says.
    assert!(before.duration_since(last.started_at) < SignedDuration::from_secs(60));
    // The simulated account's equity and its day-start reference (first seen: a new account
    // has no previous close).
    assert_eq!(last.equity, Some(100_000.0));
    assert_eq!(last.day_start_equity, Some(100_000.0));
    assert_eq!(last.daily_pnl_pct, Some(0.0));
    assert_eq!(o.state().day_start(jiff::civil::date(2026, 11, 25)).unwrap().unwrap().source, "first_seen");
    assert_eq!(o.state().loop_run_count().unwrap(), 3);
}
