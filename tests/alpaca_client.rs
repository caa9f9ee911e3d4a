//! The Alpaca client against a loopback fake of Alpaca: every `Broker` method round-trips
//! Alpaca-shaped JSON; retries, refusals, lost answers and the rate limit behave as promised; and
//! every request it sends is one that Alpaca's OpenAPI documents declare.

mod support;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use support::fake_alpaca::{FakeAlpaca, Fault, KEY, SECRET};
use trading_hydra::core::config::DataFeed;
use trading_hydra::core::decimal::Dec;
use trading_hydra::core::instrument::{AssetClass, OptionKind};
use trading_hydra::core::order::{Amount, Leg, OrderType, PositionIntent, Side, TimeInForce};
use trading_hydra::services::alpaca_client::{AlpacaClient, ClientSettings, Credentials};
use trading_hydra::services::broker::{Broker, BrokerError, OrderRequest};

fn settings(fake: &FakeAlpaca) -> ClientSettings {
    ClientSettings {
        trading_url: fake.url.clone(),
        data_url: fake.url.clone(),
        feed: DataFeed::Iex,
        timeout: Duration::from_millis(500),
        retry_budget: Duration::from_secs(2),
        max_attempts: 3,
        backoff: Duration::from_millis(20),
        requests_per_minute: 200,
    }
}

fn client(fake: &FakeAlpaca) -> AlpacaClient {
    AlpacaClient::new(Credentials::new(KEY.into(), SECRET.into()), settings(fake))
}

fn order(coid: &str) -> OrderRequest {
    OrderRequest {
        client_order_id: coid.into(),
        symbol: "AAPL".into(),
        side: Side::Buy,
        amount: Amount::Qty(Dec::from_int(2)),
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Day,
        limit_price: Some("150.25".parse().unwrap()),
        stop_price: None,
        extended_hours: false,
        legs: vec![],
    }
}

fn d(s: &str) -> Dec {
    s.parse().unwrap()
}

#[test]
fn every_method_round_trips_alpaca_shaped_json() {
    let fake = FakeAlpaca::start();
    exercise_every_method(&fake);
}

#[test]
fn every_request_sent_is_declared_by_alpacas_openapi() {
    let fake = FakeAlpaca::start();
    exercise_every_method(&fake);
    let specs = support::openapi::Specs::load();
    let seen = fake.seen();
    assert!(seen.len() >= 20);
    for r in &seen {
        if let Err(why) = specs.check(&r.method, &r.path, &r.query, &r.body) {
            panic!("{} {} {:?}: {why}", r.method, r.path, r.query);
        }
    }
}

/// Calls every `Broker` method against the fake and checks what comes back.
fn exercise_every_method(fake: &FakeAlpaca) {
    let mut c = client(fake);

    let a = c.account().unwrap();
    assert_eq!((a.equity, a.last_equity), (d("103820.56"), Some(d("103529.24"))));

    let clock = c.clock().unwrap();
    assert!(!clock.is_open);
    assert_eq!(clock.next_open, "2022-05-17T13:30:00Z".parse::<Timestamp>().unwrap());

    let positions = c.positions().unwrap();
    assert_eq!(positions.len(), 2);
    let btc = positions.iter().find(|p| p.asset_class == AssetClass::Crypto).unwrap();
    assert_eq!((btc.symbol.as_str(), btc.qty), ("BTC/USD", d("0.0123")));

    let placed = c.submit_order(&order("th-test-1")).unwrap();
    assert_eq!(placed.client_order_id, "th-test-1");
    assert_eq!(placed.qty, Some(d("2")));
    assert_eq!(c.open_orders().unwrap().len(), 1);
    assert_eq!(c.order(&placed.id).unwrap().unwrap().id, placed.id);
    assert_eq!(c.order("no-such-order").unwrap(), None);
    assert_eq!(c.order_by_client_id("th-test-1").unwrap().unwrap().id, placed.id);
    assert_eq!(c.order_by_client_id("th-nope").unwrap(), None);
    c.cancel_order(&placed.id).unwrap();
    assert!(c.open_orders().unwrap().is_empty());
    // Done orders too, newest first, after a time (exclusive).
    let recent = c.recent_orders(Some("2020-01-01T00:00:00Z".parse().unwrap())).unwrap();
    assert_eq!((recent.len(), recent[0].status.as_str()), (1, "canceled"));
    assert!(c.recent_orders(Some(Timestamp::now() + jiff::SignedDuration::from_hours(1))).unwrap().is_empty());

    // Deposits and withdrawals: signed by their kind, a cancelled one left out, page by page.
    fake.transfer("20261125::a", "CSD", "2500", "2026-11-25T15:00:00Z");
    fake.transfer("20261125::b", "CSW", "1000.5", "2026-11-25T16:00:00Z");
    fake.transfer("20261124::c", "CSW", "-7", "2026-11-24T16:00:00Z");
    fake.lock().activities.push(serde_json::json!({
        "id": "20261125::d", "activity_type": "JNLC", "date": "2026-11-25", "net_amount": "-300",
        "status": "canceled", "created_at": "2026-11-25T17:00:00Z"
    }));
    let t = c.transfers("2026-11-25T05:00:00Z".parse().unwrap()).unwrap();
    let got: Vec<(&str, String)> = t.iter().map(|t| (t.id.as_str(), t.amount.to_string())).collect();
    assert_eq!(got, [("20261125::a", "2500".to_string()), ("20261125::b", "-1000.5".to_string())]);

    let spread = OrderRequest {
        symbol: String::new(),
        amount: Amount::Qty(Dec::ONE),
        limit_price: Some(d("-0.55")),
        legs: vec![
            Leg { symbol: "SPY261218P00480000".into(), ratio_qty: 1, position_intent: PositionIntent::SellToOpen },
            Leg { symbol: "SPY261218P00475000".into(), ratio_qty: 1, position_intent: PositionIntent::BuyToOpen },
        ],
        ..order("th-test-mleg")
    };
    let m = c.submit_order(&spread).unwrap();
    assert_eq!((m.order_class.as_str(), m.side), ("mleg", None));

    let syms = vec!["AAPL".to_string(), "TSLA".to_string()];
    let bars = c.stock_bars(&syms, "1Day", "2022-03-09T00:00:00Z".parse().unwrap()).unwrap();
    assert_eq!(bars["TSLA"][0].open, 839.0);
    let quotes = c.stock_quotes(&syms).unwrap();
    assert_eq!(quotes["AAPL"].ask, 172.7);
    let pairs = vec!["BTC/USD".to_string()];
    assert!(!c.crypto_bars(&pairs, "1Min", "2022-03-09T00:00:00Z".parse().unwrap()).unwrap()["BTC/USD"].is_empty());
    assert_eq!(c.crypto_quotes(&pairs).unwrap()["BTC/USD"].bid, 40517.08);

    let from = jiff::civil::date(2023, 11, 1);
    let to = jiff::civil::date(2023, 12, 1);
    let contracts = c.option_contracts(&["AAPL".to_string()], from, to).unwrap();
    assert_eq!(contracts.len(), 2, "both pages followed");
    assert_eq!((contracts[1].kind, contracts[1].strike), (OptionKind::Put, d("165")));
    assert_eq!(contracts[0].multiplier, d("100"));
    let snaps = c.option_snapshots("AAPL", from, to, None, None).unwrap();
    let s = &snaps["AAPL240503P00155000"];
    assert!(s.greeks.unwrap().delta < 0.0 && s.implied_volatility.unwrap() > 0.0);
    // One kind alone is Alpaca's `type` filter; both kinds send none. Held legs' strikes are its
    // `strike_price_gte` and `strike_price_lte`; every strike sends neither.
    c.option_snapshots("AAPL", from, to, Some(OptionKind::Put), None).unwrap();
    c.option_snapshots("AAPL", from, to, Some(OptionKind::Put), Some((d("152.5"), d("160")))).unwrap();
    let asked: Vec<[Option<String>; 3]> = fake
        .seen()
        .iter()
        .filter(|s| s.path == "/v1beta1/options/snapshots/AAPL")
        .map(|s| ["type", "strike_price_gte", "strike_price_lte"].map(|k| s.q(k).map(str::to_string)))
        .collect();
    let put = || Some("put".to_string());
    assert_eq!(
        asked,
        [[None, None, None], [put(), None, None], [put(), Some("152.5".to_string()), Some("160".to_string())]]
    );
    // Requests Alpaca documents, with parameters it declares.
    let specs = support::openapi::Specs::load();
    for r in fake.seen().iter().filter(|s| s.path.starts_with("/v1beta1/options/snapshots/")) {
        if let Err(why) = specs.check(&r.method, &r.path, &r.query, &r.body) {
            panic!("{} {} {:?}: {why}", r.method, r.path, r.query);
        }
    }

    let stats = c.take_call_stats();
    assert!(stats.requests >= 18);
    assert!(stats.failures.is_empty(), "Alpaca's own 404s (the lookups answering 'none') are answers");

    // Every method of the trait called, and none can touch what is not ours: no position closed
    // by symbol (`DELETE /v2/positions/{symbol}` sells the user's own shares too), none closed
    // all at once, and no order cancelled but one of ours by its id. (The trait offered
    // `close_position(symbol, None)`, which nothing called.)
    for s in fake.seen().iter().filter(|s| s.method == "DELETE") {
        assert!(s.path.starts_with("/v2/orders/") && s.path.len() > "/v2/orders/".len(), "{} {}", s.method, s.path);
    }
}

#[test]
fn auth_headers_are_sent_and_wrong_keys_are_unauthorized() {
    let fake = FakeAlpaca::start();
    client(&fake).account().unwrap();
    let seen = &fake.seen()[0];
    assert_eq!(seen.headers.get("apca-api-key-id").map(String::as_str), Some(KEY));
    assert_eq!(seen.headers.get("apca-api-secret-key").map(String::as_str), Some(SECRET));

    let mut wrong = AlpacaClient::new(Credentials::new("PKWRONG".into(), "nope".into()), settings(&fake));
    let err = wrong.account().unwrap_err();
    assert!(matches!(err, BrokerError::Unauthorized { status: 401, .. }), "{err:?}");
    assert_eq!(fake.count("GET", "/v2/account"), 2, "a 401 is never retried");
    assert!(!err.to_string().contains("nope") && !err.to_string().contains(SECRET));
}

#[test]
fn transient_failures_are_retried_then_succeed() {
    let fake = FakeAlpaca::start();
    let body = r#"{"message":"internal error"}"#.to_string();
    fake.fault("GET", "/v2/account", vec![Fault::Status { status: 503, body, reset: None }, Fault::Drop]);
    let mut c = client(&fake);
    assert_eq!(c.account().unwrap().equity, d("103820.56"));
    assert_eq!(fake.count("GET", "/v2/account"), 3);
    assert!(c.take_call_stats().failures.is_empty(), "a call that succeeded on retry is no failure");
}

#[test]
fn transient_failures_give_up_after_the_attempts_and_are_reported() {
    let fake = FakeAlpaca::start();
    let slow = Fault::Delay(Duration::from_millis(800)); // past the 500 ms timeout
    fake.fault("GET", "/v2/clock", vec![slow.clone(), slow.clone(), slow.clone(), slow]);
    let mut c = client(&fake);
    let start = Instant::now();
    let err = c.clock().unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(start.elapsed() < Duration::from_millis(2500), "stayed inside the retry budget: {:?}", start.elapsed());
    assert!(fake.count("GET", "/v2/clock") <= 3);
    assert_eq!(c.take_call_stats().failures.len(), 1);
}

#[test]
fn rate_limited_answers_honour_the_reset_header_within_the_budget() {
    let fake = FakeAlpaca::start();
    let reset = Timestamp::now().as_second() + 1;
    let body = r#"{"message":"too many requests"}"#.to_string();
    fake.fault("GET", "/v2/positions", vec![Fault::Status { status: 429, body, reset: Some(reset) }]);
    let mut c = client(&fake);
    let start = Instant::now();
    assert_eq!(c.positions().unwrap().len(), 2);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(200), "did not wait for the reset: {waited:?}");
    assert_eq!(fake.count("GET", "/v2/positions"), 2);
}

#[test]
fn final_refusals_are_not_retried_and_keep_alpacas_words() {
    let fake = FakeAlpaca::start();
    let body = std::fs::read_to_string("tests/fixtures/alpaca/error-403-insufficient-buying-power.json").unwrap();
    fake.fault("POST", "/v2/orders", vec![Fault::Status { status: 403, body, reset: None }]);
    let mut c = client(&fake);
    let err = c.submit_order(&order("th-test-bp")).unwrap_err();
    match &err {
        BrokerError::Rejected { status: 403, message, .. } => {
            assert!(message.contains("insufficient buying power"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("POST", "/v2/orders"), 1);
    assert_eq!(fake.count("GET", "/v2/orders:by_client_order_id"), 0);
    assert!(c.take_call_stats().failures.is_empty(), "a refusal in Alpaca's words is an answer, not an outage");
}

#[test]
fn a_submit_whose_answer_is_lost_is_resolved_without_a_second_order() {
    let fake = FakeAlpaca::start();
    // The fake creates the order, then drops the connection: the client cannot know it worked.
    fake.fault("POST", "/v2/orders", vec![Fault::ProcessThenDrop]);
    let mut c = client(&fake);
    let o = c.submit_order(&order("th-test-lost")).unwrap();
    assert_eq!(o.client_order_id, "th-test-lost");
    assert_eq!(fake.count("POST", "/v2/orders"), 1, "never re-sent");
    assert_eq!(fake.lock().orders.len(), 1);
}

#[test]
fn a_submit_that_never_arrived_is_sent_again_once() {
    let fake = FakeAlpaca::start();
    fake.fault("POST", "/v2/orders", vec![Fault::Drop]);
    let mut c = client(&fake);
    let o = c.submit_order(&order("th-test-drop")).unwrap();
    assert_eq!(o.client_order_id, "th-test-drop");
    assert_eq!(fake.count("POST", "/v2/orders"), 2);
    assert_eq!(fake.count("GET", "/v2/orders:by_client_order_id"), 1, "asked before re-sending");
    assert_eq!(fake.lock().orders.len(), 1);
}

#[test]
fn a_duplicate_client_order_id_returns_the_existing_order() {
    let fake = FakeAlpaca::start();
    let mut c = client(&fake);
    let first = c.submit_order(&order("th-test-dup")).unwrap();
    // A restart that re-sends the same purpose gets the same order back, not a second one.
    let again = c.submit_order(&order("th-test-dup")).unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(fake.lock().orders.len(), 1);
}

/// A ledger that was moved, restored or shared reissues an id the account already used. The
/// broker's order under it is another one (here: a filled ETH/USD buy of 1 where we send $50 of
/// BTC): it is a conflict, never the answer, and nothing is sent again.
#[test]
fn a_taken_id_whose_order_is_not_ours_is_a_conflict_never_the_answer() {
    let fake = FakeAlpaca::start();
    fake.lock().squatter = Some(support::fake_alpaca::stranger_eth_buy());
    let mut c = client(&fake);
    let btc = OrderRequest {
        symbol: "BTC/USD".into(),
        amount: Amount::Notional(d("50")),
        order_type: OrderType::Market,
        time_in_force: TimeInForce::Gtc,
        limit_price: None,
        ..order("th-crypto_core-20261201-aaaaaaaa-1")
    };
    match c.submit_order(&btc) {
        Err(BrokerError::Conflict { client_order_id, broker_order_id, detail }) => {
            assert_eq!(client_order_id, "th-crypto_core-20261201-aaaaaaaa-1");
            assert!(broker_order_id.starts_with("stranger-"), "{broker_order_id}");
            assert!(detail.contains("symbol ETH/USD (ours BTC/USD)"), "{detail}");
            assert!(detail.contains("notional none (ours 50)"), "{detail}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(fake.count("POST", "/v2/orders"), 1, "never re-sent");
    assert_eq!(fake.lock().orders.len(), 1, "only the stranger");
}

/// The lost-answer path checks what it finds too: our own order (same everything) is the answer.
#[test]
fn a_lost_answer_is_resolved_only_to_the_order_we_sent() {
    let fake = FakeAlpaca::start();
    fake.fault("POST", "/v2/orders", vec![Fault::ProcessThenDrop]);
    let mut c = client(&fake);
    assert_eq!(c.submit_order(&order("th-test-ours")).unwrap().client_order_id, "th-test-ours");
    // Someone else's order under the next id, and the answer to ours lost again.
    fake.lock().orders.push(serde_json::json!({
        "id": "theirs", "client_order_id": "th-test-theirs", "symbol": "AAPL", "side": "sell", "qty": "2",
        "type": "limit", "limit_price": "150.25", "status": "accepted", "time_in_force": "day", "filled_qty": "0"
    }));
    fake.fault("POST", "/v2/orders", vec![Fault::Drop]);
    let err = c.submit_order(&order("th-test-theirs")).unwrap_err();
    assert!(matches!(&err, BrokerError::Conflict { detail, .. } if detail == "side sell (ours buy)"), "{err:?}");
}

/// After a lost answer, a lookup that fails (a proxy's HTML 404, a JSON 404 without Alpaca's
/// code, a 5xx) leaves the order unknown: never a reason to send it again.
#[test]
fn a_lost_answer_whose_lookup_fails_stays_unknown_and_is_not_sent_again() {
    for (status, body) in [
        (404, "<html><body><h1>404 Not Found</h1>nginx</body></html>"),
        (404, "{\"message\": \"Not Found\"}"),
        (503, "upstream unavailable"),
    ] {
        let fake = FakeAlpaca::start();
        fake.fault("POST", "/v2/orders", vec![Fault::ProcessThenDrop]);
        let lookup = Fault::Status { status, body: body.into(), reset: None };
        fake.fault("GET", "/v2/orders:by_client_order_id", vec![lookup; 10]);
        let mut c = client(&fake);
        let err = c.submit_order(&order("th-test-unknown")).unwrap_err();
        assert!(err.is_transient(), "{status} {body}: {err:?}");
        assert_eq!(fake.count("POST", "/v2/orders"), 1, "{status} {body}: sent again");
        assert_eq!(fake.lock().orders.len(), 1);
    }
}

#[test]
fn only_alpacas_own_not_found_means_there_is_no_such_order() {
    let fake = FakeAlpaca::start();
    let mut c = client(&fake);
    assert_eq!(c.order_by_client_id("th-nope").unwrap(), None, "Alpaca's JSON 404 with code 40410000");
    let html = Fault::Status { status: 404, body: "<html>404 Not Found</html>".into(), reset: None };
    let bare = Fault::Status { status: 404, body: "{\"message\": \"order not found\"}".into(), reset: None };
    fake.fault("GET", "/v2/orders:by_client_order_id", vec![html, bare]);
    for what in ["an HTML 404", "a 404 without Alpaca's code"] {
        let err = c.order_by_client_id("th-nope").unwrap_err();
        assert!(matches!(err, BrokerError::Rejected { status: 404, .. }), "{what}: {err:?}");
    }
    // The not-found answer is not a failure for the health window; the others are.
    assert_eq!(c.take_call_stats().failures.len(), 2);
}

#[test]
fn malformed_json_is_a_bad_response() {
    let fake = FakeAlpaca::start();
    fake.fault("GET", "/v2/account", vec![Fault::Malformed]);
    let mut c = client(&fake);
    assert!(matches!(c.account(), Err(BrokerError::BadResponse { .. })));
    assert_eq!(c.take_call_stats().failures.len(), 1);
}

#[test]
fn the_rate_limiter_holds_the_budget_under_a_tight_loop() {
    let fake = FakeAlpaca::start();
    let mut s = settings(&fake);
    s.requests_per_minute = 5;
    s.retry_budget = Duration::from_millis(300);
    let mut c = AlpacaClient::new(Credentials::new(KEY.into(), SECRET.into()), s);
    let mut refused = 0;
    for _ in 0..20 {
        if let Err(e) = c.clock() {
            assert!(e.to_string().contains("rate limit"), "{e}");
            refused += 1;
        }
    }
    assert_eq!(fake.count("GET", "/v2/clock"), 5);
    assert_eq!(refused, 15);
}

#[test]
fn the_conformance_check_catches_what_alpaca_does_not_declare() {
    let specs = support::openapi::Specs::load();
    let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    assert!(specs.check("GET", "/v2/orders", &q("status", "open"), "").is_ok());
    assert!(specs.check("GET", "/v2/orders", &q("status", "bogus"), "").is_err());
    assert!(specs.check("GET", "/v2/orders", &q("colour", "red"), "").is_err());
    assert!(specs.check("GET", "/v2/stocks/bars", &q("feed", "iex"), "").is_ok());
    assert!(specs.check("GET", "/v2/stocks/bars", &q("feed", "nasdaq"), "").is_err());
    assert!(specs.check("PATCH", "/v2/account", &[], "").is_err());
    assert!(specs.check("GET", "/v2/nowhere", &[], "").is_err());
    assert!(specs.check("POST", "/v2/orders", &[], r#"{"symbol":"AAPL","side":"buy","type":"market"}"#).is_ok());
    assert!(specs.check("POST", "/v2/orders", &[], r#"{"symbol":"AAPL","side":"short"}"#).is_err());
    assert!(specs.check("POST", "/v2/orders", &[], r#"{"symbol":"AAPL","colour":"red"}"#).is_err());
    let bad_leg = r#"{"order_class":"mleg","legs":[{"symbol":"X","position_intent":"open_sesame"}]}"#;
    assert!(specs.check("POST", "/v2/orders", &[], bad_leg).is_err());
}

#[test]
fn multi_symbol_bars_follow_every_page_and_merge_by_symbol() {
    let fake = FakeAlpaca::start();
    let bar = |t: &str, c: f64| serde_json::json!({"t": t, "o": c, "h": c, "l": c, "c": c, "v": 100, "n": 1, "vw": c});
    fake.lock().stock_bar_pages = vec![
        serde_json::json!({"AAPL": [bar("2026-11-25T14:30:00Z", 190.0), bar("2026-11-25T14:31:00Z", 190.5)]}),
        serde_json::json!({"AAPL": [bar("2026-11-25T14:32:00Z", 191.0)], "TSLA": [bar("2026-11-25T14:30:00Z", 250.0)]}),
        serde_json::json!({"TSLA": [bar("2026-11-25T14:31:00Z", 251.0)]}),
    ];
    let mut c = client(&fake);
    let syms = vec!["AAPL".to_string(), "TSLA".to_string()];
    let bars = c.stock_bars(&syms, "1Min", "2026-11-25T14:30:00Z".parse().unwrap()).unwrap();
    let closes = |s: &str| bars[s].iter().map(|b| b.close).collect::<Vec<_>>();
    assert_eq!(closes("AAPL"), vec![190.0, 190.5, 191.0]);
    assert_eq!(closes("TSLA"), vec![250.0, 251.0]);
    let pages: Vec<_> = fake.seen().into_iter().filter(|r| r.path == "/v2/stocks/bars").collect();
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0].q("feed"), Some("iex"), "the free feed is asked for explicitly");
    assert_eq!(pages[2].q("page_token"), Some("page-2"));
    assert_eq!(pages[2].q("symbols"), Some("AAPL,TSLA"));
}

/// Issue 33, room in the rate budget: Alpaca counts every tool's requests on the key, and says
/// how many are left (`X-RateLimit-Remaining`) until when (`X-RateLimit-Reset`). With a twentieth
/// or less left the client waits for the reset instead of spending the rest: twelve calls against
/// a budget of five a 2-second window all succeed, and not one is refused with a 429.
#[test]
fn the_client_paces_by_alpacas_rate_limit_headers_and_is_never_refused() {
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.rate_limit = Some(5);
        st.rate_window_secs = 2;
    }
    let settings =
        ClientSettings { retry_budget: Duration::from_secs(10), ..support::fake_alpaca::client_settings(&fake.url) };
    let mut c = AlpacaClient::new(Credentials::new(KEY.into(), SECRET.into()), settings);
    let started = std::time::Instant::now();
    for _ in 0..12 {
        c.account().unwrap();
    }
    assert_eq!(fake.lock().rate_refusals, 0, "a 429 was served");
    assert!(started.elapsed() >= Duration::from_secs(2), "twelve calls need three windows: {:?}", started.elapsed());
    // With a short budget the wait is refused in words, not slept through.
    let settings =
        ClientSettings { retry_budget: Duration::from_millis(100), ..support::fake_alpaca::client_settings(&fake.url) };
    let mut c = AlpacaClient::new(Credentials::new(KEY.into(), SECRET.into()), settings);
    let mut said = None;
    // (Twelve tries: a window may end between two calls and give five more.)
    for _ in 0..12 {
        if let Err(e) = c.account() {
            said = Some(e.to_string());
            break;
        }
    }
    let said = said.expect("the budget ran out");
    assert!(said.contains("X-RateLimit-Remaining"), "{said}");
    assert_eq!(fake.lock().rate_refusals, 0);
}
