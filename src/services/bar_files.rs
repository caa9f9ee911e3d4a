//! Bar files: one CSV per symbol, `timestamp,open,high,low,close,volume`, timestamps in UTC
//! RFC 3339, named after the symbol with `/` written as `-` (`SPY.csv`, `BTC-USD.csv`).
//!
//! Owns: reading and writing that format, whole (`read`) or a bar at a time (`Reader`, which
//! `read` is built on: one parser), and `check`, the pass that proves a folder's files good before
//! a backtest streams them. Never: guesses — a file with another header, a line that does not
//! parse, or bars out of order is an error naming the file and the line.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::clock;
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
    lines: std::io::Lines<BufReader<File>>,
    line_no: usize,
    last: Option<Timestamp>,
    done: bool,
}

impl Reader {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Reader, String> {
        let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut lines = BufReader::with_capacity(64 * 1024, file).lines();
        match lines.next().transpose() {
            Ok(Some(h)) if h.trim() == HEADER => {}
            Ok(other) => {
                return Err(format!(
                    "{}: line 1 must be {HEADER:?}, got {:?}",
                    path.display(),
                    other.unwrap_or_default()
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        Ok(Reader { path: path.to_path_buf(), lines, line_no: 1, last: None, done: false })
    }

    fn parse(&mut self, line: &str) -> Result<Bar, String> {
        let bad = |why: &str| format!("{} line {}: {why}: {line:?}", self.path.display(), self.line_no);
        let mut fields = [""; 6];
        let mut n = 0;
        for (i, field) in line.split(',').enumerate() {
            if let Some(slot) = fields.get_mut(i) {
                *slot = field.trim();
            }
            n = i + 1;
        }
        if n != 6 {
            return Err(bad("expected 6 fields"));
        }
        let t: Timestamp = fields[0].parse().map_err(|_| bad("bad timestamp"))?;
        let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
        let (Some(open), Some(high), Some(low), Some(close), Some(volume)) =
            (num(fields[1]), num(fields[2]), num(fields[3]), num(fields[4]), num(fields[5]))
        else {
            return Err(bad("prices and volume must be numbers, not negative"));
        };
        if self.last.is_some_and(|last| last >= t) {
            return Err(bad("timestamps must increase"));
        }
        self.last = Some(t);
        Ok(Bar { t, open, high, low, close, volume })
    }
}

impl Iterator for Reader {
    type Item = Result<Bar, String>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => {
                    self.done = true;
                    return Some(Err(format!("cannot read {}: {e}", self.path.display())));
                }
            };
            self.line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            let bar = self.parse(&line);
            // An error ends the file: nothing after a bad line is trusted.
            self.done = bar.is_err();
            return Some(bar);
        }
        None
    }
}

/// Whether a bar falls on the New York dates `from` to `to` (both included; `None` is open).
pub fn within(b: &Bar, from: Option<Date>, to: Option<Date>) -> bool {
    if from.is_none() && to.is_none() {
        return true;
    }
    let d = clock::trading_date(b.t);
    from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t)
}

/// Bar files proven good by `check`, each with the times of its bars on the chosen dates (the
/// replay's steps are merged from them); files with no bar on those dates are left out.
#[derive(Debug)]
pub struct Checked {
    pub files: BySymbol<(PathBuf, Vec<Timestamp>)>,
    pub from: Option<Date>,
    pub to: Option<Date>,
}

/// Reads every bar file of `path` through once, before anything runs: a bad file is refused
/// here, as `read` refuses it, without holding its bars.
pub fn check(path: &Path, from: Option<Date>, to: Option<Date>) -> Result<Checked, String> {
    let mut out = BySymbol::new();
    for (symbol, f) in files(path)? {
        let mut times = Vec::new();
        for bar in Reader::open(&f)? {
            let bar = bar?;
            if within(&bar, from, to) {
                times.push(bar.t);
            }
        }
        if !times.is_empty() {
            times.shrink_to_fit();
            out.insert(symbol, (f, times));
        }
    }
    Ok(Checked { files: out, from, to })
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
    fn names_map_to_symbols_and_back() {
        assert_eq!(symbol_of(Path::new("/x/BTC-USD.csv")).as_deref(), Some("BTC/USD"));
        assert_eq!(symbol_of(Path::new("SPY.csv")).as_deref(), Some("SPY"));
        assert_eq!(symbol_of(Path::new("SPY.txt")), None);
        assert_eq!(file_name("BTC/USD"), "BTC-USD.csv");
    }

    #[test]
    fn reads_what_it_writes_and_names_bad_lines() {
        let dir = std::env::temp_dir().join(format!("th-bars-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
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
