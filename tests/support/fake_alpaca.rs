//! A fake of Alpaca's REST API on 127.0.0.1, for tests: a real HTTP/1.1 server on a std
//! `TcpListener`, answering with Alpaca's JSON shapes (the recorded samples in
//! `tests/fixtures/alpaca/`), keeping orders by client order id the way Alpaca does (unique
//! forever, a duplicate is a 422), recording every request, and injecting faults on demand.
//!
//! One connection per request (`Connection: close`), one thread per connection.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use trading_hydra::core::config::DataFeed;
use trading_hydra::core::decimal::Dec;
use trading_hydra::core::instrument::OccSymbol;
use trading_hydra::services::alpaca_client::{AlpacaClient, ClientSettings, Credentials};

pub const KEY: &str = "PKTESTKEY0000000001";
pub const SECRET: &str = "sEcReTtEsTvAlUe000000000000000000000001";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Seen {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// What to do instead of answering normally.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status and body (and `X-RateLimit-Reset` when given).
    Status { status: u16, body: String, reset: Option<i64> },
    /// Wait this long, then answer normally (a client with a shorter timeout gives up first).
    Delay(Duration),
    /// A 200 whose body is not JSON.
    Malformed,
    /// Close the connection without answering, before doing anything.
    Drop,
    /// Do the work (an order is created), then close the connection without answering.
    ProcessThenDrop,
    /// Answer normally (to place a fault after some good answers).
    Pass,
}

#[derive(Default)]
pub struct FakeState {
    pub seen: Vec<Seen>,
    /// (method, path prefix) → faults to apply to the next matching requests, in order.
    pub faults: Vec<(String, String, VecDeque<Fault>)>,
    pub account: Value,
    pub positions: Vec<Value>,
    /// Orders in creation order.
    pub orders: Vec<Value>,
    pub next_id: u64,
    /// Pages served for `/v2/stocks/bars`: each is the `bars` object of one page.
    pub stock_bar_pages: Vec<Value>,
    /// The answer of `GET /v2/clock`.
    pub clock: Value,
    /// When set, every latest quote carries this timestamp (so quotes are fresh in a test's time).
    pub quote_time: Option<String>,
    /// Fill every new order at once, at this price (a stop or stop-limit rests until triggered).
    pub auto_fill: Option<String>,
    /// The clock's `timestamp` and every quote's `t` are the real time of the answer.
    pub live_time: bool,
    /// The lowest quantity any position ever reached (negative: something was sold short).
    pub min_seen: f64,
    /// The same, per symbol.
    pub min_by_symbol: BTreeMap<String, f64>,
    /// A market of the test's making, when set: bars and latest quotes by symbol (stocks and
    /// crypto alike), option contracts and option snapshots.
    pub market: Option<Market>,
    /// Fill prices by symbol (orders and legs), ahead of `auto_fill`.
    pub fill_prices: BTreeMap<String, String>,
    /// While set, every client order id that arrives is already taken by a copy of this order
    /// (another ledger's, sent earlier under the same id): Alpaca answers 422 "must be unique".
    pub squatter: Option<Value>,
    /// Alpaca's held quantity: a sell beyond what the position holds less what open sells hold is
    /// refused (403 "insufficient qty available"). On unless a test turns it off.
    pub hold_for_orders: bool,
    /// A multi-leg order fills as Alpaca may report it: the parent `filled` (and the positions
    /// moved) while its legs still show `filled_qty` 0 and no price, until `settle_legs`.
    pub legs_lag: bool,
    /// The fee a crypto buy pays in the coin, as a fraction of what filled: the order reports the
    /// whole quantity filled, the position holds it less the fee (Alpaca's crypto fee on a buy).
    pub coin_fee: Option<f64>,
    /// The time new orders are stamped with (`created_at`, `submitted_at`): the test's clock
    /// when set, else the real time of the request.
    pub order_time: Option<String>,
    /// The `filled_at` the fake stamps on the orders it fills (`None`: the time of the fill).
    pub fill_time: Option<String>,
    /// The account's non-trade activities (`GET /v2/account/activities`), oldest first, in
    /// Alpaca's shape (`transfer`).
    pub activities: Vec<Value>,
    /// Alpaca's rate limit: this many requests a window (`None`: 200), each window
    /// `rate_window_secs` long (0: 60, a minute), every answer carrying `X-RateLimit-Limit`,
    /// `-Remaining` and `-Reset` (the window's end, Unix seconds); one request beyond it is a 429.
    pub rate_limit: Option<u32>,
    pub rate_window_secs: i64,
    /// (window start, requests in it), and how many 429s the limit served.
    pub rate_used: (i64, u32),
    pub rate_refusals: u32,
}

/// Market data a test controls.
#[derive(Debug, Clone, Default)]
pub struct Market {
    /// symbol → Alpaca bar objects, oldest first.
    pub bars: BTreeMap<String, Vec<Value>>,
    /// symbol → Alpaca quote object.
    pub quotes: BTreeMap<String, Value>,
    /// Alpaca option contract objects.
    pub contracts: Vec<Value>,
    /// OCC symbol → Alpaca snapshot object.
    pub snapshots: BTreeMap<String, Value>,
    /// Bars per page (all on one page when unset), with `next_page_token`s `mp-<n>`.
    pub page_size: Option<usize>,
}

impl Market {
    fn pick<T: Clone>(map: &BTreeMap<String, T>, symbols: Option<&str>) -> BTreeMap<String, T> {
        let wanted: Vec<&str> = symbols.unwrap_or_default().split(',').collect();
        map.iter().filter(|(k, _)| wanted.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl FakeState {
    /// Fills the resting stop and stop-limit orders the market crossed, as Alpaca triggers them: a
    /// sell once the bid is at or below its stop, at the bid (a stop-limit only while the bid is at
    /// or above its limit: below, it rests unfilled — a gap through the limit misses); a buy once
    /// the ask is at or above its stop, at the ask. Run before every answer, and by tests.
    pub fn trigger_stops(&mut self) {
        let Some(m) = &self.market else { return };
        let mut hits = Vec::new();
        for (i, o) in self.orders.iter().enumerate() {
            let open = !is_done(o);
            let kind = o["type"].as_str().unwrap_or_default();
            if !open || !matches!(kind, "stop" | "stop_limit") {
                continue;
            }
            let symbol = o["symbol"].as_str().unwrap_or_default();
            let Some(q) = m.quotes.get(symbol) else { continue };
            let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|t| t.parse().ok()));
            let (Some(stop), Some(bid), Some(ask)) = (num(&o["stop_price"]), num(&q["bp"]), num(&q["ap"])) else {
                continue;
            };
            let limit = num(&o["limit_price"]);
            let fill = if o["side"] == "sell" {
                (bid <= stop && limit.is_none_or(|l| bid >= l)).then_some(bid)
            } else {
                (ask >= stop && limit.is_none_or(|l| ask <= l)).then_some(ask)
            };
            if let Some(price) = fill {
                hits.push((i, format!("{price}")));
            }
        }
        for (i, price) in hits {
            // The trigger price, not a test's fixed fill price.
            let symbol = self.orders[i]["symbol"].as_str().unwrap_or_default().to_string();
            let fixed = self.fill_prices.insert(symbol.clone(), price.clone());
            self.book_fill(i, &price);
            match fixed {
                Some(p) => self.fill_prices.insert(symbol, p),
                None => self.fill_prices.remove(&symbol),
            };
        }
    }

    /// What open sells leave of the long position in `symbol` (Alpaca's `qty_available`).
    fn available(&self, symbol: &str) -> f64 {
        let key = symbol.replace('/', "");
        let held: f64 = self
            .positions
            .iter()
            .find(|p| p["symbol"] == key.as_str())
            .and_then(|p| p["qty"].as_str()?.parse().ok())
            .unwrap_or(0.0);
        let open_sells: f64 = self
            .orders
            .iter()
            .filter(|o| o["side"] == "sell" && o["symbol"].as_str().map(|s| s.replace('/', "")) == Some(key.clone()))
            .filter(|o| !is_done(o))
            .filter_map(|o| {
                let q: f64 = o["qty"].as_str()?.parse().ok()?;
                let f: f64 = o["filled_qty"].as_str().and_then(|f| f.parse().ok()).unwrap_or(0.0);
                Some(q - f)
            })
            .sum();
        (held - open_sells).max(0.0)
    }

    /// Marks order `i` filled at `price` and moves the position (each leg's, for a multi-leg
    /// order, at its own price from `fill_prices`).
    pub fn book_fill(&mut self, i: usize, price: &str) {
        // Alpaca stamps an order with `filled_at` once it is filled (the fake: `fill_time`, else now).
        let at = self.fill_time.clone().unwrap_or_else(|| jiff::Timestamp::now().to_string());
        self.orders[i]["filled_at"] = at.into();
        if let Some(legs) = self.orders[i]["legs"].as_array().cloned().filter(|l| !l.is_empty()) {
            let mut net = 0.0;
            for (k, leg) in legs.iter().enumerate() {
                let symbol = leg["symbol"].as_str().unwrap_or_default().to_string();
                // A leg fills at its set price, else at its quote's mid (Alpaca never fills an
                // option at 0), else at `price`.
                let mid = self.market.as_ref().and_then(|m| m.snapshots.get(&symbol)).and_then(|s| {
                    let q = &s["latestQuote"];
                    Some((q["bp"].as_f64()? + q["ap"].as_f64()?) / 2.0)
                });
                let p = self
                    .fill_prices
                    .get(&symbol)
                    .cloned()
                    .or_else(|| mid.map(|m| format!("{m:.2}")))
                    .unwrap_or_else(|| price.to_string());
                let q: f64 = leg["qty"].as_str().and_then(|q| q.parse().ok()).unwrap_or(0.0);
                let buy = leg["side"] == "buy";
                net += if buy { 1.0 } else { -1.0 } * p.parse::<f64>().unwrap_or(0.0);
                if !self.legs_lag {
                    self.orders[i]["legs"][k]["status"] = "filled".into();
                    self.orders[i]["legs"][k]["filled_qty"] = format!("{q}").into();
                    self.orders[i]["legs"][k]["filled_avg_price"] = p.clone().into();
                }
                self.move_position(&symbol, if buy { q } else { -q }, &p, "us_option");
            }
            let qty = self.orders[i]["qty"].clone();
            self.orders[i]["status"] = "filled".into();
            self.orders[i]["filled_qty"] = qty;
            self.orders[i]["filled_avg_price"] = format!("{net:.2}").into();
            return;
        }
        let symbol = self.orders[i]["symbol"].as_str().unwrap_or_default().to_string();
        let price = self.fill_prices.get(&symbol).cloned().unwrap_or_else(|| price.to_string());
        let price = price.as_str();
        let qty = self.orders[i]["qty"].as_str().unwrap_or("0").to_string();
        let symbol = self.orders[i]["symbol"].as_str().unwrap_or_default().to_string();
        let side = self.orders[i]["side"].as_str().unwrap_or_default().to_string();
        self.orders[i]["status"] = "filled".into();
        self.orders[i]["filled_qty"] = qty.clone().into();
        self.orders[i]["filled_avg_price"] = price.into();
        let q: f64 = qty.parse().unwrap_or(0.0);
        let class = if symbol.contains('/') { "crypto" } else { "us_equity" };
        let fee = self.coin_fee.filter(|_| class == "crypto" && side == "buy").unwrap_or(0.0);
        // What is left after the fee, in the coin's nine places, never rounded up.
        let signed = match side.as_str() {
            "buy" if fee > 0.0 => ((q * (1.0 - fee)) * 1e9).floor() / 1e9,
            "buy" => q,
            _ => -q,
        };
        self.move_position(&symbol, signed, price, class);
    }

    /// Gives the legs of every multi-leg order reported `filled` the fills they lagged behind
    /// (`legs_lag`): each leg its whole quantity at its `fill_prices` price (else `price`).
    pub fn settle_legs(&mut self, price: &str) {
        for order in self.orders.iter_mut().filter(|o| o["status"] == "filled") {
            let Some(legs) = order["legs"].as_array_mut() else { continue };
            for leg in legs {
                let symbol = leg["symbol"].as_str().unwrap_or_default().to_string();
                let p = self.fill_prices.get(&symbol).cloned().unwrap_or_else(|| price.to_string());
                leg["status"] = "filled".into();
                leg["filled_qty"] = leg["qty"].clone();
                leg["filled_avg_price"] = p.into();
            }
        }
    }

    /// Moves the fake account's position in `symbol` (Alpaca keys crypto without the slash).
    fn move_position(&mut self, symbol: &str, signed: f64, price: &str, class: &str) {
        let symbol = symbol.replace('/', "");
        match self.positions.iter().position(|p| p["symbol"] == symbol.as_str()) {
            Some(j) => {
                let held: f64 = self.positions[j]["qty"].as_str().unwrap_or("0").parse().unwrap_or(0.0);
                let now = held + signed;
                self.min_seen = self.min_seen.min(now);
                let m = self.min_by_symbol.entry(symbol.clone()).or_insert(now);
                *m = m.min(now);
                if now == 0.0 {
                    self.positions.remove(j);
                } else {
                    self.positions[j]["qty"] = format!("{now}").into();
                    self.positions[j]["side"] = if now < 0.0 { "short" } else { "long" }.into();
                }
            }
            None => {
                self.min_seen = self.min_seen.min(signed);
                let m = self.min_by_symbol.entry(symbol.clone()).or_insert(signed);
                *m = m.min(signed);
                self.positions.push(json!({
                    "symbol": symbol, "asset_class": class, "qty": format!("{signed}"),
                    "side": if signed < 0.0 { "short" } else { "long" },
                    "avg_entry_price": price, "current_price": price, "market_value": "0", "unrealized_pl": "0"
                }))
            }
        }
    }
}

#[derive(Clone)]
pub struct FakeAlpaca {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
}

/// Whether an order has ended (Alpaca's final statuses): no longer open, cancelable or
/// replaceable, and holding nothing.
fn is_done(o: &Value) -> bool {
    matches!(o["status"].as_str(), Some("filled" | "canceled" | "expired" | "rejected" | "replaced"))
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("tests/fixtures/alpaca/{name}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Client settings for tests against a fake at `url`: short timeouts and a small retry budget so
/// a failing test fails fast, and a rate limit high enough never to slow a test down. A test that
/// needs other values changes them with `..client_settings(url)`.
pub fn client_settings(url: &str) -> ClientSettings {
    ClientSettings {
        trading_url: url.into(),
        data_url: url.into(),
        feed: DataFeed::Iex,
        timeout: Duration::from_millis(500),
        retry_budget: Duration::from_secs(1),
        max_attempts: 2,
        backoff: Duration::from_millis(10),
        requests_per_minute: 1000,
    }
}

/// 55 one-minute bars ending a minute before the real time: flat, then climbing, the last on
/// heavy volume (the shipped bots' signals fire on it). For tests of the real binary.
pub fn rising_until_now(start: f64, step: f64, volume: f64) -> Vec<Value> {
    let end = jiff::Timestamp::now().as_second() / 60 * 60 - 60;
    (0..55)
        .map(|i| {
            let c = if i < 40 { start } else { start + (i - 39) as f64 * step };
            let t = jiff::Timestamp::from_second(end - (54 - i) * 60).unwrap();
            let v = if i == 54 { volume * 3.0 } else { volume };
            json!({"t": t.to_string(), "o": c, "h": c + step / 4.0, "l": c - step / 4.0, "c": c, "v": v, "n": 10, "vw": c})
        })
        .collect()
}

/// A latest quote whose time the fake stamps with the answer's (with `live_time`).
pub fn live_quote(bid: f64, ask: f64) -> Value {
    json!({"t": "", "bp": bid, "bs": 3, "ap": ask, "as": 3})
}

/// Another ledger's order: a filled ETH/USD buy of 1 at $3,000, to plant under our ids.
pub fn stranger_eth_buy() -> Value {
    let mut o = sample("order-crypto.json");
    for (k, v) in [
        ("symbol", json!("ETH/USD")),
        ("asset_class", json!("crypto")),
        ("side", json!("buy")),
        ("qty", json!("1")),
        ("notional", Value::Null),
        ("type", json!("market")),
        ("limit_price", Value::Null),
        ("stop_price", Value::Null),
        ("status", json!("filled")),
        ("filled_qty", json!("1")),
        ("filled_avg_price", json!("3000")),
    ] {
        o[k] = v;
    }
    o
}

impl FakeState {
    /// A funded $100,000 paper account with no day change (equity = last_equity) and twice that
    /// in buying power, as the end-to-end tests start from.
    pub fn fund_100k(&mut self) {
        for (k, v) in [
            ("equity", "100000"),
            ("last_equity", "100000"),
            ("cash", "100000"),
            ("buying_power", "200000"),
            ("non_marginable_buying_power", "100000"),
            ("options_buying_power", "100000"),
        ] {
            self.account[k] = v.into();
        }
    }
}

impl FakeAlpaca {
    /// A client with the test credentials and `client_settings`.
    /// A cash transfer as Alpaca lists it among the account's activities (`CSD` a deposit, `CSW`
    /// a withdrawal — its `net_amount` negative —, `JNLC` a journal), created at `at`; the account's
    /// equity and cash are the test's to move.
    pub fn transfer(&self, id: &str, kind: &str, net_amount: &str, at: &str) {
        self.lock().activities.push(json!({
            "id": id, "activity_type": kind, "date": &at[..10], "net_amount": net_amount,
            "description": "", "status": "executed", "created_at": at
        }));
    }

    pub fn client(&self) -> AlpacaClient {
        AlpacaClient::new(Credentials::new(KEY.into(), SECRET.into()), client_settings(&self.url))
    }

    /// Points a command of the real binary at this fake, with the test keys, on paper.
    pub fn point<'c>(&self, cmd: &'c mut std::process::Command) -> &'c mut std::process::Command {
        cmd.env("ALPACA_KEY", KEY)
            .env("ALPACA_SECRET", SECRET)
            .env("ALPACA_TRADING_URL", &self.url)
            .env("ALPACA_DATA_URL", &self.url)
            .env_remove("ALPACA_PAPER")
            .env_remove("TRADING_HYDRA_CONFIG")
    }

    pub fn start() -> FakeAlpaca {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut positions: Vec<Value> = serde_json::from_value(sample("positions.json")).unwrap();
        positions.push(json!({
            "asset_id": "64bbff51-59d6-4b3c-9351-13ad85e3c752", "symbol": "BTCUSD", "exchange": "",
            "asset_class": "crypto", "avg_entry_price": "40000", "qty": "0.0123", "side": "long",
            "market_value": "500.1", "cost_basis": "492", "unrealized_pl": "8.1", "current_price": "40658.5"
        }));
        let state = FakeState {
            account: sample("account.json"),
            positions,
            next_id: 1,
            stock_bar_pages: vec![sample("stock-bars-multi.json")["bars"].clone()],
            clock: sample("clock.json"),
            hold_for_orders: true,
            ..FakeState::default()
        };
        let fake = FakeAlpaca { url, state: Arc::new(Mutex::new(state)) };
        let server = fake.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let server = server.clone();
                thread::spawn(move || server.serve(stream));
            }
        });
        fake
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn fault(&self, method: &str, path_prefix: &str, faults: Vec<Fault>) {
        self.lock().faults.push((method.into(), path_prefix.into(), faults.into()));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Fills one of the fake's orders completely at `price` and books the position, as Alpaca
    /// would after an execution.
    pub fn fill(&self, client_order_id: &str, price: &str) {
        let mut st = self.lock();
        let i = st.orders.iter().position(|o| o["client_order_id"] == client_order_id).expect("no such order");
        st.book_fill(i, price);
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.lock().seen.iter().filter(|s| s.method == method && s.path == path).count()
    }

    fn serve(&self, stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let Some(seen) = read_request(&mut reader) else { return };
        let fault = {
            let mut st = self.lock();
            st.seen.push(seen.clone());
            let mut found = None;
            for (m, prefix, queue) in st.faults.iter_mut() {
                if *m == seen.method && seen.path.starts_with(prefix.as_str()) && !queue.is_empty() {
                    found = queue.pop_front();
                    break;
                }
            }
            found
        };
        let mut stream = stream;
        match fault {
            Some(Fault::Drop) => return,
            Some(Fault::Status { status, body, reset }) => {
                write_response(&mut stream, status, &body, reset.map(|r| (200, 0, r)));
                return;
            }
            Some(Fault::Malformed) => {
                write_response(&mut stream, 200, "{\"equity\": ", None);
                return;
            }
            Some(Fault::Delay(d)) => thread::sleep(d),
            Some(Fault::ProcessThenDrop) => {
                let _ = self.route(&seen);
                return;
            }
            Some(Fault::Pass) | None => {}
        }
        let limit = {
            let mut st = self.lock();
            let limit = st.rate_limit.unwrap_or(200);
            let window = if st.rate_window_secs > 0 { st.rate_window_secs } else { 60 };
            let now = jiff::Timestamp::now().as_second();
            let start = now - now.rem_euclid(window);
            if st.rate_used.0 != start {
                st.rate_used = (start, 0);
            }
            st.rate_used.1 += 1;
            let over = st.rate_used.1 > limit;
            if over {
                st.rate_refusals += 1;
            }
            (limit, limit.saturating_sub(st.rate_used.1), start + window, over)
        };
        if limit.3 {
            let body = json!({"code": 42910000, "message": "rate limit exceeded"}).to_string();
            write_response(&mut stream, 429, &body, Some((limit.0, 0, limit.2)));
            return;
        }
        let (status, body) = self.route(&seen);
        write_response(&mut stream, status, &body.to_string(), Some((limit.0, limit.1, limit.2)));
    }

    fn route(&self, r: &Seen) -> (u16, Value) {
        if r.headers.get("apca-api-key-id").map(String::as_str) != Some(KEY)
            || r.headers.get("apca-api-secret-key").map(String::as_str) != Some(SECRET)
        {
            return (401, json!({"message": "unauthorized"}));
        }
        let mut st = self.lock();
        st.trigger_stops();
        let path = r.path.as_str();
        if let Some(m) = &st.market {
            // Live time: every quote (and option quote) is stamped with the time of the answer.
            let live = st.live_time.then(|| jiff::Timestamp::now().to_string()).or_else(|| st.quote_time.clone());
            let stamp = |mut v: Value, field: Option<&str>| {
                if let Some(t) = &live {
                    match field {
                        Some(f) => v[f]["t"] = t.clone().into(),
                        None => v["t"] = t.clone().into(),
                    }
                }
                v
            };
            match (r.method.as_str(), path) {
                ("GET", "/v2/stocks/bars") | ("GET", "/v1beta3/crypto/us/bars") => {
                    let all = Market::pick(&m.bars, r.q("symbols"));
                    let Some(size) = m.page_size else {
                        return (200, json!({"bars": all, "next_page_token": null}));
                    };
                    // Pages of `size` bars across the symbols, in symbol order, like Alpaca's.
                    let flat: Vec<(String, Value)> =
                        all.iter().flat_map(|(k, v)| v.iter().map(move |b| (k.clone(), b.clone()))).collect();
                    let page: usize =
                        r.q("page_token").and_then(|t| t.strip_prefix("mp-")).and_then(|n| n.parse().ok()).unwrap_or(0);
                    let mut bars: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                    for (k, b) in flat.iter().skip(page * size).take(size) {
                        bars.entry(k.clone()).or_default().push(b.clone());
                    }
                    let next =
                        if (page + 1) * size < flat.len() { json!(format!("mp-{}", page + 1)) } else { Value::Null };
                    return (200, json!({"bars": bars, "next_page_token": next}));
                }
                ("GET", "/v2/stocks/quotes/latest") | ("GET", "/v1beta3/crypto/us/latest/quotes") => {
                    let quotes: BTreeMap<String, Value> =
                        Market::pick(&m.quotes, r.q("symbols")).into_iter().map(|(k, v)| (k, stamp(v, None))).collect();
                    return (200, json!({"quotes": quotes}));
                }
                ("GET", "/v2/options/contracts") => {
                    return (200, json!({"option_contracts": m.contracts, "next_page_token": null}));
                }
                ("GET", p) if p.starts_with("/v1beta1/options/snapshots/") => {
                    // Alpaca's `type` filter: only contracts of that kind; `strike_price_gte` and
                    // `strike_price_lte`: only strikes from one to the other, both included.
                    let bound = |name: &str| r.q(name).map(|v| v.parse::<Dec>().expect("a strike price"));
                    let (low, high) = (bound("strike_price_gte"), bound("strike_price_lte"));
                    let filtered = r.q("type").is_some() || low.is_some() || high.is_some();
                    let wanted = |k: &str| {
                        OccSymbol::parse(k).map_or(!filtered, |o| {
                            r.q("type").is_none_or(|t| o.kind.word() == t)
                                && low.is_none_or(|l| o.strike >= l)
                                && high.is_none_or(|h| o.strike <= h)
                        })
                    };
                    let snaps: BTreeMap<String, Value> = m
                        .snapshots
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| (k.clone(), stamp(v.clone(), Some("latestQuote"))))
                        .collect();
                    return (200, json!({"snapshots": snaps, "next_page_token": null}));
                }
                _ => {}
            }
        }
        match (r.method.as_str(), path) {
            ("GET", "/v2/account") => (200, st.account.clone()),
            ("GET", "/v2/clock") => {
                let mut c = st.clock.clone();
                if st.live_time {
                    c["timestamp"] = jiff::Timestamp::now().to_string().into();
                }
                (200, c)
            }
            ("GET", "/v2/calendar") => (200, sample("calendar.json")),
            ("GET", "/v2/positions") => {
                let mut positions = st.positions.clone();
                for p in &mut positions {
                    if p.get("qty_available").is_none() {
                        let symbol = p["symbol"].as_str().unwrap_or_default().to_string();
                        p["qty_available"] = format!("{}", st.available(&symbol)).into();
                    }
                }
                (200, Value::Array(positions))
            }
            // Alpaca's listing: `status` open (the default), closed or all; submitted after
            // `after` (exclusive); newest first unless `direction=asc`; `limit` 50 by default,
            // 500 at most.
            ("GET", "/v2/orders") => {
                let after: Option<jiff::Timestamp> = r.q("after").and_then(|t| t.parse().ok());
                let status = r.q("status").unwrap_or("open");
                let limit: usize = r.q("limit").and_then(|l| l.parse().ok()).unwrap_or(50).min(500);
                let mut listed: Vec<Value> = st
                    .orders
                    .iter()
                    .filter(|o| match status {
                        "all" => true,
                        "closed" => is_done(o),
                        _ => !is_done(o),
                    })
                    .filter(|o| {
                        let at: Option<jiff::Timestamp> = o["submitted_at"].as_str().and_then(|t| t.parse().ok());
                        after.is_none_or(|a| at.is_some_and(|t| t > a))
                    })
                    .cloned()
                    .collect();
                if r.q("direction") != Some("asc") {
                    listed.reverse();
                }
                listed.truncate(limit);
                (200, Value::Array(listed))
            }
            // Alpaca's account activities: `activity_types` (comma-separated), created after
            // `after` (exclusive), oldest first with `direction=asc`, `page_size` (100 at most)
            // and `page_token` (the id of the last one seen).
            ("GET", "/v2/account/activities") => {
                let types: Vec<&str> = r.q("activity_types").map(|t| t.split(',').collect()).unwrap_or_default();
                let after: Option<jiff::Timestamp> = r.q("after").and_then(|t| t.parse().ok());
                let size: usize = r.q("page_size").and_then(|n| n.parse().ok()).unwrap_or(100).min(100);
                let mut listed: Vec<Value> = st
                    .activities
                    .iter()
                    .filter(|a| types.is_empty() || types.contains(&a["activity_type"].as_str().unwrap_or_default()))
                    .filter(|a| {
                        let at: Option<jiff::Timestamp> = a["created_at"].as_str().and_then(|t| t.parse().ok());
                        after.is_none_or(|after| at.is_some_and(|t| t > after))
                    })
                    .cloned()
                    .collect();
                if r.q("direction") != Some("asc") {
                    listed.reverse();
                }
                if let Some(token) = r.q("page_token") {
                    let from = listed.iter().position(|a| a["id"] == token).map_or(listed.len(), |i| i + 1);
                    listed.drain(..from);
                }
                listed.truncate(size);
                (200, Value::Array(listed))
            }
            ("GET", "/v2/orders:by_client_order_id") => {
                let id = r.q("client_order_id").unwrap_or_default();
                match st.orders.iter().find(|o| o["client_order_id"] == id) {
                    Some(o) => (200, o.clone()),
                    None => (404, sample("error-404-order-not-found.json")),
                }
            }
            ("POST", "/v2/orders") => {
                let body: Value = match serde_json::from_str(&r.body) {
                    Ok(b) => b,
                    Err(_) => return (422, json!({"code": 40010000, "message": "invalid body"})),
                };
                let coid = body["client_order_id"].as_str().unwrap_or_default().to_string();
                if let Some(mut stranger) = st.squatter.clone() {
                    stranger["client_order_id"] = coid.clone().into();
                    stranger["id"] = format!("stranger-{}", st.next_id).into();
                    st.next_id += 1;
                    st.orders.push(stranger);
                }
                if st.orders.iter().any(|o| o["client_order_id"] == coid.as_str()) {
                    return (422, sample("error-422-duplicate-client-order-id.json"));
                }
                // Held quantity: a sell of a long position beyond what open sells leave.
                let symbol = body["symbol"].as_str().unwrap_or_default().to_string();
                let requested: f64 = body["qty"].as_str().and_then(|q| q.parse().ok()).unwrap_or(0.0);
                let long = st.positions.iter().any(|p| {
                    p["symbol"] == symbol.replace('/', "").as_str()
                        && p["qty"].as_str().is_some_and(|q| !q.starts_with('-'))
                });
                if st.hold_for_orders && body["side"] == "sell" && long && requested > st.available(&symbol) + 1e-12 {
                    let available = st.available(&symbol);
                    return (
                        403,
                        json!({"code": 40310000, "available": format!("{available}"), "symbol": symbol,
                               "message": format!("insufficient qty available for order (requested: {requested}, available: {available})")}),
                    );
                }
                // A stop the market is already through: Alpaca refuses a sell stop not below the
                // price with 422 42210000 (the message as seen in the wild: "stop price must not be
                // greater than base price / 1.001"; Alpaca-API#166 shows "stop price must be less
                // than base_price - 0.01" for the same rule), and a buy stop not above it, by the
                // same rule mirrored (an assumption: no buy-side message was found).
                if let (Some(kind @ ("stop" | "stop_limit")), Some(m)) = (body["type"].as_str(), &st.market) {
                    let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|t| t.parse().ok()));
                    let quote = m.quotes.get(&symbol);
                    let (bid, ask) = (quote.and_then(|q| num(&q["bp"])), quote.and_then(|q| num(&q["ap"])));
                    if let (Some(stop), Some(bid), Some(ask)) = (num(&body["stop_price"]), bid, ask) {
                        let sell = body["side"] == "sell";
                        if sell && stop > bid / 1.001 {
                            let message = "stop price must not be greater than base price / 1.001";
                            return (422, json!({"code": 42210000, "message": message, "type": kind}));
                        }
                        if !sell && stop < ask * 1.001 {
                            let message = "stop price must not be less than base price * 1.001";
                            return (422, json!({"code": 42210000, "message": message, "type": kind}));
                        }
                    }
                }
                let id = format!("00000000-0000-0000-0000-{:012}", st.next_id);
                st.next_id += 1;
                let mut order = sample("order-equity.json");
                let o = order.as_object_mut().unwrap();
                o.insert("id".into(), id.into());
                o.insert("client_order_id".into(), coid.into());
                o.insert("status".into(), "accepted".into());
                let at = st.order_time.clone().unwrap_or_else(|| jiff::Timestamp::now().to_string());
                for k in ["created_at", "updated_at", "submitted_at"] {
                    o.insert(k.into(), at.clone().into());
                }
                // What the body says, and nothing of the sample's: a market order has no limit.
                for k in ["symbol", "side", "qty", "notional", "type", "time_in_force", "limit_price", "stop_price"] {
                    o.insert(k.into(), body.get(k).cloned().unwrap_or(Value::Null));
                }
                o.insert("order_class".into(), body.get("order_class").cloned().unwrap_or_else(|| "".into()));
                if let Some(legs) = body.get("legs").and_then(Value::as_array) {
                    o.insert("symbol".into(), "".into());
                    o.insert("side".into(), "".into());
                    o.insert("asset_class".into(), "".into());
                    let qty: f64 = body["qty"].as_str().and_then(|q| q.parse().ok()).unwrap_or(0.0);
                    let legs: Vec<Value> = legs
                        .iter()
                        .enumerate()
                        .map(|(k, l)| {
                            let ratio: f64 = l["ratio_qty"].as_str().and_then(|r| r.parse().ok()).unwrap_or(1.0);
                            json!({
                                "id": format!("{}-leg{k}", o["id"].as_str().unwrap_or_default()),
                                "client_order_id": "", "symbol": l["symbol"], "asset_class": "us_option",
                                "side": l["side"], "position_intent": l["position_intent"], "qty": format!("{}", qty * ratio),
                                "filled_qty": "0", "filled_avg_price": null, "status": "accepted", "type": "",
                                "order_class": "mleg", "ratio_qty": l["ratio_qty"]
                            })
                        })
                        .collect();
                    o.insert("legs".into(), legs.into());
                }
                st.orders.push(order.clone());
                // A stop rests until the market crosses it (`trigger_stops`), auto-fill or not.
                let resting = matches!(body["type"].as_str(), Some("stop" | "stop_limit"));
                if let Some(price) = st.auto_fill.clone().filter(|_| !resting) {
                    let i = st.orders.len() - 1;
                    st.book_fill(i, &price);
                    return (200, st.orders[i].clone());
                }
                (200, order)
            }
            ("GET", "/v2/options/contracts") => {
                // Two pages: the sample, then one more contract.
                if r.q("page_token").is_none() {
                    (200, sample("option-contracts.json"))
                } else {
                    let mut page = sample("option-contracts.json");
                    page["option_contracts"][0]["symbol"] = "AAPL231103P00165000".into();
                    page["option_contracts"][0]["type"] = "put".into();
                    page["option_contracts"][0]["strike_price"] = "165".into();
                    page["next_page_token"] = Value::Null;
                    (200, page)
                }
            }
            ("GET", "/v2/stocks/bars") => {
                let page: usize =
                    r.q("page_token").and_then(|t| t.strip_prefix("page-")).and_then(|n| n.parse().ok()).unwrap_or(0);
                let bars = st.stock_bar_pages.get(page).cloned().unwrap_or(json!({}));
                let next =
                    if page + 1 < st.stock_bar_pages.len() { json!(format!("page-{}", page + 1)) } else { Value::Null };
                (200, json!({"bars": bars, "next_page_token": next}))
            }
            ("GET", "/v2/stocks/quotes/latest") => {
                let mut answer = sample("stock-latest-quotes.json");
                let live = st.live_time.then(|| jiff::Timestamp::now().to_string()).or_else(|| st.quote_time.clone());
                if let (Some(t), Some(quotes)) =
                    (live.as_ref().or(st.quote_time.as_ref()), answer["quotes"].as_object_mut())
                {
                    for q in quotes.values_mut() {
                        q["t"] = t.clone().into();
                    }
                }
                (200, answer)
            }
            ("GET", "/v1beta3/crypto/us/bars") => (200, sample("crypto-bars.json")),
            ("GET", "/v1beta3/crypto/us/latest/quotes") => (200, sample("crypto-latest-quotes.json")),
            _ => {
                if let Some(id) = path.strip_prefix("/v2/orders/") {
                    let pos = st.orders.iter().position(|o| o["id"] == id);
                    return match (r.method.as_str(), pos) {
                        ("GET", Some(i)) => (200, st.orders[i].clone()),
                        // Alpaca refuses to cancel an order that is already done.
                        ("DELETE", Some(i)) if is_done(&st.orders[i]) => {
                            (422, json!({"code": 42210000, "message": "order is not cancelable"}))
                        }
                        ("DELETE", Some(i)) => {
                            st.orders[i]["status"] = "canceled".into();
                            (204, Value::Null)
                        }
                        // A replace: the old order is `replaced`, a new one (new id, the body's
                        // client order id and prices) takes its place.
                        ("PATCH", Some(i)) => {
                            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                            if is_done(&st.orders[i]) {
                                return (422, json!({"code": 42210000, "message": "order is not replaceable"}));
                            }
                            let coid = body["client_order_id"].as_str().unwrap_or_default().to_string();
                            if st.orders.iter().any(|o| o["client_order_id"] == coid.as_str()) {
                                return (422, sample("error-422-duplicate-client-order-id.json"));
                            }
                            let mut new = st.orders[i].clone();
                            st.orders[i]["status"] = "replaced".into();
                            new["id"] = format!("00000000-0000-0000-0000-{:012}", st.next_id).into();
                            st.next_id += 1;
                            new["client_order_id"] = coid.into();
                            for k in ["stop_price", "limit_price", "qty"] {
                                if let Some(v) = body.get(k) {
                                    new[k] = v.clone();
                                }
                            }
                            new["status"] = "accepted".into();
                            st.orders.push(new.clone());
                            (200, new)
                        }
                        _ => (404, sample("error-404-order-not-found.json")),
                    };
                }
                if let Some(symbol) = path.strip_prefix("/v2/positions/") {
                    let pos = st.positions.iter().position(|p| p["symbol"] == symbol);
                    return match (r.method.as_str(), pos) {
                        ("DELETE", Some(i)) => {
                            let p = st.positions.remove(i);
                            let mut order = sample("order-equity.json");
                            order["symbol"] = p["symbol"].clone();
                            order["asset_class"] = p["asset_class"].clone();
                            order["side"] = "sell".into();
                            order["type"] = "market".into();
                            order["qty"] = r.q("qty").map(Value::from).unwrap_or(p["qty"].clone());
                            (200, order)
                        }
                        _ => (404, sample("error-404-position-does-not-exist.json")),
                    };
                }
                if let Some(symbol) = path.strip_prefix("/v2/assets/") {
                    return (
                        200,
                        json!({"id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415", "class": "us_equity", "exchange": "NASDAQ",
                               "symbol": symbol, "name": "x", "status": "active", "tradable": true, "marginable": true,
                               "shortable": true, "easy_to_borrow": true, "fractionable": true}),
                    );
                }
                if path.starts_with("/v1beta1/options/snapshots/") {
                    return (200, sample("option-chain-snapshots.json"));
                }
                (404, json!({"message": "Not Found"}))
            }
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some(Seen { method, path: decode(path), query, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `rate`: the `X-RateLimit-Limit`, `-Remaining` and `-Reset` headers, when sent.
fn write_response(stream: &mut TcpStream, status: u16, body: &str, rate: Option<(u32, u32, i64)>) {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        _ => "Status",
    };
    let body = if status == 204 { "" } else { body };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n");
    if let Some((limit, remaining, reset)) = rate {
        head.push_str(&format!(
            "X-RateLimit-Limit: {limit}\r\nX-RateLimit-Remaining: {remaining}\r\nX-RateLimit-Reset: {reset}\r\n"
        ));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}
