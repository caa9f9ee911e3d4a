//! A webhook on 127.0.0.1 for the notification tests: it records the bodies it receives and
//! answers as told (200, 500, or not at all).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy)]
pub enum Behaviour {
    Ok,
    Fail,
    Hang,
}

/// What a webhook received, in order: bodies (or paths).
pub type Seen = Arc<Mutex<Vec<String>>>;

/// A webhook on 127.0.0.1 that records the bodies it receives.
pub fn webhook(behaviour: Behaviour) -> (String, Seen) {
    let (url, seen, _) = recorder(behaviour);
    (url, seen)
}

/// The same, recording each request's path too (in `paths`, in the order of `seen`'s bodies).
pub fn recorder(behaviour: Behaviour) -> (String, Seen, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook/secret-token", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let paths = Arc::new(Mutex::new(Vec::new()));
    let (log, path_log) = (seen.clone(), paths.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (log, path_log) = (log.clone(), path_log.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                // Both under one lock's order: the path first, then the body.
                let mut bodies = log.lock().unwrap();
                path_log.lock().unwrap().push(path);
                bodies.push(String::from_utf8_lossy(&body).into_owned());
                let mut stream = stream;
                match behaviour {
                    Behaviour::Ok => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                    Behaviour::Fail => {
                        let _ =
                            stream.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                    Behaviour::Hang => std::thread::sleep(Duration::from_secs(30)),
                }
            });
        }
    });
    (url, seen, paths)
}
