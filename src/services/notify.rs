//! Notifications to a webhook: halts, resumes, refused orders, repeated API errors, start-up,
//! shutdown and the daily report; and the heartbeat of a dead-man's switch
//! (`notify.heartbeat_url`).
//!
//! Owns: the message formats (`json`, `slack`, `discord`, `ntfy`) and a small worker thread that
//! posts them and the heartbeat's pings, so the loop only ever hands a message over a bounded
//! channel and never waits on the network; and the heartbeat's pace (`beat_due`). The webhook's
//! URL is a secret (ntfy topics and Slack hooks are capabilities): it comes from
//! `TRADING_HYDRA_WEBHOOK_URL` only; neither it nor the heartbeat's ever reaches a log.
//!
//! Never: blocks the loop (a full queue drops the message and counts it; a ping is dropped, the
//! next one is a minute away), or stops trading because a webhook or the heartbeat's service
//! failed (logged as `notify_error`, `heartbeat_error`; the loop goes on).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use crate::core::config::NotifyFormat as Format;
use crate::event;

/// The environment variable holding the webhook's URL.
pub const URL_VARIABLE: &str = "TRADING_HYDRA_WEBHOOK_URL";
const QUEUE: usize = 64;
const ATTEMPTS: u32 = 3;

/// Messages that never reached the webhook (dropped or failed after every attempt), since start.
static FAILURES: AtomicU32 = AtomicU32::new(0);

/// How many messages never reached the webhook so far; the `shutdown` event reports it.
pub fn failures() -> u32 {
    FAILURES.load(Ordering::Relaxed)
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub event: &'static str,
    pub title: String,
    pub text: String,
}

/// The request body (and content type) of a message in a format.
pub fn body(format: Format, note: &Note) -> (String, &'static str) {
    match format {
        Format::Json => {
            (json!({"event": note.event, "title": note.title, "text": note.text}).to_string(), "application/json")
        }
        Format::Slack => (json!({"text": format!("*{}*\n{}", note.title, note.text)}).to_string(), "application/json"),
        Format::Discord => {
            (json!({"content": format!("**{}**\n{}", note.title, note.text)}).to_string(), "application/json")
        }
        Format::Ntfy => (note.text.clone(), "text/plain"),
    }
}

/// What the worker posts.
enum Message {
    Note(Note),
    /// A heartbeat: healthy or not, and why, as the body.
    Ping {
        healthy: bool,
        body: String,
    },
}

struct Sender {
    queue: SyncSender<Message>,
    worker: JoinHandle<()>,
    /// Whether notes go anywhere (the worker may run for the heartbeat alone).
    webhook: bool,
}

/// How often the heartbeat pings at most, in the clock the daemon trades by.
pub const BEAT_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Whether a ping is due at `now`, the last at `last`.
pub fn beat_due(last: Option<jiff::Timestamp>, now: jiff::Timestamp) -> bool {
    last.is_none_or(|l| now.duration_since(l) >= BEAT_EVERY)
}

static SENDER: OnceLock<Mutex<Option<Sender>>> = OnceLock::new();

/// Posts what a halt's `set` or `clear` changed, if anything.
pub fn announce(change: Option<crate::core::halt_store::Change>) {
    if let Some(c) = change {
        send(Note { event: c.event, title: c.title, text: c.text });
    }
}

/// Starts the worker when `TRADING_HYDRA_WEBHOOK_URL` is set or a heartbeat is given (its
/// healthy and failing URLs); otherwise notifications are off.
pub fn start(format: Format) {
    start_with(format, None);
}

/// `start`, with the heartbeat of `notify.heartbeat_url` (the daemon's: one-shot commands send no
/// heartbeat).
pub fn start_with(format: Format, heartbeat: Option<(String, String)>) {
    let url = std::env::var(URL_VARIABLE).ok().filter(|u| !u.trim().is_empty());
    if url.is_none() && heartbeat.is_none() {
        return;
    }
    let webhook = url.is_some();
    let (queue, inbox) = sync_channel::<Message>(QUEUE);
    let worker = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || post_all(url.as_deref(), heartbeat, format, &inbox));
    if let Ok(worker) = worker {
        let _ = SENDER.set(Mutex::new(Some(Sender { queue, worker, webhook })));
    }
}

/// Hands a message to the worker; returns at once whatever the webhook does.
pub fn send(note: Note) {
    let Some(m) = SENDER.get() else { return };
    let guard = m.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.as_ref().filter(|s| s.webhook)
        && let Err(TrySendError::Full(Message::Note(n))) = s.queue.try_send(Message::Note(note))
    {
        let failures = FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
        event!(Warn, "notify_error", event_name = n.event, detail = "queue full: message dropped", failures = failures);
    }
}

/// Hands the heartbeat's ping to the worker (healthy, or failing with `reason`); returns at once.
/// Dropped when the queue is full: the next is a minute away.
pub fn beat(healthy: bool, reason: &str) {
    let Some(m) = SENDER.get() else { return };
    let guard = m.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.as_ref() {
        let _ = s.queue.try_send(Message::Ping { healthy, body: reason.to_string() });
    }
}

/// Lets the worker send what is queued, waiting at most `limit`; then stops it.
pub fn stop(limit: Duration) {
    let Some(m) = SENDER.get() else { return };
    let Some(s) = m.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    drop(s.queue);
    let deadline = std::time::Instant::now() + limit;
    while !s.worker.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if s.worker.is_finished() {
        let _ = s.worker.join();
    }
}

fn post_all(url: Option<&str>, heartbeat: Option<(String, String)>, format: Format, inbox: &Receiver<Message>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .user_agent(concat!("trading-hydra/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    // Whether the heartbeat's service failed last time: said once per failing stretch.
    let mut failing = false;
    for message in inbox {
        let note = match message {
            Message::Note(note) => note,
            Message::Ping { healthy, body } => {
                if let Some((ok, fail)) = &heartbeat {
                    ping(&agent, if healthy { ok } else { fail }, &body, &mut failing);
                }
                continue;
            }
        };
        let Some(url) = url else { continue };
        let (payload, content_type) = body(format, &note);
        let mut last = String::new();
        let mut sent = false;
        for attempt in 0..ATTEMPTS {
            let mut req = agent.post(url).header("Content-Type", content_type);
            if format == Format::Ntfy {
                req = req.header("Title", note.title.as_str());
            }
            match req.send(payload.as_bytes()) {
                Ok(resp) if resp.status().is_success() => {
                    sent = true;
                    break;
                }
                Ok(resp) => last = format!("HTTP {}", resp.status().as_u16()),
                // The URL is a secret (a token may live in its path): never let it into the log.
                Err(e) => last = e.to_string().replace(url, "<webhook>"),
            }
            std::thread::sleep(Duration::from_millis(200 * (1 << attempt)));
        }
        if !sent {
            let failures = FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
            event!(Warn, "notify_error", event_name = note.event, detail = last.as_str(), failures = failures);
        }
    }
}

/// One ping, one attempt (the next is a minute away). A failure is logged once until a ping gets
/// through again, never with the URL.
fn ping(agent: &ureq::Agent, url: &str, body: &str, failing: &mut bool) {
    let outcome = match agent.post(url).header("Content-Type", "text/plain").send(body.as_bytes()) {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
        Err(e) => Err(e.to_string().replace(url, "<heartbeat>")),
    };
    match outcome {
        Ok(()) if *failing => {
            *failing = false;
            event!(Info, "heartbeat_restored", detail = "the heartbeat's service answers again");
        }
        Ok(()) => {}
        Err(detail) if !*failing => {
            *failing = true;
            event!(Warn, "heartbeat_error", detail = detail.as_str());
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_pings_at_most_once_a_minute_of_the_daemons_clock() {
        let t: jiff::Timestamp = "2026-11-25T15:00:00Z".parse().unwrap();
        assert!(beat_due(None, t));
        assert!(!beat_due(Some(t), t + jiff::SignedDuration::from_secs(59)));
        assert!(beat_due(Some(t), t + jiff::SignedDuration::from_secs(60)));
    }

    #[test]
    fn each_format_has_its_shape() {
        let n = Note { event: "halt", title: "Trading halted".into(), text: "daily_loss: -1.2 %".into() };
        let (b, t) = body(Format::Json, &n);
        assert_eq!(
            (serde_json::from_str::<serde_json::Value>(&b).unwrap()["event"].as_str(), t),
            (Some("halt"), "application/json")
        );
        assert_eq!(body(Format::Slack, &n).0, r#"{"text":"*Trading halted*\ndaily_loss: -1.2 %"}"#);
        assert_eq!(body(Format::Discord, &n).0, r#"{"content":"**Trading halted**\ndaily_loss: -1.2 %"}"#);
        assert_eq!(body(Format::Ntfy, &n), ("daily_loss: -1.2 %".to_string(), "text/plain"));
    }
}
