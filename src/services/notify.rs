//! Notifications to a webhook: halts, resumes, refused orders, repeated API errors, start-up,
//! shutdown and the daily report.
//!
//! Owns: the message formats (`json`, `slack`, `discord`, `ntfy`) and a small worker thread that
//! posts them, so the loop only ever hands a message over a bounded channel and never waits on
//! the network. The URL is a secret (ntfy topics and Slack hooks are capabilities): it comes from
//! `TRADING_HYDRA_WEBHOOK_URL` only and never reaches a log.
//!
//! Never: blocks the loop (a full queue drops the message and counts it), or stops trading
//! because a webhook failed (the failure is logged as `notify_error`, the loop goes on).

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

struct Sender {
    queue: SyncSender<Note>,
    worker: JoinHandle<()>,
}

static SENDER: OnceLock<Mutex<Option<Sender>>> = OnceLock::new();

/// Posts what a halt's `set` or `clear` changed, if anything.
pub fn announce(change: Option<crate::core::halt_store::Change>) {
    if let Some(c) = change {
        send(Note { event: c.event, title: c.title, text: c.text });
    }
}

/// Starts the worker when `TRADING_HYDRA_WEBHOOK_URL` is set; otherwise notifications are off.
pub fn start(format: Format) {
    let Some(url) = std::env::var(URL_VARIABLE).ok().filter(|u| !u.trim().is_empty()) else { return };
    let (queue, inbox) = sync_channel::<Note>(QUEUE);
    let worker = std::thread::Builder::new().name("notify".into()).spawn(move || post_all(&url, format, &inbox));
    if let Ok(worker) = worker {
        let _ = SENDER.set(Mutex::new(Some(Sender { queue, worker })));
    }
}

/// Hands a message to the worker; returns at once whatever the webhook does.
pub fn send(note: Note) {
    let Some(m) = SENDER.get() else { return };
    let guard = m.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.as_ref()
        && let Err(TrySendError::Full(n)) = s.queue.try_send(note)
    {
        let failures = FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
        event!(Warn, "notify_error", event_name = n.event, detail = "queue full: message dropped", failures = failures);
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

fn post_all(url: &str, format: Format, inbox: &Receiver<Note>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .user_agent(concat!("trading-hydra/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    for note in inbox {
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

#[cfg(test)]
mod tests {
    use super::*;

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
