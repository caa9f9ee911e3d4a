//! systemd's notify protocol: `READY=1` when the daemon is up, `WATCHDOG=1` after each healthy
//! iteration, `STOPPING=1` on the way out — one datagram each to `$NOTIFY_SOCKET`.
//!
//! Owns: those few lines on a `UnixDatagram`, so `Type=notify` and `WatchdogSec=` work without a
//! crate: a wedged loop stops sending `WATCHDOG=1` and systemd restarts it. Never: fails the
//! daemon — without `NOTIFY_SOCKET` (not under systemd) every call does nothing, and a send that
//! fails is ignored (systemd's watchdog is the judge of a silent daemon).

use std::os::unix::net::UnixDatagram;

pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty());
        let socket = target.and_then(|t| UnixDatagram::unbound().ok().map(|s| (s, t)));
        Notifier { socket }
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
