//! The Alpaca client's host-name lookups, kept for a minute.
//!
//! Owns: resolving each `scheme://host:port` at most once per `KEPT` (ureq's own resolver does
//! the lookup, within the request's timeout). ureq looks the host up before every request, even
//! one that then reuses a pooled connection, and with a timeout set it does so on a thread of its
//! own: against a loopback Alpaca at a one-second interval that was one new thread and one
//! `getaddrinfo` (reading `/etc/hosts`, `resolv.conf`, `nsswitch.conf`) per request, most of the
//! daemon's CPU.
//!
//! Never: keeps a failed lookup (the next request asks again), or an answer longer than `KEPT`
//! (a host that moves is followed within a minute).
//!
//! ureq's resolver interface is in its `unversioned` module: it may change in a minor release of
//! ureq, which `Cargo.lock` pins; an upgrade that breaks it fails to compile here, not at run time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long an answer is kept.
pub const KEPT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct CachedResolver {
    inner: DefaultResolver,
    kept: Mutex<BTreeMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachedResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!("{}://{}", uri.scheme_str().unwrap_or(""), uri.authority().map_or("", |a| a.as_str()));
        let now = Instant::now();
        // A poisoned lock only means a panic elsewhere while it was held: the map is still whole.
        if let Some((at, addrs)) = self.kept.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && now.duration_since(*at) < KEPT
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (now, addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &CachedResolver, uri: &str) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let uri: Uri = uri.parse().unwrap();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(2)),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &Config::default(), timeout)
    }

    #[test]
    fn an_answer_is_kept_per_host_and_port_for_a_minute() {
        let r = CachedResolver::default();
        let a = resolve(&r, "http://127.0.0.1:8080/v2/account").unwrap();
        assert_eq!(a.iter().next().unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(r.kept.lock().unwrap().len(), 1);
        // Another path of the same host: the kept answer.
        resolve(&r, "http://127.0.0.1:8080/v2/clock").unwrap();
        assert_eq!(r.kept.lock().unwrap().len(), 1);
        // Another port: its own.
        let b = resolve(&r, "http://127.0.0.1:9090/").unwrap();
        assert_eq!(b.iter().next().unwrap().to_string(), "127.0.0.1:9090");
        assert_eq!(r.kept.lock().unwrap().len(), 2);
        // An old answer is asked again.
        let key = "http://127.0.0.1:8080".to_string();
        let old = Instant::now().checked_sub(KEPT + Duration::from_secs(1)).unwrap();
        r.kept.lock().unwrap().get_mut(&key).unwrap().0 = old;
        resolve(&r, "http://127.0.0.1:8080/").unwrap();
        assert!(r.kept.lock().unwrap()[&key].0 > old);
    }
}
