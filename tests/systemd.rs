//! systemd: the notify protocol of the real binary against a test datagram socket, and the unit
//! files against `systemd-analyze verify` where it exists.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_trading-hydra");

#[test]
fn the_daemon_says_ready_feeds_the_watchdog_and_says_stopping() {
    let dir = std::env::temp_dir().join(format!("th-systemd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("config")).unwrap();
    for f in ["settings.yaml", "bots.yaml"] {
        std::fs::copy(Path::new("config").join(f), dir.join("config").join(f)).unwrap();
    }
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let status = Command::new(BIN)
        .args(["run", "--sim", "--speed", "1000", "--iterations", "3"])
        .current_dir(&dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("TRADING_HYDRA_CONFIG")
        .status()
        .unwrap();
    assert!(status.success());
    let mut messages = Vec::new();
    let mut buf = [0u8; 256];
    socket.set_nonblocking(true).unwrap();
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(messages[0].starts_with("READY=1"), "{messages:?}");
    assert_eq!(messages.iter().filter(|m| *m == "WATCHDOG=1").count(), 3, "one per completed iteration: {messages:?}");
    assert_eq!(messages.last().map(String::as_str), Some("STOPPING=1"));
}

#[test]
fn the_unit_files_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not installed here: skipping the unit-file check");
        return;
    }
    let dir = std::env::temp_dir().join(format!("th-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, installed) in
        [("trading-hydra.service", "trading-hydra.service"), ("trading-hydra@.service", "trading-hydra@paper.service")]
    {
        // The unit names /usr/local/bin/trading-hydra; verify checks it exists: point it at this build.
        let text = std::fs::read_to_string(Path::new("deploy").join(file))
            .unwrap()
            .replace("/usr/local/bin/trading-hydra", BIN);
        let path = dir.join(installed);
        std::fs::write(&path, text).unwrap();
        let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
