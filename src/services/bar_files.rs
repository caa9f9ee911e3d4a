//! Bar files: one CSV per symbol, `timestamp,open,high,low,close,volume`, timestamps in UTC
//! RFC 3339, named after the symbol with `/` written as `-` (`SPY.csv`, `BTC-USD.csv`).
//!
//! Owns: reading and writing that format. Never: guesses — a file with another header, a line
//! that does not parse, or bars out of order is an error naming the file and the line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

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

/// Reads one file, or every `.csv` file of a folder.
pub fn read(path: &Path) -> Result<BySymbol<Vec<Bar>>, String> {
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
        out.insert(symbol, read_file(&f)?);
    }
    if out.is_empty() {
        return Err(format!("{}: no .csv bar files", path.display()));
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<Bar>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == HEADER => {}
        other => {
            return Err(format!(
                "{}: line 1 must be {HEADER:?}, got {:?}",
                path.display(),
                other.map(|(_, l)| l).unwrap_or("")
            ));
        }
    }
    let mut bars: Vec<Bar> = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| format!("{} line {}: {why}: {line:?}", path.display(), i + 1);
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 6 {
            return Err(bad("expected 6 fields"));
        }
        let t: Timestamp = f[0].parse().map_err(|_| bad("bad timestamp"))?;
        let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
        let (Some(open), Some(high), Some(low), Some(close), Some(volume)) =
            (num(f[1]), num(f[2]), num(f[3]), num(f[4]), num(f[5]))
        else {
            return Err(bad("prices and volume must be numbers, not negative"));
        };
        if bars.last().is_some_and(|b| b.t >= t) {
            return Err(bad("timestamps must increase"));
        }
        bars.push(Bar { t, open, high, low, close, volume });
    }
    // A year of minutes is big: give back what the vector grew past.
    bars.shrink_to_fit();
    Ok(bars)
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
