//! systemd's notify protocol: `READY=1` when the daemon is up, `WATCHDOG=1` after each healthy
//! iteration (and, when the loop's interval is longer than half of `$WATCHDOG_USEC`, every half
//! of it while a healthy loop sleeps), `STOPPING=1` on the way out — one datagram each to
//! `$NOTIFY_SOCKET`.
//!
//! Owns: those few lines on a `UnixDatagram`, so `Type=notify` and `WatchdogSec=` work without a
//! crate: a wedged loop stops sending `WATCHDOG=1` and systemd restarts it. Never: fails the
//! daemon — without `NOTIFY_SOCKET` (not under systemd) every call does nothing, and a send that
//! fails is ignored (systemd's watchdog is the judge of a silent daemon).

use std::os::unix::net::UnixDatagram;

pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    /// Half of systemd's watchdog timeout, when it watches this process.
    watchdog_period: Option<std::time::Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty());
        // Non-blocking: a receiver whose queue is full (a busy or wedged systemd) costs a dropped
        // message, never a loop blocked in `send`.
        let socket = target.and_then(|t| {
            let s = UnixDatagram::unbound().ok()?;
            s.set_nonblocking(true).ok()?;
            Some((s, t))
        });
        // `WATCHDOG_PID`, when set, names the process systemd watches: another one's is not ours.
        let ours = std::env::var("WATCHDOG_PID").ok().is_none_or(|p| p.trim() == std::process::id().to_string());
        let usec = std::env::var("WATCHDOG_USEC").ok().and_then(|u| u.trim().parse::<u64>().ok()).filter(|u| *u > 0);
        let watchdog_period =
            usec.filter(|_| ours && socket.is_some()).map(|u| std::time::Duration::from_micros(u / 2));
        Notifier { socket, watchdog_period }
    }

    /// How often the watchdog must hear from a healthy daemon: half of `WATCHDOG_USEC`, or
    /// `None` when systemd does not watch.
    pub fn watchdog_period(&self) -> Option<std::time::Duration> {
        self.watchdog_period
    }

    fn send(&self, message: &str) {
        let Some((socket, target)) = &self.socket else { return };
        // A lost notification is systemd's to notice (the watchdog); never the loop's to fail on.
        let _ = match target.strip_prefix('@') {
            Some(name) => abstract_send(socket, name, message),
            None => socket.send_to(message.as_bytes(), target).map(drop),
        };
    }

    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=trading-hydra running");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }
}

#[cfg(target_os = "linux")]
fn abstract_send(socket: &UnixDatagram, name: &str, message: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    socket.send_to_addr(message.as_bytes(), &addr).map(drop)
}

#[cfg(not(target_os = "linux"))]
fn abstract_send(_: &UnixDatagram, _: &str, _: &str) -> std::io::Result<()> {
    Ok(())
}
