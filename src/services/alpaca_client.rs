//! The Alpaca REST client: the `Broker` trait over one blocking `ureq::Agent`.
//!
//! Owns: base URLs and auth headers, every request's shape (only paths, methods, query parameters
//! and body fields that Alpaca's OpenAPI documents declare), the parsing of Alpaca's JSON into the
//! domain types (string-encoded numbers, nulls, `""` enums, nanosecond timestamps, `BTCUSD`
//! position symbols, pagination), error classification, bounded retries with backoff and jitter,
//! the rate limiter (the client's own budget, and Alpaca's count of the account's requests as
//! its `X-RateLimit-*` headers tell it), and idempotent order submission (an order found under our
//! client order id after a lost answer or a duplicate-id refusal is the answer only if it is the
//! order we sent; otherwise it is a conflict).
//!
//! Never: retries a POST blindly (a lost answer is resolved by asking for the client order id
//! first, and resent only on Alpaca's own "not found"), resends a PATCH (a replace whose answer
//! was lost is looked up by the replacing order's id), retries a final refusal (4xx), calls
//! `DELETE /v2/orders` or `DELETE /v2/positions` (which would touch the user's own orders and
//! positions), or puts a key in a log line, an error or a `Debug` print.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::core::clock;
use crate::core::config::DataFeed;
use crate::core::decimal::Dec;
use crate::core::instrument::{AssetClass, OptionKind, crypto_pair_symbol};
use crate::core::market_data::{Bar, BySymbol, Greeks, OptionContract, OptionSnapshot, Quote, Snapshots};
use crate::core::order::{Amount, OrderStatus, OrderType, PositionIntent, Side, TimeInForce};
use crate::event;
use crate::services::broker::{
    Account, BrokerError, CallStats, MarketClock, Order, OrderRequest, Position, ReplaceRequest, Transfer,
};

pub const PAPER_TRADING_URL: &str = "https://paper-api.alpaca.markets";
pub const LIVE_TRADING_URL: &str = "https://api.alpaca.markets";
pub const DATA_URL: &str = "https://data.alpaca.markets";

/// Alpaca's code for "client_order_id must be unique".
const DUPLICATE_CLIENT_ORDER_ID: u64 = 40010001;
/// Alpaca's code for "order not found" (and "position does not exist"): its own word that there
/// is none, as opposed to a 404 from a proxy or a load balancer, which says nothing about orders.
const NOT_FOUND: u64 = 40410000;
/// A guard against a server that hands out page tokens forever.
const MAX_PAGES: usize = 50;

/// The API keys. `Debug` and `Display` never show them.
#[derive(Clone)]
pub struct Credentials {
    key: String,
    secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    pub fn new(key: String, secret: String) -> Credentials {
        Credentials { key, secret }
    }

    /// From `ALPACA_KEY` and `ALPACA_SECRET`; `Err` names what is missing and points to `--sim`.
    pub fn from_env() -> Result<Credentials, String> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (get("ALPACA_KEY"), get("ALPACA_SECRET")) {
            (Some(key), Some(secret)) => Ok(Credentials { key, secret }),
            (key, secret) => {
                let missing: Vec<&str> = [("ALPACA_KEY", key.is_none()), ("ALPACA_SECRET", secret.is_none())]
                    .into_iter()
                    .filter(|(_, m)| *m)
                    .map(|(n, _)| n)
                    .collect();
                Err(format!(
                    "{} not set: export your Alpaca API keys, or run with --sim for the built-in simulated broker",
                    missing.join(" and ")
                ))
            }
        }
    }
}

/// Everything the client needs besides the keys.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub trading_url: String,
    pub data_url: String,
    pub feed: DataFeed,
    /// One HTTP exchange, connect to last byte.
    pub timeout: Duration,
    /// One logical call, retries and waits included: kept below the loop interval.
    pub retry_budget: Duration,
    pub max_attempts: u32,
    /// First backoff; doubled per attempt, with up to 50 % jitter.
    pub backoff: Duration,
    pub requests_per_minute: u32,
}

impl ClientSettings {
    /// Paper or live URLs, unless `ALPACA_TRADING_URL` / `ALPACA_DATA_URL` override them.
    pub fn base_urls(live: bool, trading_override: Option<String>, data_override: Option<String>) -> (String, String) {
        let clean = |u: String| u.trim().trim_end_matches('/').to_string();
        let trading = trading_override
            .filter(|u| !u.trim().is_empty())
            .map(clean)
            .unwrap_or_else(|| if live { LIVE_TRADING_URL } else { PAPER_TRADING_URL }.to_string());
        let data = data_override.filter(|u| !u.trim().is_empty()).map(clean).unwrap_or_else(|| DATA_URL.to_string());
        (trading, data)
    }
}

/// Keeps the client under its per-minute request budget: a sliding window of send instants;
/// and under Alpaca's own count for the account (another tool on the same key spends it too),
/// as its `X-RateLimit-Remaining` and `X-RateLimit-Reset` headers tell it (`broker_says`).
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: usize,
    sent: VecDeque<Instant>,
    /// Alpaca said its budget is nearly spent: nothing more goes before this.
    hold_until: Option<Instant>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        let per_minute = per_minute.max(1) as usize;
        RateLimiter { per_minute, sent: VecDeque::with_capacity(per_minute), hold_until: None }
    }

    /// How long to wait before one more request may go at `now` (zero: go now).
    pub fn wait_needed(&mut self, now: Instant) -> Duration {
        let minute = Duration::from_secs(60);
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= minute) {
            self.sent.pop_front();
        }
        let own = if self.sent.len() < self.per_minute {
            Duration::ZERO
        } else {
            // The oldest send leaves the window at `oldest + 60 s`.
            self.sent.front().map_or(Duration::ZERO, |t| minute.saturating_sub(now.duration_since(*t)))
        };
        let broker = self.hold_until.map_or(Duration::ZERO, |h| h.saturating_duration_since(now));
        own.max(broker)
    }

    /// Whether Alpaca's nearly spent budget is what holds the next request back at `now`.
    pub fn held_by_broker(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|h| h > now)
    }

    /// What Alpaca's headers said of the account's budget: `remaining` of `limit` until the Unix
    /// second `reset`. With a twentieth of it or less left (one request at least), nothing more
    /// goes until the reset (a minute at most): the account's budget is shared with every tool on
    /// the key, and a 429 is a failed call.
    pub fn broker_says(&mut self, limit: u32, remaining: u32, reset: i64, now: Instant, now_unix: i64) {
        let reserve = (limit / 20).max(1);
        self.hold_until = (remaining <= reserve).then(|| {
            let secs = (reset - now_unix).clamp(0, 60) as u64;
            now + Duration::from_secs(secs)
        });
    }

    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

/// A tiny xorshift generator for backoff jitter: no crate needed, no security role.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let seed = Timestamp::now().as_nanosecond() as u64 | 1;
        Jitter(seed)
    }

    /// A fraction in [0, 1).
    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Host {
    Trading,
    Data,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One attempt's outcome before classification.
enum Attempt {
    Answer {
        status: u16,
        reset: Option<i64>,
        body: String,
    },
    /// No answer: timeout, refused or dropped connection.
    NoAnswer(String),
}

/// Each connection's input and output buffer.
const IO_BUFFER: usize = 16 * 1024;

pub struct AlpacaClient {
    agent: ureq::Agent,
    credentials: Credentials,
    settings: ClientSettings,
    limiter: RateLimiter,
    jitter: Jitter,
    stats: CallStats,
}

impl AlpacaClient {
    pub fn new(credentials: Credentials, settings: ClientSettings) -> AlpacaClient {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .timeout_connect(Some(settings.timeout.min(Duration::from_secs(3))))
            // Without this a 4xx/5xx arrives as a bare status code and Alpaca's error body is lost.
            .http_status_as_error(false)
            .user_agent(concat!("trading-hydra/", env!("CARGO_PKG_VERSION")))
            // ureq zero-fills both buffers (128 KiB each by default) for every new connection:
            // a quarter of a megabyte written and faulted in per request when the server closes
            // connections. Alpaca's headers fit in a few KiB, our bodies in one or two; a longer
            // answer streams through the buffer.
            .input_buffer_size(IO_BUFFER)
            .output_buffer_size(IO_BUFFER)
            .build();
        // ureq's own connector (TLS, the pool), with host lookups kept a minute (`dns_cache`).
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            crate::services::dns_cache::CachedResolver::default(),
        );
        let limiter = RateLimiter::new(settings.requests_per_minute);
        AlpacaClient { agent, credentials, settings, limiter, jitter: Jitter::new(), stats: CallStats::default() }
    }

    fn url(&self, host: Host, path: &str) -> String {
        let base = match host {
            Host::Trading => &self.settings.trading_url,
            Host::Data => &self.settings.data_url,
        };
        format!("{base}{path}")
    }

    /// Sends once (after the rate limiter allows it).
    fn attempt(
        &mut self,
        method: Method,
        host: Host,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Attempt {
        let url = self.url(host, path);
        let key = self.credentials.key.as_str();
        let secret = self.credentials.secret.as_str();
        let result = match method {
            Method::Get | Method::Delete => {
                let mut req = if method == Method::Get { self.agent.get(&url) } else { self.agent.delete(&url) };
                req = req.header("APCA-API-KEY-ID", key).header("APCA-API-SECRET-KEY", secret);
                for (k, v) in query {
                    req = req.query(k, v);
                }
                req.call()
            }
            Method::Post | Method::Patch => {
                let req = if method == Method::Post { self.agent.post(&url) } else { self.agent.patch(&url) };
                let mut req = req.header("APCA-API-KEY-ID", key).header("APCA-API-SECRET-KEY", secret);
                for (k, v) in query {
                    req = req.query(k, v);
                }
                req.send_json(body.unwrap_or(&Value::Null))
            }
        };
        self.stats.requests += 1;
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let header = |name: &str| {
                    resp.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok())
                };
                let reset = header("x-ratelimit-reset");
                if let (Some(limit), Some(remaining), Some(reset)) =
                    (header("x-ratelimit-limit"), header("x-ratelimit-remaining"), reset)
                {
                    let clamp = |n: i64| n.clamp(0, i64::from(u32::MAX)) as u32;
                    let unix = Timestamp::now().as_second();
                    self.limiter.broker_says(clamp(limit), clamp(remaining), reset, Instant::now(), unix);
                }
                match resp.body_mut().read_to_string() {
                    Ok(body) => Attempt::Answer { status, reset, body },
                    Err(e) => Attempt::NoAnswer(format!("reading the answer failed: {e}")),
                }
            }
            // ureq's errors name the host and the failure, never the headers.
            Err(e) => Attempt::NoAnswer(e.to_string()),
        }
    }

    /// One logical call: rate-limited, retried on transient failures (GET and DELETE only, and
    /// within the retry budget), classified, reported.
    fn call(
        &mut self,
        method: Method,
        host: Host,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(u16, String), BrokerError> {
        let endpoint = format!("{} {path}", method.as_str());
        let started = Instant::now();
        let budget = self.settings.retry_budget;
        // Sending an order, or replacing one, twice could double it: neither is retried here.
        let retry_allowed = !matches!(method, Method::Post | Method::Patch);
        let mut attempt_no = 0;
        let outcome = loop {
            attempt_no += 1;
            let wait = self.limiter.wait_needed(Instant::now());
            if !wait.is_zero() {
                if started.elapsed() + wait > budget {
                    let detail = if self.limiter.held_by_broker(Instant::now()) {
                        format!(
                            "Alpaca's request budget for the account is nearly spent (X-RateLimit-Remaining; another \
                             tool on the same key?): nothing goes until its reset in {} s",
                            wait.as_secs()
                        )
                    } else {
                        format!(
                            "client-side rate limit of {} requests a minute reached",
                            self.settings.requests_per_minute
                        )
                    };
                    break Err(BrokerError::Transient { endpoint: endpoint.clone(), status: None, detail });
                }
                std::thread::sleep(wait);
            }
            self.limiter.record(Instant::now());
            let (status, detail, retry_after) = match self.attempt(method, host, path, query, body) {
                Attempt::Answer { status, body, .. } if (200..300).contains(&status) => break Ok((status, body)),
                Attempt::Answer { status, reset, body } if status == 429 || status == 408 || status >= 500 => {
                    let wait = reset.and_then(|r| {
                        let secs = r - Timestamp::now().as_second();
                        (secs > 0).then(|| Duration::from_secs(secs as u64))
                    });
                    (Some(status), error_message(&body).1, wait)
                }
                Attempt::Answer { status, body, .. } => break Err(final_error(&endpoint, status, &body)),
                Attempt::NoAnswer(detail) => (None, detail, None),
            };
            let backoff = self.backoff(attempt_no).max(retry_after.unwrap_or_default());
            let out_of_time = started.elapsed() + backoff > budget;
            if !retry_allowed || attempt_no >= self.settings.max_attempts || out_of_time {
                break Err(BrokerError::Transient { endpoint: endpoint.clone(), status, detail });
            }
            event!(
                Debug,
                "api_retry",
                endpoint = endpoint.as_str(),
                status = status,
                attempt = attempt_no,
                detail = detail.as_str()
            );
            std::thread::sleep(backoff);
        };
        if let Err(e) = &outcome {
            self.report(e);
        }
        outcome
    }

    fn backoff(&mut self, attempt_no: u32) -> Duration {
        let base = self.settings.backoff.saturating_mul(1 << attempt_no.saturating_sub(1).min(10));
        base.mul_f64(1.0 + 0.5 * self.jitter.next())
    }

    /// Logs a failed call and counts it for the health window — unless it is Alpaca's own
    /// refusal (a 4xx with Alpaca's JSON code: "insufficient qty", "not found", a wash trade):
    /// that is an answer, not an outage. A 4xx without it (a proxy's HTML page) still counts.
    fn report(&mut self, e: &BrokerError) {
        if !matches!(e, BrokerError::Rejected { code: Some(_), .. }) {
            self.stats.failures.push(Timestamp::now());
        }
        let detail = e.to_string();
        event!(Warn, "api_error", endpoint = e.endpoint(), status = e.status(), detail = detail.as_str());
    }

    fn get<T: serde::de::DeserializeOwned>(
        &mut self,
        host: Host,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, BrokerError> {
        let (_, body) = self.call(Method::Get, host, path, query, None)?;
        self.parse(&format!("GET {path}"), &body)
    }

    /// A GET whose 404 with Alpaca's own "not found" code means "there is none". Any other 404
    /// (an HTML page, a JSON body without that code) is an error like any failed call: the
    /// caller stays unsure, and an order is never abandoned or sent again on a proxy's word.
    fn get_optional<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>, BrokerError> {
        match self.get(Host::Trading, path, query) {
            Ok(v) => Ok(Some(v)),
            // Not a failure: the answer is "no such thing" (and `report` did not count it).
            Err(BrokerError::Rejected { status: 404, code: Some(NOT_FOUND), .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&mut self, endpoint: &str, body: &str) -> Result<T, BrokerError> {
        serde_json::from_str(body).map_err(|e| {
            let err = BrokerError::BadResponse { endpoint: endpoint.to_string(), detail: e.to_string() };
            self.report(&err);
            err
        })
    }

    fn feed(&self) -> String {
        match self.settings.feed {
            DataFeed::Iex => "iex".into(),
            DataFeed::Sip => "sip".into(),
        }
    }

    /// Historical bars of one symbol (a stock, or a crypto pair with a slash) between `start` and
    /// `end`, handed over page by page (oldest first) so a long download never sits in memory.
    /// Pages are fetched without limit of count, within the client's rate limit.
    pub fn historical_bars(
        &mut self,
        symbol: &str,
        timeframe: &str,
        start: Timestamp,
        end: Timestamp,
        mut on_page: impl FnMut(Vec<Bar>) -> Result<(), String>,
    ) -> Result<(), String> {
        let crypto = AssetClass::of(symbol) == AssetClass::Crypto;
        let path = if crypto { "/v1beta3/crypto/us/bars" } else { "/v2/stocks/bars" };
        let mut query = vec![
            ("symbols", symbol.to_string()),
            ("timeframe", timeframe.to_string()),
            ("start", clock::db_ts(start)),
            ("end", clock::db_ts(end)),
            ("limit", "10000".to_string()),
            ("sort", "asc".to_string()),
        ];
        if !crypto {
            query.push(("feed", self.feed()));
        }
        loop {
            let page: BarsPage = self.get(Host::Data, path, &query).map_err(|e| e.to_string())?;
            let mut bars = Vec::new();
            for (_, list) in page.bars.unwrap_or_default().into_iter().filter(|(s, _)| s == symbol) {
                for b in list {
                    bars.push(b.into_bar(path).map_err(|e| e.to_string())?);
                }
            }
            on_page(bars)?;
            if !next_page(&mut query, page.next_page_token) {
                return Ok(());
            }
        }
    }

    /// Follows `next_page_token` over a bars endpoint, merging symbol by symbol.
    fn bars(&mut self, path: &str, mut query: Vec<(&str, String)>) -> Result<BySymbol<Vec<Bar>>, BrokerError> {
        let mut out: BySymbol<Vec<Bar>> = BySymbol::new();
        for _ in 0..MAX_PAGES {
            let page: BarsPage = self.get(Host::Data, path, &query)?;
            for (symbol, bars) in page.bars.unwrap_or_default() {
                let list = out.entry(symbol).or_default();
                for b in bars {
                    list.push(b.into_bar(path)?);
                }
            }
            if !next_page(&mut query, page.next_page_token) {
                return Ok(out);
            }
        }
        Ok(out)
    }
}

/// Puts the next page's token into `query`; `false` when there is no next page.
fn next_page(query: &mut Vec<(&str, String)>, token: Option<String>) -> bool {
    match token.filter(|t| !t.is_empty()) {
        Some(token) => {
            query.retain(|(k, _)| *k != "page_token");
            query.push(("page_token", token));
            true
        }
        None => false,
    }
}

/// Alpaca's error body: `{"code": 40010001, "message": "..."}`, `code` sometimes missing, and
/// sometimes not JSON at all (a proxy's HTML page).
fn error_message(body: &str) -> (Option<u64>, String) {
    #[derive(Deserialize)]
    struct ErrorBody {
        code: Option<Value>,
        message: Option<String>,
    }
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => {
            let code = e.code.and_then(|c| c.as_u64().or_else(|| c.as_str().and_then(|s| s.parse().ok())));
            (code, e.message.unwrap_or_else(|| "no message".into()))
        }
        Err(_) => {
            let text: String = body.chars().take(200).collect();
            (None, if text.trim().is_empty() { "empty answer".into() } else { text })
        }
    }
}

fn final_error(endpoint: &str, status: u16, body: &str) -> BrokerError {
    let (code, message) = error_message(body);
    if status == 401 {
        BrokerError::Unauthorized { endpoint: endpoint.to_string(), status, message }
    } else {
        BrokerError::Rejected { endpoint: endpoint.to_string(), status, code, message }
    }
}

fn bad(endpoint: &str, detail: impl Into<String>) -> BrokerError {
    BrokerError::BadResponse { endpoint: endpoint.to_string(), detail: detail.into() }
}

fn ts(endpoint: &str, text: &str) -> Result<Timestamp, BrokerError> {
    clock::parse_ts(text).map_err(|e| bad(endpoint, e))
}

// ---------------------------------------------------------------------------------------------
// Alpaca's JSON, read tolerantly: unknown fields ignored, optional ones defaulted, only what the
// daemon needs required.
// ---------------------------------------------------------------------------------------------

/// A JSON number or a string holding one (`"options_trading_level": "1"`).
fn de_opt_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v: Option<Value> = Option::deserialize(d)?;
    Ok(v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))))
}

#[derive(Deserialize)]
struct RawAccount {
    id: String,
    #[serde(default)]
    account_number: Option<String>,
    status: String,
    equity: Dec,
    #[serde(default)]
    last_equity: Option<Dec>,
    cash: Dec,
    buying_power: Dec,
    #[serde(default)]
    non_marginable_buying_power: Option<Dec>,
    #[serde(default)]
    options_buying_power: Option<Dec>,
    #[serde(default)]
    trading_blocked: bool,
    #[serde(default)]
    account_blocked: bool,
    #[serde(default)]
    trade_suspended_by_user: bool,
    #[serde(default)]
    shorting_enabled: bool,
    #[serde(default, deserialize_with = "de_opt_u64")]
    options_trading_level: Option<u64>,
    #[serde(default)]
    crypto_status: Option<String>,
}

impl From<RawAccount> for Account {
    fn from(r: RawAccount) -> Account {
        Account {
            id: r.id,
            number: r.account_number,
            status: r.status,
            equity: r.equity,
            // A zero previous close (a brand-new account) is no reference.
            last_equity: r.last_equity.filter(|e| !e.is_zero()),
            cash: r.cash,
            buying_power: r.buying_power,
            non_marginable_buying_power: r.non_marginable_buying_power,
            options_buying_power: r.options_buying_power,
            trading_blocked: r.trading_blocked,
            account_blocked: r.account_blocked,
            trade_suspended_by_user: r.trade_suspended_by_user,
            shorting_enabled: r.shorting_enabled,
            options_trading_level: r.options_trading_level.map(|l| l.min(u8::MAX as u64) as u8),
            crypto_status: r.crypto_status,
        }
    }
}

#[derive(Deserialize)]
struct RawClock {
    timestamp: String,
    is_open: bool,
    next_open: String,
    next_close: String,
}

/// One of Alpaca's non-trade account activities (`GET /v2/account/activities`).
#[derive(Deserialize)]
struct RawActivity {
    id: String,
    activity_type: String,
    #[serde(default)]
    net_amount: Option<Dec>,
    /// The day it occurred or settled: `2026-11-25`, or a time.
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

impl RawActivity {
    /// The transfer it records; `None` for one cancelled. A deposit counts in and a withdrawal out
    /// whatever the sign Alpaca gives its amount; a cash journal goes by its sign.
    fn into_transfer(self, endpoint: &str) -> Result<Option<Transfer>, BrokerError> {
        if self.status.as_deref() == Some("canceled") {
            return Ok(None);
        }
        let amount = self.net_amount.ok_or_else(|| bad(endpoint, format!("activity {} has no net_amount", self.id)))?;
        let amount = match self.activity_type.as_str() {
            "CSD" => amount.abs(),
            "CSW" => Dec::ZERO.checked_sub(amount.abs()).unwrap_or(amount),
            _ => amount,
        };
        let at = match (&self.created_at, &self.date) {
            (Some(t), _) => ts(endpoint, t)?,
            (None, Some(d)) if d.len() == 10 => {
                let day: Date =
                    d.parse().map_err(|e| bad(endpoint, format!("activity {}: date {d:?}: {e}", self.id)))?;
                clock::start_of_date(day)
            }
            (None, Some(d)) => ts(endpoint, d)?,
            (None, None) => return Err(bad(endpoint, format!("activity {} has no time", self.id))),
        };
        Ok(Some(Transfer { id: self.id, kind: self.activity_type, amount, at }))
    }
}

#[derive(Deserialize)]
struct RawPosition {
    symbol: String,
    #[serde(default)]
    asset_class: String,
    qty: Dec,
    #[serde(default)]
    side: String,
    avg_entry_price: Dec,
    #[serde(default)]
    current_price: Option<Dec>,
    #[serde(default)]
    market_value: Option<Dec>,
    #[serde(default)]
    unrealized_pl: Option<Dec>,
    #[serde(default)]
    qty_available: Option<Dec>,
}

impl From<RawPosition> for Position {
    fn from(r: RawPosition) -> Position {
        let asset_class = AssetClass::parse(&r.asset_class);
        let symbol = if asset_class == AssetClass::Crypto { crypto_pair_symbol(&r.symbol) } else { r.symbol };
        // Shorts come with a negative qty; some fixtures give a positive qty with side "short".
        let qty = if r.side == "short" && !r.qty.is_negative() {
            Dec::ZERO.checked_sub(r.qty).unwrap_or(r.qty)
        } else {
            r.qty
        };
        Position {
            symbol,
            asset_class,
            qty,
            avg_entry_price: r.avg_entry_price,
            current_price: r.current_price,
            market_value: r.market_value,
            unrealized_pl: r.unrealized_pl,
            qty_available: r.qty_available.map(Dec::abs),
        }
    }
}

#[derive(Deserialize)]
struct RawOrder {
    id: String,
    #[serde(default)]
    client_order_id: String,
    #[serde(default)]
    symbol: String,
    #[serde(default)]
    asset_class: String,
    #[serde(default)]
    side: String,
    #[serde(default, rename = "type")]
    order_type: String,
    #[serde(default)]
    time_in_force: String,
    #[serde(default)]
    qty: Option<Dec>,
    #[serde(default)]
    notional: Option<Dec>,
    #[serde(default)]
    filled_qty: Option<Dec>,
    #[serde(default)]
    filled_avg_price: Option<Dec>,
    #[serde(default)]
    limit_price: Option<Dec>,
    #[serde(default)]
    stop_price: Option<Dec>,
    status: String,
    #[serde(default)]
    order_class: String,
    #[serde(default)]
    position_intent: Option<String>,
    #[serde(default)]
    legs: Option<Vec<RawOrder>>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    filled_at: Option<String>,
}

impl RawOrder {
    fn into_order(self, endpoint: &str) -> Result<Order, BrokerError> {
        let created_at = self.created_at.as_deref().map(|t| ts(endpoint, t)).transpose()?;
        let asset_class = AssetClass::parse(&self.asset_class);
        let position_intent = self.position_intent.as_deref().and_then(PositionIntent::parse);
        let legs =
            self.legs.unwrap_or_default().into_iter().map(|l| l.into_order(endpoint)).collect::<Result<_, _>>()?;
        Ok(Order {
            id: self.id,
            client_order_id: self.client_order_id,
            symbol: if asset_class == AssetClass::Crypto { crypto_pair_symbol(&self.symbol) } else { self.symbol },
            asset_class,
            side: Side::parse(&self.side),
            order_type: OrderType::parse(&self.order_type),
            time_in_force: TimeInForce::parse(&self.time_in_force),
            qty: self.qty,
            notional: self.notional,
            filled_qty: self.filled_qty,
            filled_avg_price: self.filled_avg_price,
            limit_price: self.limit_price,
            stop_price: self.stop_price,
            status: OrderStatus::parse(&self.status),
            order_class: if self.order_class.is_empty() { "simple".into() } else { self.order_class },
            position_intent,
            legs,
            created_at,
            // Only a record of when it filled (`fills.at`): a time that does not parse is left
            // out, and the fill is dated when it was booked.
            filled_at: self.filled_at.as_deref().and_then(|t| t.parse().ok()),
        })
    }
}

#[derive(Deserialize)]
struct RawBar {
    t: String,
    o: f64,
    h: f64,
    l: f64,
    c: f64,
    #[serde(default)]
    v: f64,
}

impl RawBar {
    fn into_bar(self, endpoint: &str) -> Result<Bar, BrokerError> {
        Ok(Bar { t: ts(endpoint, &self.t)?, open: self.o, high: self.h, low: self.l, close: self.c, volume: self.v })
    }
}

#[derive(Deserialize)]
struct BarsPage {
    #[serde(default)]
    bars: Option<BySymbol<Vec<RawBar>>>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct RawQuote {
    t: String,
    #[serde(default)]
    bp: f64,
    #[serde(default)]
    ap: f64,
    #[serde(default, rename = "bs")]
    bid_size: f64,
    #[serde(default, rename = "as")]
    ask_size: f64,
}

impl RawQuote {
    fn into_quote(self, endpoint: &str) -> Result<Quote, BrokerError> {
        Ok(Quote {
            t: ts(endpoint, &self.t)?,
            bid: self.bp,
            ask: self.ap,
            bid_size: self.bid_size,
            ask_size: self.ask_size,
        })
    }
}

#[derive(Deserialize)]
struct QuotesAnswer {
    #[serde(default)]
    quotes: BySymbol<RawQuote>,
}

#[derive(Deserialize)]
struct RawContract {
    symbol: String,
    #[serde(default)]
    underlying_symbol: String,
    expiration_date: String,
    #[serde(rename = "type")]
    kind: String,
    strike_price: Dec,
    #[serde(default)]
    multiplier: Option<Dec>,
    #[serde(default)]
    size: Option<Dec>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    open_interest: Option<u64>,
    #[serde(default)]
    close_price: Option<Dec>,
    #[serde(default)]
    tradable: bool,
}

#[derive(Deserialize)]
struct ContractsPage {
    #[serde(default)]
    option_contracts: Vec<RawContract>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct RawGreeks {
    #[serde(default)]
    delta: f64,
    #[serde(default)]
    gamma: f64,
    #[serde(default)]
    theta: f64,
    #[serde(default)]
    vega: f64,
    #[serde(default)]
    rho: f64,
}

#[derive(Deserialize)]
struct RawDailyBar {
    #[serde(default)]
    v: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSnapshot {
    #[serde(default)]
    latest_quote: Option<RawQuote>,
    #[serde(default)]
    greeks: Option<RawGreeks>,
    #[serde(default)]
    implied_volatility: Option<f64>,
    #[serde(default)]
    daily_bar: Option<RawDailyBar>,
}

#[derive(Deserialize)]
struct SnapshotsPage {
    #[serde(default)]
    snapshots: BySymbol<RawSnapshot>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// The JSON body of `POST /v2/orders`.
pub fn order_body(r: &OrderRequest) -> Value {
    let mut body = json!({
        "type": r.order_type.as_str(),
        "time_in_force": r.time_in_force.as_str(),
        "client_order_id": r.client_order_id,
    });
    let map = body.as_object_mut().expect("json! of an object literal is an object");
    match r.amount {
        Amount::Qty(q) => map.insert("qty".into(), q.to_string().into()),
        Amount::Notional(n) => map.insert("notional".into(), n.to_string().into()),
    };
    if let Some(p) = r.limit_price {
        map.insert("limit_price".into(), p.to_string().into());
    }
    if let Some(p) = r.stop_price {
        map.insert("stop_price".into(), p.to_string().into());
    }
    if r.legs.is_empty() {
        map.insert("symbol".into(), r.symbol.clone().into());
        map.insert("side".into(), r.side.as_str().into());
        if r.extended_hours {
            map.insert("extended_hours".into(), true.into());
        }
    } else {
        map.insert("order_class".into(), "mleg".into());
        let legs: Vec<Value> = r
            .legs
            .iter()
            .map(|l| {
                json!({
                    "symbol": l.symbol,
                    "side": l.position_intent.side().as_str(),
                    "ratio_qty": l.ratio_qty.to_string(),
                    "position_intent": l.position_intent.as_str(),
                })
            })
            .collect();
        map.insert("legs".into(), legs.into());
    }
    body
}

/// `order`, found under the client order id of `request`, if it is what we sent; otherwise the
/// conflict, which the caller records and halts on (it never books or touches the stranger).
fn ours_or_conflict(request: &OrderRequest, order: Order) -> Result<Order, BrokerError> {
    match crate::services::broker::order_mismatch(request, &order) {
        None => Ok(order),
        Some(detail) => Err(BrokerError::Conflict {
            client_order_id: request.client_order_id.clone(),
            broker_order_id: order.id,
            detail,
        }),
    }
}

/// A submit whose outcome could not be learned: transient, so the order is kept as unknown.
fn lookup_failed(endpoint: &str, client_order_id: &str, lookup: &BrokerError) -> BrokerError {
    BrokerError::Transient {
        endpoint: endpoint.into(),
        status: lookup.status(),
        detail: format!("the answer was lost and looking up {client_order_id} failed: {lookup}"),
    }
}

/// Refuses what Alpaca would refuse anyway, or what would be dangerous to send.
fn check_request(r: &OrderRequest) -> Result<(), BrokerError> {
    let invalid = |d: String| Err(BrokerError::Invalid { detail: d });
    if r.client_order_id.is_empty() || r.client_order_id.len() > 128 {
        return invalid(format!("client_order_id must be 1 to 128 characters, got {:?}", r.client_order_id));
    }
    let amount = match r.amount {
        Amount::Qty(q) | Amount::Notional(q) => q,
    };
    if amount.is_negative() || amount.is_zero() {
        return invalid(format!("{}: the amount must be above zero, got {amount}", r.client_order_id));
    }
    let needs_limit = matches!(r.order_type, OrderType::Limit | OrderType::StopLimit);
    if needs_limit && r.limit_price.is_none() {
        // Never let a missing price turn a limit into a market order.
        return invalid(format!("{}: a {} order needs a limit price", r.client_order_id, r.order_type.as_str()));
    }
    let needs_stop = matches!(r.order_type, OrderType::Stop | OrderType::StopLimit);
    if needs_stop && r.stop_price.is_none() {
        // Nor a missing trigger a stop into a market order.
        return invalid(format!("{}: a {} order needs a stop price", r.client_order_id, r.order_type.as_str()));
    }
    if !r.legs.is_empty() && !(2..=4).contains(&r.legs.len()) {
        return invalid(format!("{}: a multi-leg order has 2 to 4 legs, got {}", r.client_order_id, r.legs.len()));
    }
    Ok(())
}

impl crate::services::broker::Broker for AlpacaClient {
    fn account(&mut self) -> Result<Account, BrokerError> {
        let raw: RawAccount = self.get(Host::Trading, "/v2/account", &[])?;
        Ok(raw.into())
    }

    fn clock(&mut self) -> Result<MarketClock, BrokerError> {
        let raw: RawClock = self.get(Host::Trading, "/v2/clock", &[])?;
        let e = "GET /v2/clock";
        Ok(MarketClock {
            timestamp: ts(e, &raw.timestamp)?,
            is_open: raw.is_open,
            next_open: ts(e, &raw.next_open)?,
            next_close: ts(e, &raw.next_close)?,
        })
    }

    fn positions(&mut self) -> Result<Vec<Position>, BrokerError> {
        let raw: Vec<RawPosition> = self.get(Host::Trading, "/v2/positions", &[])?;
        Ok(raw.into_iter().map(Position::from).collect())
    }

    fn open_orders(&mut self) -> Result<Vec<Order>, BrokerError> {
        let q = [("status", "open".to_string()), ("limit", "500".to_string()), ("nested", "true".to_string())];
        let raw: Vec<RawOrder> = self.get(Host::Trading, "/v2/orders", &q)?;
        raw.into_iter().map(|o| o.into_order("GET /v2/orders")).collect()
    }

    fn recent_orders(&mut self, after: Option<Timestamp>) -> Result<Vec<Order>, BrokerError> {
        let mut q = vec![
            ("status", "all".to_string()),
            ("limit", "500".to_string()),
            ("direction", "desc".to_string()),
            ("nested", "true".to_string()),
        ];
        if let Some(after) = after {
            q.push(("after", after.to_string()));
        }
        let raw: Vec<RawOrder> = self.get(Host::Trading, "/v2/orders", &q)?;
        raw.into_iter().map(|o| o.into_order("GET /v2/orders")).collect()
    }

    /// Page by page (100 at most each, the next asked after the last id), ten pages at most: a
    /// day of an account's transfers is a handful.
    fn transfers(&mut self, after: Timestamp) -> Result<Vec<Transfer>, BrokerError> {
        const ENDPOINT: &str = "GET /v2/account/activities";
        const PAGE: usize = 100;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10 {
            let mut q = vec![
                ("activity_types", "CSD,CSW,JNLC".to_string()),
                ("after", after.to_string()),
                ("direction", "asc".to_string()),
                ("page_size", PAGE.to_string()),
            ];
            if let Some(t) = &token {
                q.push(("page_token", t.clone()));
            }
            let page: Vec<RawActivity> = self.get(Host::Trading, "/v2/account/activities", &q)?;
            let full = page.len() >= PAGE;
            token = page.last().map(|a| a.id.clone());
            for a in page {
                out.extend(a.into_transfer(ENDPOINT)?);
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    fn order(&mut self, id: &str) -> Result<Option<Order>, BrokerError> {
        let path = format!("/v2/orders/{}", path_segment(id));
        let raw: Option<RawOrder> = self.get_optional(&path, &[("nested", "true".to_string())])?;
        raw.map(|o| o.into_order("GET /v2/orders/{order_id}")).transpose()
    }

    /// By client order id; a multi-leg order always comes back with its legs. That endpoint has
    /// no `nested` parameter, so an answer without them is read again by the broker's id with
    /// `nested=true`: the legs are what an order is checked against and what its fills book.
    fn order_by_client_id(&mut self, client_order_id: &str) -> Result<Option<Order>, BrokerError> {
        let q = [("client_order_id", client_order_id.to_string())];
        let raw: Option<RawOrder> = self.get_optional("/v2/orders:by_client_order_id", &q)?;
        let Some(order) = raw.map(|o| o.into_order("GET /v2/orders:by_client_order_id")).transpose()? else {
            return Ok(None);
        };
        if order.order_class == "mleg" && order.legs.is_empty() {
            // Gone between the two questions cannot be: an order is never deleted at Alpaca.
            return Ok(Some(self.order(&order.id)?.unwrap_or(order)));
        }
        Ok(Some(order))
    }

    fn submit_order(&mut self, request: &OrderRequest) -> Result<Order, BrokerError> {
        check_request(request)?;
        let body = order_body(request);
        let endpoint = "POST /v2/orders";
        let started = Instant::now();
        let mut sends = 0;
        loop {
            sends += 1;
            match self.call(Method::Post, Host::Trading, "/v2/orders", &[], Some(&body)) {
                // Alpaca made this order from our body: it is ours.
                Ok((_, text)) => {
                    let raw: RawOrder = self.parse(endpoint, &text)?;
                    return raw.into_order(endpoint);
                }
                // Alpaca already has an order under this id: our own earlier send whose answer
                // was lost, or — when the ledger was moved, restored or shared — someone else's.
                // Only an order that is what we sent is the answer.
                Err(BrokerError::Rejected { status: 422, code: Some(DUPLICATE_CLIENT_ORDER_ID), .. }) => {
                    return match self.order_by_client_id(&request.client_order_id) {
                        Ok(Some(order)) => ours_or_conflict(request, order),
                        // Taken, yet not found: nothing to believe either way. Unknown, so the
                        // caller looks again later and never sends this id again.
                        Ok(None) => Err(BrokerError::Transient {
                            endpoint: endpoint.into(),
                            status: Some(422),
                            detail: format!(
                                "Alpaca says {} is taken but has no order under it",
                                request.client_order_id
                            ),
                        }),
                        Err(e) => Err(lookup_failed(endpoint, &request.client_order_id, &e)),
                    };
                }
                // The answer was lost (timeout, dropped connection, 5xx, 429): the order may or may
                // not exist. Ask before sending again, and send again only on Alpaca's own word
                // that there is no such order; if the question fails too, the order stays unknown
                // (the caller looks it up later, and never sends it again blindly).
                Err(e @ BrokerError::Transient { .. }) => match self.order_by_client_id(&request.client_order_id) {
                    Ok(Some(order)) => return ours_or_conflict(request, order),
                    Ok(None) => {
                        let out_of_time = started.elapsed() + self.settings.backoff > self.settings.retry_budget;
                        if sends >= self.settings.max_attempts || out_of_time {
                            return Err(e);
                        }
                        std::thread::sleep(self.backoff(sends));
                    }
                    Err(lookup) => return Err(lookup_failed(endpoint, &request.client_order_id, &lookup)),
                },
                Err(e) => return Err(e),
            }
        }
    }

    fn replace_order(&mut self, id: &str, r: &ReplaceRequest) -> Result<Order, BrokerError> {
        let endpoint = "PATCH /v2/orders/{order_id}";
        let path = format!("/v2/orders/{}", path_segment(id));
        let mut body = json!({ "client_order_id": r.client_order_id });
        let map = body.as_object_mut().expect("json! of an object literal is an object");
        if let Some(p) = r.stop_price {
            map.insert("stop_price".into(), p.to_string().into());
        }
        if let Some(p) = r.limit_price {
            map.insert("limit_price".into(), p.to_string().into());
        }
        match self.call(Method::Patch, Host::Trading, &path, &[], Some(&body)) {
            // Alpaca made the replacing order from our body: ours.
            Ok((_, text)) => {
                let raw: RawOrder = self.parse(endpoint, &text)?;
                raw.into_order(endpoint)
            }
            // A lost answer: the replacing order may exist under our new id. Looked up, never
            // sent again (a resend would replace an order already replaced).
            Err(e @ BrokerError::Transient { .. }) => match self.order_by_client_id(&r.client_order_id) {
                Ok(Some(order)) if order.stop_price == r.stop_price => Ok(order),
                Ok(_) => Err(e),
                Err(lookup) => Err(lookup_failed(endpoint, &r.client_order_id, &lookup)),
            },
            Err(e) => Err(e),
        }
    }

    fn cancel_order(&mut self, id: &str) -> Result<(), BrokerError> {
        let path = format!("/v2/orders/{}", path_segment(id));
        self.call(Method::Delete, Host::Trading, &path, &[], None).map(drop)
    }

    fn stock_bars(
        &mut self,
        symbols: &[String],
        timeframe: &str,
        start: Timestamp,
    ) -> Result<BySymbol<Vec<Bar>>, BrokerError> {
        let query = vec![
            ("symbols", symbols.join(",")),
            ("timeframe", timeframe.to_string()),
            ("start", clock::db_ts(start)),
            ("limit", "10000".to_string()),
            ("feed", self.feed()),
            ("sort", "asc".to_string()),
        ];
        self.bars("/v2/stocks/bars", query)
    }

    fn stock_quotes(&mut self, symbols: &[String]) -> Result<BySymbol<Quote>, BrokerError> {
        let q = [("symbols", symbols.join(",")), ("feed", self.feed())];
        let raw: QuotesAnswer = self.get(Host::Data, "/v2/stocks/quotes/latest", &q)?;
        raw.quotes.into_iter().map(|(s, q)| Ok((s, q.into_quote("GET /v2/stocks/quotes/latest")?))).collect()
    }

    fn crypto_bars(
        &mut self,
        pairs: &[String],
        timeframe: &str,
        start: Timestamp,
    ) -> Result<BySymbol<Vec<Bar>>, BrokerError> {
        let query = vec![
            ("symbols", pairs.join(",")),
            ("timeframe", timeframe.to_string()),
            ("start", clock::db_ts(start)),
            ("limit", "10000".to_string()),
            ("sort", "asc".to_string()),
        ];
        self.bars("/v1beta3/crypto/us/bars", query)
    }

    fn crypto_quotes(&mut self, pairs: &[String]) -> Result<BySymbol<Quote>, BrokerError> {
        let q = [("symbols", pairs.join(","))];
        let raw: QuotesAnswer = self.get(Host::Data, "/v1beta3/crypto/us/latest/quotes", &q)?;
        raw.quotes.into_iter().map(|(s, q)| Ok((s, q.into_quote("GET /v1beta3/crypto/us/latest/quotes")?))).collect()
    }

    fn option_contracts(
        &mut self,
        underlyings: &[String],
        from: Date,
        to: Date,
    ) -> Result<Vec<OptionContract>, BrokerError> {
        let e = "GET /v2/options/contracts";
        let mut query = vec![
            ("underlying_symbols", underlyings.join(",")),
            ("status", "active".to_string()),
            ("expiration_date_gte", from.to_string()),
            // Without an upper bound Alpaca answers only contracts expiring before the weekend.
            ("expiration_date_lte", to.to_string()),
            ("limit", "10000".to_string()),
        ];
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: ContractsPage = self.get(Host::Trading, "/v2/options/contracts", &query)?;
            for c in page.option_contracts {
                let kind = match c.kind.as_str() {
                    "call" => OptionKind::Call,
                    "put" => OptionKind::Put,
                    // A kind this build does not know is no contract it can trade: left out,
                    // not a reason to fail the whole chain.
                    other => {
                        event!(
                            Debug,
                            "contract_skipped",
                            symbol = c.symbol.as_str(),
                            detail = format!("type {other:?}")
                        );
                        continue;
                    }
                };
                out.push(OptionContract {
                    expiration: c
                        .expiration_date
                        .parse()
                        .map_err(|_| bad(e, format!("bad date {:?}", c.expiration_date)))?,
                    symbol: c.symbol,
                    underlying: c.underlying_symbol,
                    kind,
                    strike: c.strike_price,
                    multiplier: c
                        .multiplier
                        .or(c.size)
                        .unwrap_or(Dec::from_int(crate::core::instrument::OPTION_MULTIPLIER)),
                    open_interest: c.open_interest,
                    close_price: c.close_price,
                    tradable: c.tradable,
                });
            }
            if !next_page(&mut query, page.next_page_token) {
                break;
            }
        }
        Ok(out)
    }

    fn option_snapshots(
        &mut self,
        underlying: &str,
        from: Date,
        to: Date,
        kind: Option<OptionKind>,
        strikes: Option<(Dec, Dec)>,
    ) -> Result<Snapshots, BrokerError> {
        let path = format!("/v1beta1/options/snapshots/{}", path_segment(underlying));
        let e = "GET /v1beta1/options/snapshots/{underlying_symbol}";
        let mut query = vec![
            ("feed", "indicative".to_string()),
            ("expiration_date_gte", from.to_string()),
            ("expiration_date_lte", to.to_string()),
            ("limit", "1000".to_string()),
        ];
        if let Some(kind) = kind {
            query.push(("type", kind.word().to_string()));
        }
        if let Some((low, high)) = strikes {
            query.push(("strike_price_gte", low.to_string()));
            query.push(("strike_price_lte", high.to_string()));
        }
        let mut out = Snapshots::new();
        for _ in 0..MAX_PAGES {
            let page: SnapshotsPage = self.get(Host::Data, &path, &query)?;
            for (symbol, s) in page.snapshots {
                let quote = s.latest_quote.map(|q| q.into_quote(e)).transpose()?;
                let greeks = s.greeks.map(|g| Greeks {
                    delta: g.delta,
                    gamma: g.gamma,
                    theta: g.theta,
                    vega: g.vega,
                    rho: g.rho,
                });
                out.insert(
                    symbol,
                    OptionSnapshot {
                        quote,
                        greeks,
                        implied_volatility: s.implied_volatility,
                        volume: s.daily_bar.map(|b| b.v),
                    },
                );
            }
            if !next_page(&mut query, page.next_page_token) {
                break;
            }
        }
        Ok(out)
    }

    fn take_call_stats(&mut self) -> CallStats {
        std::mem::take(&mut self.stats)
    }
}

/// Percent-encodes one path segment (ids and symbols are plain, but a stray `/` or `?` must not
/// change the path).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::order::Leg;

    fn sample(name: &str) -> String {
        std::fs::read_to_string(format!("tests/fixtures/alpaca/{name}")).unwrap()
    }

    #[test]
    fn account_parses_with_and_without_the_removed_pdt_fields() {
        let a: Account = serde_json::from_str::<RawAccount>(&sample("account.json")).unwrap().into();
        assert_eq!(a.equity.to_string(), "103820.56");
        assert_eq!(a.last_equity.unwrap().to_string(), "103529.24");
        assert_eq!(a.options_trading_level, Some(1));
        assert!(a.trading_refusal().is_none());
        let spec: Account = serde_json::from_str::<RawAccount>(&sample("account-spec-example.json")).unwrap().into();
        assert!(spec.equity > Dec::ZERO);
        // Without the PDT fields and with fields nobody knows yet.
        let mut v: Value = serde_json::from_str(&sample("account.json")).unwrap();
        let m = v.as_object_mut().unwrap();
        for k in ["pattern_day_trader", "daytrade_count", "daytrading_buying_power"] {
            m.remove(k);
        }
        m.insert("brand_new_field".into(), json!({"nested": [1, 2]}));
        m.insert("trading_blocked".into(), true.into());
        let a: Account = serde_json::from_value::<RawAccount>(v).unwrap().into();
        assert_eq!(a.trading_refusal().as_deref(), Some("trading_blocked"));
    }

    #[test]
    fn orders_parse_including_multi_leg_parents() {
        for f in ["order-equity.json", "order-crypto.json", "order-option.json", "order-mleg.json"] {
            let o = serde_json::from_str::<RawOrder>(&sample(f)).unwrap().into_order("t").unwrap();
            assert!(!o.id.is_empty(), "{f}");
        }
        let m = serde_json::from_str::<RawOrder>(&sample("order-mleg.json")).unwrap().into_order("t").unwrap();
        assert_eq!(m.order_class, "mleg");
        assert_eq!(m.side, None);
        assert_eq!(m.legs.len(), 2);
        assert_eq!(m.legs[0].position_intent, Some(PositionIntent::BuyToOpen));
        assert_eq!(m.filled_avg_price.unwrap().to_string(), "1.28");
        let e = serde_json::from_str::<RawOrder>(&sample("order-equity.json")).unwrap().into_order("t").unwrap();
        assert_eq!(e.order_class, "simple");
        assert_eq!(e.limit_price.unwrap().to_string(), "150");
        assert_eq!(e.created_at.unwrap(), "2023-12-12T22:31:24.668464435Z".parse::<Timestamp>().unwrap());
        let c = serde_json::from_str::<RawOrder>(&sample("order-crypto.json")).unwrap().into_order("t").unwrap();
        assert_eq!(c.symbol, "ETH/USD");
    }

    #[test]
    fn positions_parse_crypto_and_shorts() {
        let v: Vec<RawPosition> = serde_json::from_str(&sample("positions.json")).unwrap();
        let p: Vec<Position> = v.into_iter().map(Position::from).collect();
        assert_eq!(p[0].symbol, "AAPL");
        assert_eq!(p[0].qty, Dec::from_int(5));
        let short: Position = serde_json::from_str::<RawPosition>(&sample("position-short.json")).unwrap().into();
        assert!(short.qty.is_negative());
        let crypto: Position = serde_json::from_value::<RawPosition>(json!({
            "symbol": "BTCUSD", "asset_class": "crypto", "qty": "0.0123", "avg_entry_price": "40000", "side": "long"
        }))
        .unwrap()
        .into();
        assert_eq!(crypto.symbol, "BTC/USD");
    }

    #[test]
    fn errors_keep_alpacas_code_and_message() {
        let e = final_error("POST /v2/orders", 422, &sample("error-422-duplicate-client-order-id.json"));
        assert_eq!(
            e,
            BrokerError::Rejected {
                endpoint: "POST /v2/orders".into(),
                status: 422,
                code: Some(40010001),
                message: "client_order_id must be unique".into()
            }
        );
        assert!(matches!(
            final_error("GET /v2/account", 401, &sample("error-401-unauthorized.json")),
            BrokerError::Unauthorized { .. }
        ));
        let (code, msg) = error_message("<html>bad gateway</html>");
        assert_eq!((code, msg.as_str()), (None, "<html>bad gateway</html>"));
    }

    #[test]
    fn order_bodies_follow_alpacas_shape() {
        let simple = OrderRequest {
            client_order_id: "th-mom_AAPL-20261125-1".into(),
            symbol: "AAPL".into(),
            side: Side::Buy,
            amount: Amount::Qty(Dec::from_int(3)),
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Day,
            limit_price: Some("187.25".parse().unwrap()),
            stop_price: None,
            extended_hours: false,
            legs: vec![],
        };
        assert_eq!(
            order_body(&simple),
            json!({"symbol": "AAPL", "side": "buy", "qty": "3", "type": "limit", "time_in_force": "day",
                   "limit_price": "187.25", "client_order_id": "th-mom_AAPL-20261125-1"})
        );
        let spread = OrderRequest {
            client_order_id: "th-opt_core-20261125-2".into(),
            symbol: String::new(),
            side: Side::Sell,
            amount: Amount::Qty(Dec::ONE),
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Day,
            limit_price: Some("-0.55".parse().unwrap()),
            stop_price: None,
            extended_hours: false,
            legs: vec![
                Leg { symbol: "SPY261218P00480000".into(), ratio_qty: 1, position_intent: PositionIntent::SellToOpen },
                Leg { symbol: "SPY261218P00475000".into(), ratio_qty: 1, position_intent: PositionIntent::BuyToOpen },
            ],
        };
        let b = order_body(&spread);
        assert_eq!(b["order_class"], "mleg");
        assert_eq!(b["limit_price"], "-0.55");
        assert_eq!(b["legs"][0]["position_intent"], "sell_to_open");
        assert_eq!(b["legs"][1]["side"], "buy");
        assert!(b.get("symbol").is_none());
        // A limit order without its price is refused before sending.
        let no_price = OrderRequest { limit_price: None, ..simple.clone() };
        assert!(matches!(check_request(&no_price), Err(BrokerError::Invalid { .. })));
        let zero = OrderRequest { amount: Amount::Qty(Dec::ZERO), ..simple };
        assert!(check_request(&zero).is_err());
    }

    #[test]
    fn rate_limiter_holds_the_budget() {
        let mut r = RateLimiter::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.wait_needed(t0), Duration::ZERO);
            r.record(t0);
        }
        assert_eq!(r.wait_needed(t0), Duration::from_secs(60));
        assert_eq!(r.wait_needed(t0 + Duration::from_secs(59)), Duration::from_secs(1));
        assert_eq!(r.wait_needed(t0 + Duration::from_secs(60)), Duration::ZERO);
    }

    #[test]
    fn base_urls_paper_live_and_overrides() {
        assert_eq!(ClientSettings::base_urls(false, None, None), (PAPER_TRADING_URL.into(), DATA_URL.into()));
        assert_eq!(ClientSettings::base_urls(true, None, None).0, LIVE_TRADING_URL);
        let (t, d) =
            ClientSettings::base_urls(false, Some("http://127.0.0.1:9/".into()), Some("http://127.0.0.1:8".into()));
        assert_eq!((t.as_str(), d.as_str()), ("http://127.0.0.1:9", "http://127.0.0.1:8"));
    }

    #[test]
    fn credentials_never_print() {
        let c = Credentials::new("PKSECRETKEY".into(), "VERYSECRET".into());
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("BTC/USD"), "BTC%2FUSD");
        assert_eq!(path_segment("7b08df51-c1ac"), "7b08df51-c1ac");
    }
}
