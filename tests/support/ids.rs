//! Our client order ids in tests. The daemon's ids are `th-<bot>-<yyyymmdd>-<epoch>-<n>`, with a
//! random epoch per process and one counter per ledger (`ClientOrderId`), so a test cannot spell
//! one in advance. Tests name a bot's orders by their place instead: `th-<bot>-<yyyymmdd>-<k>` is
//! that bot's k-th order of that date (the format ledgers used before migration 9). These helpers
//! check every real id they meet and translate between the two.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use trading_hydra::core::state::{ClientOrderId, OrderRecord, State};

/// `th-<bot>-<yyyymmdd>-<k>` → (bot, yyyymmdd, k).
fn split_name(name: &str) -> (String, String, usize) {
    let rest = name.strip_prefix("th-").expect("a name starts with th-");
    let mut parts = rest.rsplitn(3, '-');
    let k = parts.next().unwrap().parse().unwrap();
    let date = parts.next().unwrap().to_string();
    (parts.next().unwrap().to_string(), date, k)
}

/// The names of `ids` (real ids, in the order they were issued), checking each parses.
pub fn names(ids: &[String]) -> Vec<String> {
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    ids.iter()
        .map(|id| {
            let c = ClientOrderId::parse(id).unwrap_or_else(|| panic!("{id} is not one of our ids"));
            let date = c.date.strftime("%Y%m%d").to_string();
            let k = count.entry((c.bot.clone(), date.clone())).or_default();
            *k += 1;
            format!("th-{}-{date}-{k}", c.bot)
        })
        .collect()
}

/// Every order the ledger holds, in the order recorded.
fn all(state: &State) -> Vec<OrderRecord> {
    state.all_orders().unwrap().into_iter().map(|(o, _)| o).collect()
}

/// The real id of the order a test calls `name`.
pub fn real(state: &State, name: &str) -> String {
    let orders = all(state);
    let ids: Vec<String> = orders.iter().map(|o| o.client_order_id.clone()).collect();
    let i = names(&ids).iter().position(|n| n == name).unwrap_or_else(|| panic!("no order {name} in {ids:?}"));
    ids[i].clone()
}

/// The order a test calls `name`, if the ledger holds it.
pub fn order(state: &State, name: &str) -> Option<OrderRecord> {
    let (bot, date, k) = split_name(name);
    all(state).into_iter().filter(|o| o.bot == bot && o.trading_date.strftime("%Y%m%d").to_string() == date).nth(k - 1)
}

/// Order bodies as the broker saw them, their `client_order_id`s replaced by their names after
/// checking that they are ours and that one process numbered them with one epoch.
pub fn named_bodies(mut bodies: Vec<Value>) -> Vec<Value> {
    let ids: Vec<String> = bodies.iter().map(|b| b["client_order_id"].as_str().unwrap().to_string()).collect();
    let epochs: std::collections::BTreeSet<String> =
        ids.iter().filter_map(|id| ClientOrderId::parse(id)).map(|c| c.epoch).collect();
    assert!(epochs.len() <= 1, "one process, one epoch: {ids:?}");
    for (b, name) in bodies.iter_mut().zip(names(&ids)) {
        b["client_order_id"] = name.into();
    }
    bodies
}
