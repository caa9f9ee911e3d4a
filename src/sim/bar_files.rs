//! Bar files: one CSV per symbol, `timestamp,open,high,low,close,volume`, timestamps in UTC
//! RFC 3339, named after the symbol with `/` written as `-` (`SPY.csv`, `BTC-USD.csv`).
//!
//! Owns: reading and writing that format, whole (`read`) or a bar at a time (`Reader`, which
//! `read` is built on: one parser; `OnDates`, the bars of some trading dates); `check`, the pass
//! that proves a folder's files good before a backtest streams them, noting the minutes their bars
//! begin at (`Minutes`, a bit a minute: the replay's steps without a second pass); and `resume`, where
//! `download` goes on in a file. Never: guesses — a file with another header, a line that does
//! not parse, or bars out of order is an error naming the file and the line.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::clock::Dates;
use crate::core::market_data::{Bar, BySymbol};

pub const HEADER: &str = "timestamp,open,high,low,close,volume";

/// The symbol a file holds: its name without `.csv`, `-` read as `/` (`BTC-USD.csv` → `BTC/USD`).
pub fn symbol_of(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    (path.extension()?.to_str()? == "csv").then(|| stem.replace('-', "/"))
}

/// The file name for a symbol.
pub fn file_name(symbol: &str) -> String {
    format!("{}.csv", symbol.replace('/', "-"))
}

/// The bar files of `path` by symbol: the file itself, or every `.csv` file of a folder.
pub fn files(path: &Path) -> Result<BySymbol<PathBuf>, String> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot read the folder {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = BySymbol::new();
    for f in files {
        let symbol = symbol_of(&f).ok_or_else(|| format!("{}: not a .csv file named after a symbol", f.display()))?;
        out.insert(symbol, f);
    }
    if out.is_empty() {
        return Err(format!("{}: no .csv bar files", path.display()));
    }
    Ok(out)
}

/// Reads one file, or every `.csv` file of a folder, whole.
pub fn read(path: &Path) -> Result<BySymbol<Vec<Bar>>, String> {
    let mut out = BySymbol::new();
    for (symbol, f) in files(path)? {
        let mut bars = Reader::open(&f)?.collect::<Result<Vec<Bar>, String>>()?;
        // A year of minutes is big: give back what the vector grew past.
        bars.shrink_to_fit();
        out.insert(symbol, bars);
    }
    Ok(out)
}

/// A bar file read a bar at a time, oldest first: each item a bar, or the error that ends it
/// (the file, the line, and what is wrong with it).
pub struct Reader {
    path: PathBuf,
    input: BufReader<File>,
    /// The line being read, its buffer reused line after line.
    line: String,
    line_no: usize,
    /// Where the line being read starts in the file, and where the next one will.
    line_start: u64,
    offset: u64,
    /// Whether the last line read had no line end: the file ends inside it, with `torn_line`.
    torn: bool,
    torn_line: String,
    last: Option<Timestamp>,
    done: bool,
}

impl Reader {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Reader, String> {
        let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut r = Reader {
            path: path.to_path_buf(),
            input: BufReader::with_capacity(64 * 1024, file),
            line: String::with_capacity(128),
            line_no: 0,
            line_start: 0,
            offset: 0,
            torn: false,
            torn_line: String::new(),
            last: None,
            done: false,
        };
        match r.read_line() {
            Ok(true) if r.line.trim() == HEADER => Ok(r),
            Ok(_) => Err(format!("{}: line 1 must be {HEADER:?}, got {:?}", path.display(), r.line)),
            Err(e) => Err(e),
        }
    }

    /// The next line into `line`, without its end (`\n` or `\r\n`, as `str::lines` reads it);
    /// false at the end of the file.
    fn read_line(&mut self) -> Result<bool, String> {
        self.line.clear();
        let n =
            self.input.read_line(&mut self.line).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        if n > 0 {
            self.line_start = self.offset;
            self.offset += n as u64;
            self.torn = !self.line.ends_with('\n');
            if self.torn {
                self.torn_line.clone_from(&self.line);
            }
        }
        if self.line.ends_with('\n') {
            self.line.pop();
            if self.line.ends_with('\r') {
                self.line.pop();
            }
        }
        self.line_no += 1;
        Ok(n > 0)
    }
}

impl Iterator for Reader {
    type Item = Result<Bar, String>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.read_line() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            if self.line.trim().is_empty() {
                continue;
            }
            let bar = parse(&self.line, self.last)
                .map_err(|why| format!("{} line {}: {why}: {:?}", self.path.display(), self.line_no, self.line));
            // An error ends the file: nothing after a bad line is trusted.
            match bar {
                Ok(b) => self.last = Some(b.t),
                Err(_) => self.done = true,
            }
            return Some(bar);
        }
        None
    }
}

/// One line of a file as a bar, after the bar at `last`; the error says what is wrong with it.
fn parse(line: &str, last: Option<Timestamp>) -> Result<Bar, &'static str> {
    let mut fields = [""; 6];
    let mut n = 0;
    let mut start = 0;
    // Split at the commas by hand: `str::split` was a sixth of the time of reading a file. A
    // comma is one byte, so every cut is at a character boundary.
    for (i, b) in line.bytes().enumerate().chain(std::iter::once((line.len(), b','))) {
        if b == b',' {
            if let Some(slot) = fields.get_mut(n) {
                *slot = trim(&line[start..i]);
            }
            n += 1;
            start = i + 1;
        }
    }
    if n != 6 {
        return Err("expected 6 fields");
    }
    let t = timestamp(fields[0]).ok_or("bad timestamp")?;
    let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    let (Some(open), Some(high), Some(low), Some(close), Some(volume)) =
        (num(fields[1]), num(fields[2]), num(fields[3]), num(fields[4]), num(fields[5]))
    else {
        return Err("prices and volume must be numbers, not negative");
    };
    if last.is_some_and(|last| last >= t) {
        return Err("timestamps must increase");
    }
    Ok(Bar { t, open, high, low, close, volume })
}

/// `str::trim`, skipped when the field neither starts nor ends with a space (nearly always).
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// An RFC 3339 timestamp. The form these files are written in, `2026-11-25T14:30:00Z`, is read
/// directly (a year of ten symbols is a million of them); anything else goes to jiff's parser,
/// which gives the same instant for this form too (tested).
fn timestamp(s: &str) -> Option<Timestamp> {
    fast_timestamp(s).or_else(|| s.parse().ok())
}

fn fast_timestamp(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let shape = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    if !shape {
        return None;
    }
    let digits = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    let (y, mo, d) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (h, mi, sec) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    // A leap second (:60) or any other odd case is jiff's to judge.
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // Refuses a day the month does not have (2026-02-30).
    Date::new(i16::try_from(y).ok()?, i8::try_from(mo).ok()?, i8::try_from(d).ok()?).ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Timestamp::from_second(days * 86_400 + h * 3600 + mi * 60 + sec).ok()
}

/// Where `download` goes on in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The file is new (or empty): it needs the header first.
    pub header: bool,
    /// The last bar already there.
    pub last: Option<Timestamp>,
    /// A last line cut off mid-write that was removed (a power cut or a full disk during an
    /// earlier download: `download` writes whole lines only).
    pub cut: Option<String>,
}

/// Reads `path` (if it exists) through to where `download` goes on. A last line without its line
/// end is removed from the file, even if it reads as a bar (its last digits may be missing): the
/// download fetches that bar again. Any other bad line is an error naming it, since appending
/// after it would bury it.
pub fn resume(path: &Path) -> Result<Resume, String> {
    match std::fs::metadata(path).map(|m| m.len()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Resume { header: true, last: None, cut: None });
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        Ok(0) => return Ok(Resume { header: true, last: None, cut: None }),
        Ok(_) => {}
    }
    let mut reader = Reader::open(path)?;
    if reader.torn {
        // The header alone, without its line end: start the file again.
        cut_at(path, 0)?;
        return Ok(Resume { header: true, last: None, cut: Some(reader.torn_line) });
    }
    let mut last = None;
    loop {
        let bar = reader.next();
        if reader.torn {
            cut_at(path, reader.line_start)?;
            return Ok(Resume { header: false, last, cut: Some(reader.torn_line) });
        }
        match bar {
            None => return Ok(Resume { header: false, last, cut: None }),
            Some(Ok(b)) => last = Some(b.t),
            Some(Err(e)) => {
                return Err(format!(
                    "{e}: download appends after the last bar, so it will not write after a bad line (fix or remove it, or the file)"
                ));
            }
        }
    }
}

/// Shortens `path` to its first `len` bytes, durably.
fn cut_at(path: &Path, len: u64) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {} to remove its cut-off last line: {e}", path.display()))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot remove the cut-off last line of {}: {e}", path.display()))
}

/// Bar files proven good by `check`, each with how many bars it has on the chosen dates; files
/// with none are left out. `minutes`: the minutes at which each has bars on those dates, for the
/// files whose bars all begin on a whole minute within `Minutes::MAX_SPAN` of each other, while
/// they fit in `Minutes::WORDS_KEPT`.
#[derive(Debug)]
pub struct Checked {
    pub files: BySymbol<(PathBuf, u64)>,
    pub minutes: BySymbol<Minutes>,
    pub dates: Dates,
    /// The bars themselves, on the chosen dates, when all of them together are no more than
    /// `HOLD_BARS` and their files no more than `HOLD_FILE_BYTES`: read once, kept, and replayed
    /// from memory instead of read a second time.
    pub held: Option<BySymbol<Vec<Bar>>>,
}

/// The most bars `check` keeps for the replay (12 MiB of them: a quarter of a year of ten
/// symbols' sessions, the benchmark's 21 days three times over); more are streamed from their
/// files, so a year of ten symbols is still never in memory at once. Measured worth (cachegrind,
/// the bench's 21-day backtest, 2026-12-07): the second reading of the files was 6.5 % of the
/// run's instructions.
pub const HOLD_BARS: usize = 1 << 18;

/// Files together larger than this are not held at all, not even while `check` finds out how
/// many of their bars fall on the chosen dates: holding a year's first quarter and then letting
/// it go raised that year's peak memory from 39 to 61 MB. (A bar's line is about 60 bytes.)
pub const HOLD_FILE_BYTES: u64 = 16 << 20;

/// Reads every bar file of `path` through once, before anything runs: a bad file is refused
/// here, as `read` refuses it (a bad line outside `dates` too), without holding its bars — only
/// the minutes they begin at, a bit each, from which the replay's steps are merged without a
/// second pass over the files. Measured worth (cachegrind, the bench's 21-day backtest,
/// 2026-12-06): the second pass (`WORDS_KEPT` 0) costs 5.7 % more instructions (4,119.2 M
/// against 3,895.4 M), past the 5 % a second code path must earn.
pub fn check(path: &Path, dates: Dates) -> Result<Checked, String> {
    check_noting(path, dates, Minutes::WORDS_KEPT, HOLD_BARS)
}

/// `check`, keeping at most `words_budget` words of minutes and `hold_budget` bars.
fn check_noting(path: &Path, dates: Dates, words_budget: usize, hold_budget: usize) -> Result<Checked, String> {
    let (mut out, mut minutes) = (BySymbol::new(), BySymbol::new());
    let mut words_kept = 0usize;
    let files = files(path)?;
    let bytes: u64 =
        files.values().map(|f| std::fs::metadata(f).map_or(u64::MAX, |m| m.len())).fold(0, u64::saturating_add);
    let mut held: Option<BySymbol<Vec<Bar>>> = (bytes <= HOLD_FILE_BYTES).then(BySymbol::new);
    let mut held_count = 0usize;
    for (symbol, f) in files {
        let mut count = 0u64;
        let mut kept = Some(Minutes::default());
        let mut bars = Vec::new();
        for bar in Reader::open(&f)? {
            let bar = bar?;
            if dates.contains(bar.t) {
                count += 1;
                if kept.as_mut().is_some_and(|m| !m.insert(bar.t)) {
                    kept = None;
                }
                if held.is_some() {
                    held_count += 1;
                    if held_count > hold_budget {
                        // Too many to hold: every file is streamed, and what was kept is freed.
                        (held, bars) = (None, Vec::new());
                    } else {
                        bars.push(bar);
                    }
                }
            }
        }
        if count > 0 {
            if let Some(m) = kept.filter(|m| words_kept + m.words.len() <= words_budget) {
                words_kept += m.words.len();
                minutes.insert(symbol.clone(), m);
            }
            if let Some(h) = held.as_mut() {
                bars.shrink_to_fit();
                h.insert(symbol.clone(), bars);
            }
            out.insert(symbol, (f, count));
        }
    }
    Ok(Checked { files: out, minutes, dates, held })
}

/// The minutes at which one file's bars begin, one bit a minute counted from a whole word of 64
/// minutes since the epoch (so the sets of several files line up word for word).
#[derive(Debug, Default)]
pub struct Minutes {
    /// The first word's number (minutes since the epoch / 64).
    first_word: i64,
    words: Vec<u64>,
}

impl Minutes {
    /// Four years of minutes, 256 KiB of bits: a longer file is read again for its steps.
    pub const MAX_SPAN: i64 = 4 * 366 * 24 * 60;

    /// The bits kept for all the files together: 8 MiB, a year of 128 files (a folder of many
    /// more files than a configuration trades would otherwise hold a year's bits for each). The
    /// files beyond it are read again for their steps.
    pub const WORDS_KEPT: usize = 1 << 20;

    /// Notes a bar that begins at `t`, later than those noted before; false when the set cannot
    /// hold it (`t` is not on a whole minute, or beyond `MAX_SPAN` of the first), and the set is
    /// then of no use.
    fn insert(&mut self, t: Timestamp) -> bool {
        if t.subsec_nanosecond() != 0 || t.as_second().rem_euclid(60) != 0 {
            return false;
        }
        let minute = t.as_second().div_euclid(60);
        if self.words.is_empty() {
            self.first_word = minute.div_euclid(64);
        }
        let Ok(word) = usize::try_from(minute.div_euclid(64) - self.first_word) else { return false };
        if word as i64 * 64 > Self::MAX_SPAN {
            return false;
        }
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << minute.rem_euclid(64);
        true
    }

    /// Every minute at which one of `sets` has a bar, oldest first, once.
    pub fn merged(sets: &[&Minutes]) -> Vec<Timestamp> {
        let used = || sets.iter().filter(|m| !m.words.is_empty());
        let (Some(from), Some(to)) =
            (used().map(|m| m.first_word).min(), used().map(|m| m.first_word + m.words.len() as i64).max())
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for word in from..to {
            let mut bits = 0u64;
            for m in used() {
                let i = usize::try_from(word - m.first_word).ok();
                bits |= i.and_then(|i| m.words.get(i)).copied().unwrap_or(0);
            }
            while bits != 0 {
                let minute = word * 64 + i64::from(bits.trailing_zeros());
                // A minute of a bar that parsed: a representable instant.
                if let Ok(t) = Timestamp::from_second(minute * 60) {
                    out.push(t);
                }
                bits &= bits - 1;
            }
        }
        out
    }
}

impl Checked {
    /// The bars of `symbol`'s file on the checked dates, a bar at a time.
    pub fn open(&self, symbol: &str) -> Result<OnDates, String> {
        let (path, _) = self.files.get(symbol).ok_or_else(|| format!("no checked bar file holds {symbol}"))?;
        Ok(OnDates { reader: Reader::open(path)?, dates: self.dates })
    }
}

/// A file's bars on some trading dates (it stops at the first bar after them).
pub struct OnDates {
    reader: Reader,
    dates: Dates,
}

impl Iterator for OnDates {
    type Item = Result<Bar, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.reader.next()? {
                Ok(b) if self.dates.contains(b.t) => return Some(Ok(b)),
                Ok(b) if self.dates.ended_by(b.t) => {
                    self.reader.done = true;
                    return None;
                }
                Ok(_) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// One line of the file for a bar.
pub fn line(b: &Bar) -> String {
    let mut s = String::with_capacity(80);
    // Writing to a String cannot fail.
    let _ =
        write!(s, "{},{},{},{},{},{}", b.t.strftime("%Y-%m-%dT%H:%M:%SZ"), b.open, b.high, b.low, b.close, b.volume);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_own_timestamps_are_read_as_jiff_reads_them() {
        let mut cases = vec![
            "2026-11-25T14:30:00Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2000-02-29T12:00:00Z",
            "2024-02-29T23:59:59Z",
            "2100-03-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ];
        // Every day of three years, one of them leap, at a few times of day.
        let first: Date = "2023-12-30".parse().unwrap();
        let days: Vec<String> = (0..3 * 366)
            .filter_map(|n| first.checked_add(jiff::Span::new().days(n)).ok())
            .flat_map(|d| ["00:00:00", "04:59:59", "13:07:42", "23:59:59"].map(|t| format!("{d}T{t}Z")))
            .collect();
        cases.extend(days.iter().map(String::as_str));
        for s in cases {
            // The last is past jiff's range: both refuse it.
            assert_eq!(fast_timestamp(s), s.parse::<Timestamp>().ok(), "{s}");
            assert!(fast_timestamp(s).is_some() || s.starts_with("9999"), "{s}");
        }
        // Other forms are left to jiff, and what neither reads is refused.
        for s in ["2026-11-25T14:30:00+00:00", "2026-11-25t14:30:00z", "2026-11-25T14:30:00.5Z"] {
            assert_eq!(fast_timestamp(s), None, "{s}");
            assert_eq!(timestamp(s), Some(s.parse::<Timestamp>().unwrap()), "{s}");
        }
        for s in [
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T1:30:00Z",
            "2026-1a-25T14:30:00Z",
        ] {
            assert_eq!(fast_timestamp(s), None, "{s}");
            assert_eq!(timestamp(s), s.parse::<Timestamp>().ok(), "{s}");
        }
    }

    #[test]
    fn a_download_resumes_after_the_last_whole_line_and_refuses_a_bad_one() {
        let scratch = crate::test_dir::TestDir::new("resume");
        let dir = scratch.path().to_path_buf();
        let path = dir.join("SPY.csv");
        let t = |s: &str| -> Timestamp { s.parse().unwrap() };
        let (a, b) = ("2026-11-25T14:30:00Z,1,1,1,1,10\n", "2026-11-25T14:31:00Z,1,1,1,1,10\n");
        let fresh = Resume { header: true, last: None, cut: None };
        assert_eq!(resume(&path).unwrap(), fresh, "no file yet");
        std::fs::write(&path, "").unwrap();
        assert_eq!(resume(&path).unwrap(), fresh, "an empty file");
        std::fs::write(&path, format!("{HEADER}\n")).unwrap();
        assert_eq!(resume(&path).unwrap(), Resume { header: false, last: None, cut: None });
        std::fs::write(&path, format!("{HEADER}\n{a}{b}")).unwrap();
        let whole = Resume { header: false, last: Some(t("2026-11-25T14:31:00Z")), cut: None };
        assert_eq!(resume(&path).unwrap(), whole);
        // Cut off mid-line: bad, or still reading as a bar with a shorter volume. Either way the
        // line is removed and the bar before it is where the download goes on.
        for torn in ["2026-11-25T14:32:0", "2026-11-25T14:32:00Z,1,1,1,1,1", "  "] {
            std::fs::write(&path, format!("{HEADER}\n{a}{b}{torn}")).unwrap();
            assert_eq!(resume(&path).unwrap(), Resume { cut: Some(torn.to_string()), ..whole.clone() }, "{torn:?}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{HEADER}\n{a}{b}"));
        }
        std::fs::write(&path, HEADER).unwrap();
        assert_eq!(resume(&path).unwrap(), Resume { cut: Some(HEADER.to_string()), ..fresh.clone() });
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        // A bad whole line is not appended after: the error names it, the file is left as it is.
        let bad = format!("{HEADER}\n{a}2026-11-25T14:31:00Z,1,x,1,1,10\n{b}");
        std::fs::write(&path, &bad).unwrap();
        let err = resume(&path).unwrap_err();
        assert!(err.contains("SPY.csv line 3") && err.contains("will not write after a bad line"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
    }

    /// The steps merged from the minutes `check` noted are every bar's time, oldest first, once,
    /// across files that start, pause and end at different minutes (words of 64 not lined up with
    /// any of them); a file with a bar off a whole minute, or longer than the span kept, notes
    /// none (its steps are read from the file again).
    #[test]
    fn the_minutes_check_notes_merge_into_every_bars_time_once() {
        let scratch = crate::test_dir::TestDir::new("minutes");
        let dir = scratch.path().to_path_buf();
        let base = 1_735_000_000 / 60 * 60 + 17 * 60;
        let at = |m: i64| Timestamp::from_second(base + 60 * m).unwrap();
        let write = |name: &str, times: &[Timestamp]| {
            let mut text = format!("{HEADER}\n");
            for t in times {
                text.push_str(&line(&Bar { t: *t, open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 1.0 }));
                text.push('\n');
            }
            std::fs::write(dir.join(name), text).unwrap();
        };
        let spy: Vec<Timestamp> = (0..390).chain(1440..1830).map(at).collect();
        let qqq: Vec<Timestamp> = (5..200).step_by(3).chain(1500..1501).chain(5000..5063).map(at).collect();
        write("SPY.csv", &spy);
        write("QQQ.csv", &qqq);
        write("IWM.csv", &[at(10), at(11) + jiff::SignedDuration::from_secs(30)]);
        write("DIA.csv", &[at(0), at(Minutes::MAX_SPAN + 128)]);
        let checked = check(&dir, Dates::new(None, None)).unwrap();
        assert_eq!(checked.minutes.keys().collect::<Vec<_>>(), ["QQQ", "SPY"], "IWM and DIA note none");
        let mut want: Vec<Timestamp> = spy.iter().chain(&qqq).copied().collect();
        want.sort();
        want.dedup();
        let sets: Vec<&Minutes> = checked.minutes.values().collect();
        assert_eq!(Minutes::merged(&sets), want);
        assert_eq!(Minutes::merged(&sets[..1]), qqq);
        assert_eq!(Minutes::merged(&[]), Vec::<Timestamp>::new());
        // Only the chosen dates are noted.
        let day = crate::core::clock::trading_date(at(1500));
        let one = check(&dir, Dates::new(Some(day), Some(day))).unwrap();
        let on_day: Vec<Timestamp> =
            want.iter().copied().filter(|t| crate::core::clock::trading_date(*t) == day).collect();
        assert_eq!(Minutes::merged(&one.minutes.values().collect::<Vec<_>>()), on_day);
        assert!(!on_day.is_empty() && on_day.len() < want.len());
        // Beyond the budget of bits kept, the files go without (QQQ's 80 words fit, then SPY's
        // 29 do not): their steps come from reading them again.
        let words = |m: &Minutes| m.words.len();
        assert_eq!((words(&checked.minutes["QQQ"]), words(&checked.minutes["SPY"])), (80, 29));
        let tight = check_noting(&dir, Dates::new(None, None), 100, HOLD_BARS).unwrap();
        assert_eq!(tight.minutes.keys().collect::<Vec<_>>(), ["QQQ"]);
        assert_eq!(tight.files.len(), 4, "every file is still checked and counted");
        // The bars themselves are kept while they fit, on the chosen dates only; beyond the
        // budget none are, and the replay streams them.
        let held = checked.held.as_ref().expect("a few bars are held");
        assert_eq!(held.keys().collect::<Vec<_>>(), ["DIA", "IWM", "QQQ", "SPY"]);
        assert_eq!(held["QQQ"].iter().map(|b| b.t).collect::<Vec<_>>(), qqq);
        let day_bars: usize = one.held.as_ref().unwrap().values().map(Vec::len).sum();
        assert_eq!(day_bars as u64, one.files.values().map(|(_, n)| n).sum::<u64>());
        let all: u64 = checked.files.values().map(|(_, n)| n).sum();
        let over = check_noting(&dir, Dates::new(None, None), Minutes::WORDS_KEPT, all as usize - 1).unwrap();
        assert!(over.held.is_none(), "one bar more than the budget: none held");
        assert!(check_noting(&dir, Dates::new(None, None), Minutes::WORDS_KEPT, all as usize).unwrap().held.is_some());
    }

    #[test]
    fn names_map_to_symbols_and_back() {
        assert_eq!(symbol_of(Path::new("/x/BTC-USD.csv")).as_deref(), Some("BTC/USD"));
        assert_eq!(symbol_of(Path::new("SPY.csv")).as_deref(), Some("SPY"));
        assert_eq!(symbol_of(Path::new("SPY.txt")), None);
        assert_eq!(file_name("BTC/USD"), "BTC-USD.csv");
    }

    #[test]
    fn reads_what_it_writes_and_names_bad_lines() {
        let scratch = crate::test_dir::TestDir::new("bars");
        let dir = scratch.path().to_path_buf();
        let bar = |t: &str, c: f64| Bar {
            t: t.parse().unwrap(),
            open: c,
            high: c + 1.0,
            low: c - 1.0,
            close: c,
            volume: 10.0,
        };
        let bars = [bar("2026-11-25T14:30:00Z", 100.0), bar("2026-11-25T14:31:00Z", 100.5)];
        let text = format!("{HEADER}\n{}\n{}\n", line(&bars[0]), line(&bars[1]));
        std::fs::write(dir.join("SPY.csv"), text).unwrap();
        let read_back = read(&dir).unwrap();
        assert_eq!(read_back["SPY"], bars.to_vec());
        std::fs::write(dir.join("BAD.csv"), format!("{HEADER}\n2026-11-25T14:30:00Z,1,1,1,x,1\n")).unwrap();
        let err = read(&dir).unwrap_err();
        assert!(err.contains("BAD.csv line 2"), "{err}");
        // A bad line after the dates a backtest replays is refused all the same.
        let late =
            format!("{HEADER}\n{}\n2026-11-26T14:30:00Z,1,1,1,1,1\n2026-11-26T14:31:00Z,1,1,1,x,1\n", line(&bars[0]));
        std::fs::write(dir.join("BAD.csv"), late).unwrap();
        let to = Dates::new(None, Some("2026-11-25".parse().unwrap()));
        assert!(check(&dir, to).unwrap_err().contains("BAD.csv line 4"));
        std::fs::write(dir.join("BAD.csv"), "time,o,h,l,c,v\n").unwrap();
        assert!(read(&dir).unwrap_err().contains("line 1"));
        let cases = [
            ("2026-11-25T14:30:00Z,1,1,1,1\n", "line 2: expected 6 fields"),
            ("2026-11-25T14:30:00Z,1,1,1,NaN,1\n", "line 2: prices and volume must be numbers"),
            ("2026-11-25T14:31:00Z,1,1,1,1,1\n2026-11-25T14:30:00Z,1,1,1,1,1\n", "line 3: timestamps must increase"),
            ("2026-11-25T14:31:00Z,1,1,1,1,1\n2026-11-25T14:31:00Z,1,1,1,1,1\n", "line 3: timestamps must increase"),
            ("yesterday,1,1,1,1,1\n", "line 2: bad timestamp"),
        ];
        for (body, expect) in cases {
            std::fs::write(dir.join("BAD.csv"), format!("{HEADER}\n{body}")).unwrap();
            let err = read(&dir).unwrap_err();
            assert!(err.contains(&format!("BAD.csv {expect}")), "{expect}: {err}");
        }
    }
}
