//! What changed between two versions of the configuration files, in words, for `reload`'s log.
//!
//! Owns: flattening a YAML file into `path: value` lines (a list of bots keyed by `bot_id`, so
//! `momentum_bots.mom_AAPL.exits.stop_loss_pct`, not an index that shifts when a bot is added),
//! and the lines added, removed and changed between two files. Which changes need a restart
//! instead of a reload is `Config::restart_needed`'s.
//!
//! Never: reads files or validates anything (both texts have been validated by `Config` first).

use std::collections::BTreeMap;

use serde_yaml::Value;

/// The changes from `old` to `new` (one file's two texts), each a line such as
/// `bots.yaml momentum_bots.mom_AAPL.exits.stop_loss_pct: 0.5 -> 0.8`, in path order.
pub fn changes(file: &str, old: &str, new: &str) -> Vec<String> {
    let (old, new) = (flatten_text(old), flatten_text(new));
    let mut out = Vec::new();
    for (path, value) in &new {
        match old.get(path) {
            None => out.push(format!("{file} {path}: added ({value})")),
            Some(before) if before != value => out.push(format!("{file} {path}: {before} -> {value}")),
            Some(_) => {}
        }
    }
    for (path, value) in &old {
        if !new.contains_key(path) {
            out.push(format!("{file} {path}: removed (was {value})"));
        }
    }
    out.sort();
    out
}

fn flatten_text(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Validated before it gets here; a text that no longer parses shows as no keys at all.
    if let Ok(value) = serde_yaml::from_str::<Value>(text) {
        flatten(&value, String::new(), &mut out);
    }
    out
}

fn flatten(value: &Value, path: String, out: &mut BTreeMap<String, String>) {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match value {
        Value::Mapping(m) => {
            for (k, v) in m {
                flatten(v, join(&scalar(k)), out);
            }
        }
        Value::Sequence(items) if items.iter().all(|i| i.get("bot_id").is_some()) && !items.is_empty() => {
            for item in items {
                let id = item.get("bot_id").map(scalar).unwrap_or_default();
                flatten(item, join(&id), out);
            }
        }
        Value::Sequence(items) if items.iter().all(|i| !i.is_mapping() && !i.is_sequence()) => {
            // A list of plain values (tickers, pairs) reads best whole.
            out.insert(path, format!("[{}]", items.iter().map(scalar).collect::<Vec<_>>().join(", ")));
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, join(&i.to_string()), out);
            }
        }
        Value::Tagged(t) => flatten(&t.value, path, out),
        other => {
            out.insert(path, scalar(other));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).map(|s| s.trim().to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_are_named_by_id_and_each_change_is_one_line() {
        let old = "momentum_bots:\n  - bot_id: mom_AAPL\n    ticker: AAPL\n    exits: {stop_loss_pct: 0.5}\ncryptobot:\n  pairs: [BTC/USD, ETH/USD]\n";
        let new = "momentum_bots:\n  - bot_id: mom_TSLA\n    ticker: TSLA\n  - bot_id: mom_AAPL\n    ticker: AAPL\n    exits: {stop_loss_pct: 0.8}\ncryptobot:\n  pairs: [BTC/USD]\n";
        assert_eq!(
            changes("bots.yaml", old, new),
            vec![
                "bots.yaml cryptobot.pairs: [BTC/USD, ETH/USD] -> [BTC/USD]",
                "bots.yaml momentum_bots.mom_AAPL.exits.stop_loss_pct: 0.5 -> 0.8",
                "bots.yaml momentum_bots.mom_TSLA.bot_id: added (mom_TSLA)",
                "bots.yaml momentum_bots.mom_TSLA.ticker: added (TSLA)",
            ]
        );
        assert_eq!(changes("bots.yaml", old, old), Vec::<String>::new());
        assert_eq!(changes("s", "a: 1\nb: 2\n", "a: 1\n"), vec!["s b: removed (was 2)"]);
    }
}
