//! The daemon's events as a test process logs them: a `log` logger that keeps every `event!`
//! record's fields in memory, for the library-level tests that drive the orchestrator in-process
//! (the binary's tests read the JSONL file instead). One logger per test process: the tests of a
//! binary run in parallel and share it, so a test picks its own events out by a field that only
//! it uses (a symbol, a bot).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use log::kv::{Key, Value, VisitSource};

/// One event: its name and its fields as text.
pub type Event = BTreeMap<String, String>;

struct Capture(Mutex<Vec<Event>>);

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target() != trading_hydra::core::logging::EVENT_TARGET {
            return;
        }
        struct Fields(Event);
        impl<'kvs> VisitSource<'kvs> for Fields {
            fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
                let text = value.to_borrowed_str().map_or_else(|| value.to_string(), str::to_string);
                self.0.insert(key.as_str().to_string(), text);
                Ok(())
            }
        }
        let mut fields = Fields(Event::new());
        let _ = record.key_values().visit(&mut fields);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(fields.0);
    }

    fn flush(&self) {}
}

/// Starts keeping events (once per process; later calls do nothing).
pub fn capture() {
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger in a test process");
        log::set_max_level(log::LevelFilter::Trace);
        c
    });
}

/// The events named `name` kept so far whose field `key` is `value`.
pub fn named(name: &str, key: &str, value: &str) -> Vec<Event> {
    let Some(c) = CAPTURE.get() else { return Vec::new() };
    let all = c.0.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .filter(|e| e.get("event").map(String::as_str) == Some(name) && e.get(key).map(String::as_str) == Some(value))
        .cloned()
        .collect()
}
