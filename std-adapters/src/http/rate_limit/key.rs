//! What a request's limits count against: its key, found by an extractor.
//!
//! - [`PeerIp`](super::PeerIp) (its own module): the client's IP address —
//!   the connection's peer, or, when the peer is a trusted proxy, the client
//!   it names in the one forwarding header it writes; IPv6 grouped by prefix
//!   (/64 by default), since one client usually holds a whole /64.
//! - [`HeaderKey`]: a header's value (an API key, a tenant id).
//! - [`ExtensionKey`]: a request extension an earlier middleware set (the
//!   authenticated user).
//! - [`RouteKey`]: the method and route (with feature `axum`, the matched
//!   route template; else the path).
//! - a closure `Fn(&Request<B>) -> Result<Option<RateKey>, KeyRejection>`,
//!   and a pair of extractors (both keys, joined).
//!
//! `Ok(None)` lets a request through unlimited; `Err` answers it at once.

use std::fmt;
use std::hash::BuildHasher;
use std::marker::PhantomData;

use http::{HeaderName, Request, StatusCode};

pub use crate::http::layer::KeyRejection;
use crate::keyed::KeyBytes;

/// The key a request is counted under: bytes, kept short (an IP's text, a
/// header's value). Redis keys carry it; logs and traces carry only
/// [`hash`](RateKey::hash).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RateKey(KeyBytes);

impl RateKey {
    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The key as the in-memory stores hold it.
    #[inline]
    pub(crate) fn as_key_bytes(&self) -> &KeyBytes {
        &self.0
    }

    /// A key made of `k`.
    pub(super) fn from_key_bytes(k: KeyBytes) -> Self {
        RateKey(k)
    }

    /// A hash of the key, the same in every process of one build (foldhash
    /// with a fixed seed: replicas' logs and traces agree, and never carry
    /// the key itself, which may be a secret). A pseudonym, not
    /// anonymisation: the seed is public, so a key from a small set (an
    /// IPv4 address, a short id) can be found by hashing every candidate;
    /// where keys are personal data, so are logs that carry this.
    pub fn hash(&self) -> u64 {
        foldhash::fast::FixedState::with_seed(0x7261_7465_626f_756e).hash_one(self.as_bytes())
    }
}

impl fmt::Debug for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key: it may be an API secret.
        write!(f, "RateKey(#{:016x})", self.hash())
    }
}

impl From<Vec<u8>> for RateKey {
    fn from(v: Vec<u8>) -> Self {
        RateKey(KeyBytes::from(v))
    }
}

impl From<&[u8]> for RateKey {
    fn from(v: &[u8]) -> Self {
        RateKey(KeyBytes::from(v))
    }
}

impl From<String> for RateKey {
    fn from(s: String) -> Self {
        Self::from(s.into_bytes())
    }
}

impl From<&str> for RateKey {
    fn from(s: &str) -> Self {
        Self::from(s.as_bytes())
    }
}

/// A key written by `Display` straight into its own bytes.
pub(super) fn key_from_display(v: impl fmt::Display) -> RateKey {
    struct W(KeyBytes);
    impl fmt::Write for W {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.extend(s.as_bytes());
            Ok(())
        }
    }
    let mut w = W(KeyBytes::default());
    let _ = fmt::Write::write_fmt(&mut w, format_args!("{v}")); // W never fails
    RateKey(w.0)
}

/// Finds a request's key: `Ok(None)` lets the request through unlimited
/// (e.g. health checks), `Err` answers it at once.
pub trait ExtractKey<B>: Send + Sync + 'static {
    /// The key of `req`.
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection>;
}

impl<B, F> ExtractKey<B> for F
where
    F: Fn(&Request<B>) -> Result<Option<RateKey>, KeyRejection> + Send + Sync + 'static,
{
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection> {
        self(req)
    }
}

/// Both keys, joined (e.g. per client IP *and* route) as `len:first|second`
/// (the length keeps `("a|b", "c")` apart from `("a", "b|c")`); unlimited
/// when either is.
impl<B, X: ExtractKey<B>, Y: ExtractKey<B>> ExtractKey<B> for (X, Y) {
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection> {
        let (Some(a), Some(b)) = (self.0.extract(req)?, self.1.extract(req)?) else {
            return Ok(None);
        };
        let mut k = key_from_display(a.as_bytes().len()).0;
        k.push(b':');
        k.extend(a.as_bytes());
        k.push(b'|');
        k.extend(b.as_bytes());
        Ok(Some(RateKey(k)))
    }
}

/// A header's value as the key (an API key, a tenant). Without the header
/// the request is unlimited, unless [`required`](Self::required). A value
/// longer than [`max_len`](Self::max_len) (256 bytes by default) is
/// answered 400 on every backend, so clients cannot make keys of any size.
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
    missing: Option<KeyRejection>,
    max_len: usize,
}

impl HeaderKey {
    /// Key by `name`'s value.
    pub fn new(name: HeaderName) -> Self {
        HeaderKey {
            name,
            missing: None,
            max_len: 256,
        }
    }

    /// Refuse (400) values longer than `bytes`.
    pub fn max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// Answer a request without the header with `status` and `message`
    /// (e.g. 401) instead of letting it through.
    pub fn required(mut self, status: StatusCode, message: impl Into<String>) -> Self {
        self.missing = Some(KeyRejection::new(status, message));
        self
    }
}

impl<B> ExtractKey<B> for HeaderKey {
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection> {
        match req.headers().get(&self.name) {
            Some(v) if v.len() > self.max_len => Err(KeyRejection::new(
                StatusCode::BAD_REQUEST,
                format!("{} is longer than {} bytes", self.name, self.max_len),
            )),
            Some(v) => Ok(Some(RateKey::from(v.as_bytes()))),
            None => match &self.missing {
                Some(r) => Err(r.clone()),
                None => Ok(None),
            },
        }
    }
}

/// A request extension of type `T` (set by an earlier middleware, e.g. the
/// authenticated user) as the key, by its `Display` text. Without it the
/// request is unlimited.
pub struct ExtensionKey<T>(PhantomData<fn() -> T>);

impl<T> ExtensionKey<T> {
    /// Key by the `T` extension.
    pub fn new() -> Self {
        ExtensionKey(PhantomData)
    }
}

impl<T> Default for ExtensionKey<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for ExtensionKey<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for ExtensionKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExtensionKey<{}>", std::any::type_name::<T>())
    }
}

impl<B, T: fmt::Display + Send + Sync + 'static> ExtractKey<B> for ExtensionKey<T> {
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection> {
        Ok(req.extensions().get::<T>().map(key_from_display))
    }
}

/// The method and route as the key (`GET /users/{id}`): one limit per
/// endpoint, shared by every client.
///
/// With feature `axum` the route is the matched template (`MatchedPath`,
/// set when the layer is added with `Router::layer` or `route_layer`); a
/// request no route matched (a 404) is unlimited, so made-up paths cannot
/// create keys. Without feature `axum` the key is the request's path: every
/// distinct path is a key of its own, so put this layer only in front of a
/// fixed set of paths (or use a closure that maps paths to routes).
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteKey;

impl<B> ExtractKey<B> for RouteKey {
    #[cfg(feature = "axum")]
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection> {
        Ok(req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|m| key_from_display(format_args!("{} {}", req.method(), m.as_str()))))
    }

    #[cfg(not(feature = "axum"))]
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection> {
        Ok(Some(key_from_display(format_args!(
            "{} {}",
            req.method(),
            req.uri().path()
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned: every process of this build (every replica) logs the same
    /// hash for a key; a foldhash release that changed it would fail here.
    /// foldhash's output depends on the word size and byte order, so the
    /// number is pinned for 64-bit little-endian builds only.
    #[cfg(all(target_pointer_width = "64", target_endian = "little"))]
    #[test]
    fn a_keys_hash_is_the_same_in_every_process() {
        assert_eq!(RateKey::from("sk-secret").hash(), 4_097_806_545_496_752_422);
    }

    #[test]
    fn a_key_never_shows_itself_in_debug() {
        let k = RateKey::from("sk-secret");
        assert!(!format!("{k:?}").contains("secret"));
        assert_eq!(k.hash(), RateKey::from("sk-secret").hash());
    }
}
