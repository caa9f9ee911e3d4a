//! The hand-worked AAPL day of the backtest tests, and the folder they run in.
//!
//! A session of one-minute bars (14:30Z on): flat at 100.00 for 40 bars, a climb of 0.20 a bar to
//! 103.00 at bar 54 (volume 3,000 there, 1,000 elsewhere) — the shipped mom_AAPL bot's entry
//! signal, filled at 103.00 — then 103.00 until the first of `steps`, each `(bar, price)` holding
//! from its bar on. Every bar's high and low are 0.05 either side of its close.

use jiff::Timestamp;

/// The day's bars as CSV rows (no header).
pub fn day(date: &str, steps: &[(usize, f64)]) -> String {
    let open: Timestamp = format!("{date}T14:30:00Z").parse().unwrap();
    let mut text = String::new();
    for i in 0..390usize {
        let c = match i {
            0..=39 => 100.0,
            40..=54 => 100.0 + (i - 39) as f64 * 0.2,
            _ => steps.iter().rev().find(|(from, _)| i >= *from).map_or(103.0, |(_, p)| *p),
        };
        let v = if i == 54 { 3000 } else { 1000 };
        let t = open + jiff::SignedDuration::from_mins(i as i64);
        text.push_str(&format!(
            "{},{c:.2},{:.2},{:.2},{c:.2},{v}\n",
            t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            c + 0.05,
            c - 0.05
        ));
    }
    text
}

/// A fresh folder `th-<name>-<pid>-<n>`, removed when dropped, with `config/` (the shipped files, no slippage, `bots.yaml`
/// passed through `edit`) and an empty `bars/`.
pub fn work(name: &str, edit: impl Fn(String) -> String) -> super::test_dir::TestDir {
    let work = super::test_dir::TestDir::new(name);
    std::fs::create_dir_all(work.join("config")).unwrap();
    std::fs::create_dir_all(work.join("bars")).unwrap();
    let settings =
        std::fs::read_to_string("config/settings.yaml").unwrap().replace("slippage_bps: 2", "slippage_bps: 0");
    std::fs::write(work.join("config/settings.yaml"), settings).unwrap();
    std::fs::write(work.join("config/bots.yaml"), edit(std::fs::read_to_string("config/bots.yaml").unwrap())).unwrap();
    work
}
