//! Logging: one JSON object per line to `system.log_path`, a readable line to stderr.
//!
//! Owns: the `event!` macro every event goes through (an event name plus typed key-value fields,
//! carried by `log`'s key-value support, never formatted into a string), the JSON and text
//! renderings of a record, and the log file with its size-based rotation and retention, written
//! by a thread of its own (`write_all`) from a bounded queue: a full, slow or hung disk drops
//! lines (and says how many once it catches up), never holds up the loop; and the clock the lines
//! are stamped by (`stamp_with`: the simulated clock in `run --sim`, else the wall clock).
//!
//! Never: writes a line for ureq's or rustls' wire traces (capped at `Warn`: they would print the
//! API keys), flushes the file per line (the runner asks for a flush once per iteration, so an SD
//! card sees one write per iteration; warnings and errors are flushed at once), waits on the
//! disk from the loop, or lets the file grow without bound.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use log::kv::{Key, Value, VisitSource, VisitValue};
use log::{Level, LevelFilter, Record};

use crate::core::clock::{self, Clock};

/// Logs an event: `event!(Info, "loop_summary", iteration = n, equity = e)`.
///
/// The field values keep their types (numbers stay numbers, `None` becomes `null`). A key is an
/// identifier or, for a name Rust reserves, a string: `"type" = "market"`.
#[macro_export]
macro_rules! event {
    ($level:ident, $name:literal $(, $key:tt = $value:expr)* $(,)?) => {
        ::log::log!(target: $crate::core::logging::EVENT_TARGET, ::log::Level::$level, event = $name $(, $key = $value)*; "{}", $name)
    };
}

/// The `log` target of every `event!`.
pub const EVENT_TARGET: &str = "trading_hydra::event";

/// Where and how to log.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep_files: u32,
    pub tz: TimeZone,
    pub file_level: LevelFilter,
    pub stderr_level: LevelFilter,
    /// Leave every iteration's `loop_summary` out of stderr (a person's console: the daemon
    /// prints a heartbeat line instead, `console_line`). The file keeps them all.
    pub quiet_summaries: bool,
}

/// The events a person's console leaves out (`LogSettings::quiet_summaries`).
const NOT_ON_THE_CONSOLE: &[&str] = &["loop_summary"];

#[derive(Debug)]
pub enum LogError {
    Open { path: PathBuf, error: std::io::Error },
    AlreadyInitialised,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Open { path, error } => {
                write!(
                    f,
                    "cannot open the log file {}: {error} (check system.log_path and the folder's permissions)",
                    path.display()
                )
            }
            LogError::AlreadyInitialised => f.write_str("the logger was set up twice"),
        }
    }
}

impl std::error::Error for LogError {}

/// The JSONL file, size-rotated: `app.jsonl` → `app.jsonl.1` → … → `app.jsonl.N`, the oldest
/// deleted.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    out: BufWriter<File>,
    size: u64,
    /// Set after the first write error, so a full disk prints one complaint, not one per line.
    failed: bool,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> Result<RotatingFile, LogError> {
        let err = |error| LogError::Open { path: path.to_path_buf(), error };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            out: BufWriter::with_capacity(16 * 1024, file),
            size,
            failed: false,
        })
    }

    /// Appends one line (given without its newline); rotates first when it would not fit.
    ///
    /// The line and its newline go to the buffer in one piece, so every time the buffer spills
    /// the file grows by whole lines: someone reading `app.jsonl` while the daemon writes it
    /// (`tail -f | jq`, `status`, the tests) never sees half a record unless a single line is
    /// longer than the buffer.
    pub fn write_line(&mut self, line: String) {
        let mut line = line;
        line.push('\n');
        let len = line.len() as u64;
        if self.size > 0
            && self.size + len > self.max_bytes
            && let Err(e) = self.rotate()
        {
            self.complain(&e);
        }
        match self.out.write_all(line.as_bytes()) {
            Ok(()) => self.size += len,
            Err(e) => self.complain(&e),
        }
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.complain(&e);
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            // Shift .N-1 → .N down to current → .1; a missing file in the chain is normal.
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.out = BufWriter::with_capacity(16 * 1024, file);
        self.size = 0;
        Ok(())
    }

    fn complain(&mut self, e: &std::io::Error) {
        if !self.failed {
            self.failed = true;
            eprintln!(
                "trading-hydra: cannot write the log file {}: {e}; further log lines may be lost",
                self.path.display()
            );
        }
    }
}

/// Lines waiting for the writer thread. A full queue drops lines (counted) rather than wait.
/// An iteration logs a handful, so 1,024 outlast minutes of a hung disk. Each queue's slots are
/// allocated and written up front (40 bytes a line to the file, 32 to stderr): at 4,096 the two
/// queues cost 288 KiB of the daemon's memory.
const QUEUE: usize = 1024;

/// What the loop hands the writer thread.
enum ToWriter {
    /// One JSON line; `flush`: write it out at once (warnings and errors).
    Line { text: String, flush: bool },
    /// Write out what is buffered (once per iteration).
    Flush,
    /// Write out everything queued so far, then say so (at exit).
    Drain(SyncSender<()>),
}

static WRITER: OnceLock<SyncSender<ToWriter>> = OnceLock::new();
/// Text lines for stderr, written by their own thread; a full queue drops them.
static STDERR: OnceLock<SyncSender<ToStderr>> = OnceLock::new();

enum ToStderr {
    Line(String),
    Drain(SyncSender<()>),
}
/// The clock the lines are stamped by: the simulated clock of `run --sim` (`stamp_with`), else
/// the wall clock. One clock for the daemon's lines, its ledger and its decisions.
static STAMPS: OnceLock<Arc<dyn Clock + Send + Sync>> = OnceLock::new();

/// Stamps every line from now on with `clock`'s time (`run --sim`: the simulated clock, so a
/// line's time is the time the bots decided at). Once per process; a second call is ignored.
pub fn stamp_with(clock: Arc<dyn Clock + Send + Sync>) {
    let _ = STAMPS.set(clock);
}

/// The time a line is stamped with now (`stamp_with`'s clock, else the wall clock).
pub fn now() -> Timestamp {
    STAMPS.get().map_or_else(Timestamp::now, |c| c.now())
}

/// Lines dropped because the writer was behind (a disk that hangs): told in the file when it
/// catches up.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Hands a message to the writer; never waits.
fn to_writer(msg: ToWriter) -> bool {
    WRITER.get().is_some_and(|w| w.try_send(msg).is_ok())
}

/// The writer thread: the only code that touches the file, so a disk that is full, slow or hung
/// holds up this thread and never the loop.
fn write_all(mut file: RotatingFile, inbox: Receiver<ToWriter>, tz: TimeZone) {
    for msg in inbox {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = serde_json::json!({
                "ts": clock::display_ts(now(), &tz),
                "level": "WARN",
                "event": "log_lines_dropped",
                "count": dropped,
                "detail": "the log file fell behind (a slow or hung disk); these lines were not written",
            });
            file.write_line(note.to_string());
        }
        match msg {
            ToWriter::Line { text, flush } => {
                file.write_line(text);
                if flush {
                    file.flush();
                }
            }
            ToWriter::Flush => file.flush(),
            ToWriter::Drain(done) => {
                file.flush();
                let _ = done.send(());
            }
        }
    }
}

/// Sets up the global logger. Call once, before the first event.
pub fn init(settings: &LogSettings) -> Result<(), LogError> {
    let file = RotatingFile::open(&settings.path, settings.max_bytes, settings.keep_files)?;
    let (queue, inbox) = sync_channel(QUEUE);
    WRITER.set(queue).map_err(|_| LogError::AlreadyInitialised)?;
    let tz_writer = settings.tz.clone();
    std::thread::Builder::new()
        .name("log".into())
        .spawn(move || write_all(file, inbox, tz_writer))
        .map_err(|error| LogError::Open { path: settings.path.clone(), error })?;

    let tz_file = settings.tz.clone();
    let tz_err = settings.tz.clone();
    let file_level = settings.file_level;
    let to_file = fern::Dispatch::new().level(file_level).chain(fern::Output::call(move |record| {
        let text = json_line(record, now(), &tz_file);
        if !to_writer(ToWriter::Line { text, flush: record.level() <= Level::Warn }) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }));
    // stderr (the journal, under systemd) gets a thread of its own: a stalled reader there must
    // not hold up the loop, nor the file.
    let (err_queue, err_inbox) = sync_channel::<ToStderr>(QUEUE);
    std::thread::Builder::new()
        .name("log-stderr".into())
        .spawn(move || {
            for msg in err_inbox {
                match msg {
                    // Not `eprintln!`, which panics when stderr is gone.
                    ToStderr::Line(line) => drop(writeln!(std::io::stderr(), "{line}")),
                    ToStderr::Drain(done) => drop(done.send(())),
                }
            }
        })
        .map_err(|error| LogError::Open { path: settings.path.clone(), error })?;
    let _ = STDERR.set(err_queue);
    let quiet = settings.quiet_summaries;
    let to_stderr = fern::Dispatch::new().level(settings.stderr_level).chain(fern::Output::call(move |record| {
        // Only the `event` field is looked up, not every field rendered.
        if quiet
            && record
                .key_values()
                .get(Key::from("event"))
                .is_some_and(|v| v.to_borrowed_str().is_some_and(|name| NOT_ON_THE_CONSOLE.contains(&name)))
        {
            return;
        }
        if let Some(q) = STDERR.get() {
            let _ = q.try_send(ToStderr::Line(text_line(record, now(), &tz_err)));
        }
    }));
    fern::Dispatch::new()
        .level(settings.file_level.max(settings.stderr_level))
        // ureq and rustls log raw traffic, auth headers included, at TRACE/DEBUG.
        .level_for("ureq", LevelFilter::Warn)
        .level_for("ureq_proto", LevelFilter::Warn)
        .level_for("rustls", LevelFilter::Warn)
        .chain(to_file)
        .chain(to_stderr)
        .apply()
        .map_err(|_| LogError::AlreadyInitialised)
}

/// A line for the person at the console (the heartbeat), on stderr only, through the same queue
/// as the events; never waits.
pub fn console_line(line: String) {
    if let Some(q) = STDERR.get() {
        let _ = q.try_send(ToStderr::Line(line));
    }
}

/// Asks the writer to write out the buffered lines (once per iteration); returns at once.
pub fn flush() {
    to_writer(ToWriter::Flush);
}

/// Waits, at most `limit`, until the writers (the file's and stderr's) have written out everything
/// logged so far: at exit,
/// so the last lines reach the file when the disk works, and the exit is not held up when not.
pub fn drain(limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    let (done, wait) = sync_channel(2);
    let mut asked = u32::from(to_writer(ToWriter::Drain(done.clone())));
    if let Some(q) = STDERR.get() {
        asked += u32::from(q.try_send(ToStderr::Drain(done)).is_ok());
    }
    for _ in 0..asked {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if wait.recv_timeout(left).is_err() {
            break;
        }
    }
}

/// Collects a record's key-value fields as JSON values, in the order they were written.
struct Fields(Vec<(String, serde_json::Value)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let mut v = JsonValue(serde_json::Value::Null);
        value.visit(&mut v)?;
        self.0.push((key.as_str().to_owned(), v.0));
        Ok(())
    }
}

struct JsonValue(serde_json::Value);

impl<'v> VisitValue<'v> for JsonValue {
    fn visit_any(&mut self, value: Value<'_>) -> Result<(), log::kv::Error> {
        self.0 = serde_json::Value::String(value.to_string());
        Ok(())
    }
    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        self.0 = serde_json::Value::Null;
        Ok(())
    }
    fn visit_u64(&mut self, v: u64) -> Result<(), log::kv::Error> {
        self.0 = v.into();
        Ok(())
    }
    fn visit_i64(&mut self, v: i64) -> Result<(), log::kv::Error> {
        self.0 = v.into();
        Ok(())
    }
    fn visit_f64(&mut self, v: f64) -> Result<(), log::kv::Error> {
        // NaN and infinities have no JSON form: null.
        self.0 = serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number);
        Ok(())
    }
    fn visit_bool(&mut self, v: bool) -> Result<(), log::kv::Error> {
        self.0 = v.into();
        Ok(())
    }
    fn visit_str(&mut self, v: &str) -> Result<(), log::kv::Error> {
        self.0 = v.into();
        Ok(())
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Splits a record into its event name and fields. A record that is not an `event!` (a library's
/// warning) becomes event `log` with its target and message.
fn event_of(record: &Record) -> (String, Vec<(String, serde_json::Value)>) {
    let mut fields = Fields(Vec::new());
    // Our visitor never fails; a failing source (another crate's) only loses its fields.
    let _ = record.key_values().visit(&mut fields);
    let mut fields = fields.0;
    let name = match fields.iter().position(|(k, _)| k == "event") {
        Some(i) => match fields.remove(i).1 {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        },
        None => {
            fields.push(("target".into(), record.target().into()));
            fields.push(("msg".into(), record.args().to_string().into()));
            "log".into()
        }
    };
    (name, fields)
}

/// One JSONL line: `{"ts":…,"level":…,"event":…, fields…}`, fields in the order written.
pub fn json_line(record: &Record, now: Timestamp, tz: &TimeZone) -> String {
    let (name, fields) = event_of(record);
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut line = String::with_capacity(256);
    line.push_str("{\"ts\":");
    line.push_str(&quote(&clock::display_ts(now, tz)));
    line.push_str(",\"level\":");
    line.push_str(&quote(level_name(record.level())));
    line.push_str(",\"event\":");
    line.push_str(&quote(&name));
    for (k, v) in fields {
        // `ts`, `level` and `event` belong to the envelope; a field may not repeat them.
        if matches!(k.as_str(), "ts" | "level" | "event") {
            continue;
        }
        line.push(',');
        line.push_str(&quote(&k));
        line.push(':');
        line.push_str(&v.to_string());
    }
    line.push('}');
    line
}

/// One stderr line: `2026-11-25 06:23:22 INFO loop_summary iteration=1 equity=null`.
pub fn text_line(record: &Record, now: Timestamp, tz: &TimeZone) -> String {
    let (name, fields) = event_of(record);
    let when = now.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d %H:%M:%S").to_string();
    let mut line = format!("{when} {:<5} {name}", record.level());
    for (k, v) in fields {
        match v {
            serde_json::Value::String(s) => line.push_str(&format!(" {k}={s:?}")),
            other => line.push_str(&format!(" {k}={other}")),
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn la() -> TimeZone {
        clock::time_zone("America/Los_Angeles").unwrap()
    }

    #[test]
    fn json_line_has_envelope_and_typed_fields() {
        let kvs: [(&str, Value); 5] = [
            ("event", Value::from("loop_summary")),
            ("iteration", Value::from(7u64)),
            ("equity", Value::from(100_000.5f64)),
            ("halted", Value::from(false)),
            ("day_start_equity", Value::null()),
        ];
        let args = format_args!("loop_summary");
        let record = Record::builder().level(Level::Info).target(EVENT_TARGET).args(args).key_values(&kvs).build();
        let now: Timestamp = "2026-11-25T14:23:22.5Z".parse().unwrap();
        let line = json_line(&record, now, &la());
        assert!(
            line.starts_with(r#"{"ts":"2026-11-25T06:23:22.500-08:00","level":"info","event":"loop_summary","#),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["iteration"], 7);
        assert_eq!(v["equity"], 100_000.5);
        assert_eq!(v["halted"], false);
        assert!(v["day_start_equity"].is_null());
        let text = text_line(&record, now, &la());
        assert_eq!(
            text,
            "2026-11-25 06:23:22 INFO  loop_summary iteration=7 equity=100000.5 halted=false day_start_equity=null"
        );
    }

    #[test]
    fn a_plain_library_record_becomes_a_log_event_with_escaped_text() {
        let args = format_args!("a \"quoted\"\nline");
        let record = Record::builder().level(Level::Warn).target("ureq").args(args).build();
        let line = json_line(&record, Timestamp::UNIX_EPOCH, &TimeZone::UTC);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "log");
        assert_eq!(v["target"], "ureq");
        assert_eq!(v["msg"], "a \"quoted\"\nline");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn rotation_keeps_the_configured_number_of_files() {
        let scratch = crate::test_dir::TestDir::new("log");
        let dir = scratch.path().to_path_buf();
        let path = dir.join("app.jsonl");
        let mut f = RotatingFile::open(&path, 1000, 2).unwrap();
        let line = "x".repeat(99); // 100 bytes with its newline
        for _ in 0..55 {
            f.write_line(line.clone());
        }
        f.flush();
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
        // 55 lines of 100 bytes in files of at most 1000 bytes: 10 + 10 + 10 + 10 + 10 + 5.
        assert_eq!(size(&path), Some(500));
        assert_eq!(size(&dir.join("app.jsonl.1")), Some(1000));
        assert_eq!(size(&dir.join("app.jsonl.2")), Some(1000));
        assert_eq!(size(&dir.join("app.jsonl.3")), None, "older files are deleted");
        // Reopening continues the current file's size.
        let mut again = RotatingFile::open(&path, 1000, 2).unwrap();
        assert_eq!(again.size, 500);
        again.write_line(line.clone());
        again.flush();
        assert_eq!(size(&path), Some(600));
    }

    #[test]
    fn the_file_grows_by_whole_lines_while_the_buffer_spills() {
        let scratch = crate::test_dir::TestDir::new("log-spill");
        let path = scratch.path().join("app.jsonl");
        let mut f = RotatingFile::open(&path, 10_000_000, 1).unwrap();
        // 113-byte lines in a 16,384-byte buffer: (144 + 1) × 113 = 16,385, so the 145th
        // record is the one that does not fit. Written as line and newline apart, the buffer
        // spilled with the 145th line in it and its newline not; written whole, the spill
        // stops after the 144th.
        for n in 0..145 {
            f.write_line(format!("{n:0>112}"));
        }
        let seen = std::fs::read(&path).unwrap();
        assert!(!seen.is_empty(), "the buffer spilled before any flush");
        assert_eq!(seen.last(), Some(&b'\n'), "a reader sees {} bytes ending mid-record", seen.len());
        assert_eq!(seen.len(), 144 * 113);
    }
}
