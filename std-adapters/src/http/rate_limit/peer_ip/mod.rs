//! [`PeerIp`]: the client's address as a key — the connection's peer, or
//! the client a trusted proxy names — grouped by prefix.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, Request, StatusCode};
use ipnet::IpNet;

use super::key::{key_from_display, ExtractKey, KeyRejection, RateKey};
use crate::keyed::KeyBytes;

/// A trusted-proxy entry that is not an address or a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or network (e.g. 10.0.0.0/8): {0:?}")]
pub struct ProxyParseError(pub String);

/// The client's IP address, grouped into a network for IPv6.
///
/// The client is the connection's peer, read from a [`SocketAddr`] request
/// extension (hyper services insert it; see the gateway example) or, with
/// feature `axum`, from axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`). A request with
/// neither is answered 500: the server is not passing peer addresses.
///
/// Forwarding headers are believed only from trusted proxies: when the
/// peer is in [`trust`](Self::trust)'s list, the chain in the one header
/// your proxies write — `X-Forwarded-For` by default, RFC 7239 `Forwarded`
/// (`for=`) with [`forwarded_by`](Self::forwarded_by) — is read from the
/// right, skipping trusted addresses; the first untrusted one is the client.
/// The other header is never read: most proxies append to one and pass the
/// client's copy of the other through untouched, so reading it would let a
/// client pick its own key. An entry that is not an address (`unknown`, an
/// obfuscated node, garbage) ends the walk: the client is the trusted hop
/// that forwarded it. At most 32 hops are read: past that, the 32nd from
/// the right is taken as the client (no real chain of trusted proxies is
/// that long). A client that sends its own `X-Forwarded-For` to a
/// server with no trusted proxies is keyed by its own address.
///
/// ```
/// use ratebound_std::http::rate_limit::PeerIp;
///
/// // Behind a load balancer in 10.0.0.0/8; IPv6 clients grouped by /56.
/// let peer = PeerIp::new().trust(["10.0.0.0/8"])?.ipv6_prefix(56);
/// # let _ = peer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct PeerIp {
    trusted: Vec<IpNet>,
    header: ForwardedBy,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

/// The header trusted proxies name the client in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedBy {
    /// `X-Forwarded-For: client, proxy1, …` (nginx, HAProxy, cloud load
    /// balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl Default for PeerIp {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerIp {
    /// The peer's address; no proxy trusted; IPv4 per address, IPv6 per /64.
    pub fn new() -> Self {
        PeerIp {
            trusted: Vec::new(),
            header: ForwardedBy::XForwardedFor,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }
    }

    /// Trust these proxies (addresses or networks: `"10.0.0.0/8"`,
    /// `"::1"`) to name the client in forwarding headers.
    pub fn trust<S: AsRef<str>>(
        mut self,
        proxies: impl IntoIterator<Item = S>,
    ) -> Result<Self, ProxyParseError> {
        for p in proxies {
            let p = p.as_ref().trim();
            let net = match p.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => p
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| ProxyParseError(p.to_owned()))?,
            };
            self.trusted.push(net.trunc());
        }
        Ok(self)
    }

    /// Read the client from this header (default `X-Forwarded-For`); the
    /// other is ignored.
    pub fn forwarded_by(mut self, header: ForwardedBy) -> Self {
        self.header = header;
        self
    }

    /// Group IPv6 clients by this prefix (0 to 128; default 64; larger is
    /// taken as 128).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// Group IPv4 clients by this prefix (0 to 32; default 32, one address;
    /// larger is taken as 32).
    pub fn ipv4_prefix(mut self, bits: u8) -> Self {
        self.ipv4_prefix = bits.min(32);
        self
    }

    #[inline]
    fn is_trusted(&self, ip: IpAddr) -> bool {
        !self.trusted.is_empty() && self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a connection from `peer` carrying `headers`.
    #[inline]
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let client = peer.to_canonical();
        if !self.is_trusted(client) {
            return client;
        }
        self.forwarded_client(client, headers)
    }

    /// The client that the trusted proxy `proxy` names in `headers`: the
    /// hops walked from the nearest (the last value's last element) out,
    /// each parsed only when reached, to the first one not trusted. A
    /// client's own additions sit beyond that one, so however long a chain
    /// it sends, at most [`MAX_HOPS`] are read.
    #[inline(never)]
    fn forwarded_client(&self, proxy: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let elements = |name| {
            headers
                .get_all(name)
                .iter()
                .rev()
                .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','))
        };
        match self.header {
            ForwardedBy::Forwarded => {
                self.walk(proxy, elements(http::header::FORWARDED).map(forwarded_for))
            }
            ForwardedBy::XForwardedFor => {
                self.walk(proxy, elements(X_FORWARDED_FOR).map(|h| parse_ip(trim(h))))
            }
        }
    }

    fn walk(&self, proxy: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>) -> IpAddr {
        let mut client = proxy;
        for hop in hops.take(MAX_HOPS) {
            let Some(ip) = hop else { break };
            client = ip.to_canonical();
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }

    /// The key for `ip`: its text, or its network's for a prefix shorter
    /// than the address.
    #[inline]
    pub fn key_of(&self, ip: IpAddr) -> RateKey {
        match ip.to_canonical() {
            // The common case, written digit by digit (no formatter).
            IpAddr::V4(v4) => ipv4_key(v4, self.ipv4_prefix),
            IpAddr::V6(v6) => self.ipv6_key(v6),
        }
    }

    /// The key of an IPv6 address: its text, or its network's.
    fn ipv6_key(&self, ip: std::net::Ipv6Addr) -> RateKey {
        let bits = self.ipv6_prefix;
        if bits >= 128 {
            return key_from_display(ip);
        }
        // Valid by construction: bits is clamped to the address's length.
        let net = ipnet::Ipv6Net::new(ip, bits).map_or(ipnet::Ipv6Net::from(ip), |n| n.trunc());
        key_from_display(net)
    }
}

/// `a.b.c.d`, or the network `a.b.c.0/24` for a shorter prefix.
#[inline]
fn ipv4_key(ip: std::net::Ipv4Addr, bits: u8) -> RateKey {
    if bits < 32 {
        return ipv4_network_key(ip, bits);
    }
    // The four numbers, each with its dot (at most "255.255.255.255.", 16
    // bytes), gathered in two registers — the first two numbers, the last
    // two, 8 bytes at most each — and joined into the key's first 16 bytes
    // at once, the last dot left out of its length.
    let [a, b, c, d] = ip.octets().map(|o| DOTTED[o as usize]);
    let word = |t: [u8; 5]| u64::from(u32::from_le_bytes([t[1], t[2], t[3], t[4]]));
    let front = word(a) | word(b) << (8 * a[0]);
    let back = word(c) | word(d) << (8 * c[0]);
    // Where `back` starts: 4 to 8 bytes in, so both shifts stay below 64.
    let at = 8 * u32::from(a[0] + b[0]);
    let low = front | (back << (at - 1)) << 1;
    let high = back >> (64 - at);
    let text = u128::from(low) | u128::from(high) << 64;
    let mut buf = [0u8; 24];
    if let Some(dst) = buf.get_mut(..16) {
        dst.copy_from_slice(&text.to_le_bytes());
    }
    let len = usize::from(a[0] + b[0] + c[0] + d[0]) - 1;
    RateKey::from_key_bytes(KeyBytes::from_buf(buf, len))
}

/// `a.b.c.0/24`: the network of `ip` for a prefix of `bits` < 32.
#[inline(never)]
fn ipv4_network_key(ip: std::net::Ipv4Addr, bits: u8) -> RateKey {
    let masked = std::net::Ipv4Addr::from(u32::from(ip) & !(u32::MAX >> bits));
    // At most "255.255.255.0/24", 18 bytes: written into a buffer the size
    // of the key's inline storage (24 bytes), which the key takes as it is;
    // four bytes at a time — each number with a dot after it, the last dot
    // made the '/'.
    let mut buf = [0u8; 24];
    let mut at = 0;
    for o in masked.octets() {
        at = put_number(&mut buf, at, o);
    }
    put_byte(&mut buf, at - 1, b'/');
    at = put_number(&mut buf, at, bits);
    RateKey::from_key_bytes(KeyBytes::from_buf(buf, at - 1))
}

/// `n` and a dot at `at` (at most 16: four numbers before it); where
/// the next number starts.
#[inline(always)]
fn put_number(buf: &mut [u8; 24], at: usize, n: u8) -> usize {
    let [len, word @ ..] = DOTTED[n as usize];
    if let Some(dst) = buf.get_mut(at..at + 4) {
        dst.copy_from_slice(&word);
    }
    at + len as usize
}

fn put_byte(buf: &mut [u8; 24], at: usize, b: u8) {
    if let Some(slot) = buf.get_mut(at) {
        *slot = b;
    }
}

/// 0 to 255 in decimal followed by a dot, built at compile time: the
/// length (dot included), then the bytes (four written, the rest
/// overwritten by what follows).
const DOTTED: [[u8; 5]; 256] = {
    let mut t = [[0u8; 5]; 256];
    let mut i = 0;
    while i < 256 {
        let n = i as u8;
        t[i] = if n >= 100 {
            [4, b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10, b'.']
        } else if n >= 10 {
            [3, b'0' + n / 10, b'0' + n % 10, b'.', 0]
        } else {
            [2, b'0' + n, b'.', 0, 0]
        };
        i += 1;
    }
    t
};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The most forwarding hops read: a chain of trusted proxies longer than
/// this is a client's invention, and its 32nd hop is taken as the client.
const MAX_HOPS: usize = 32;

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// An address as forwarding headers write it: bare, `[v6]`, with a port.
fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(b).ok()?.trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .and_then(|v6| v6.parse().ok())
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    element.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        k.eq_ignore_ascii_case(b"for")
            .then(|| parse_ip(&v[1..]))
            .flatten()
    })
}

// Read on every request from `extract` (always inlined): LLVM kept this
// out of line in some builds, a call per request.
#[inline(always)]
fn peer_of<B>(req: &Request<B>) -> Option<&SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(ci) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(&ci.0);
    }
    req.extensions().get::<SocketAddr>()
}

impl<B> ExtractKey<B> for PeerIp {
    // Always inlined, so the key need not come back through memory: in one
    // scratch x86-64 build (rustc 1.95) where LLVM kept this out of line, it
    // returned as 8-byte stores read back as 16-byte loads, which x86 cores
    // cannot forward from the store buffer (the load is wider than either
    // store); software-clock perf samples put roughly 7 ns a request there.
    // The `interleaved` benchmark binary inlined it either way.
    #[inline(always)]
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection> {
        let peer = peer_of(req);
        // The commonest case, inlined where the layer calls it: an IPv4
        // peer, no proxy trusted, its four numbers written straight into
        // the key. Every other case is out of line, so what is inlined
        // stays small.
        if let Some(SocketAddr::V4(v4)) = peer {
            if self.trusted.is_empty() {
                return Ok(Some(ipv4_key(*v4.ip(), self.ipv4_prefix)));
            }
        }
        self.other_peer(peer, req.headers())
    }
}

impl PeerIp {
    /// [`extract`](ExtractKey::extract)'s answer for all but an IPv4 peer
    /// with no proxy trusted.
    #[inline(never)]
    fn other_peer(
        &self,
        peer: Option<&SocketAddr>,
        headers: &http::HeaderMap,
    ) -> Result<Option<RateKey>, KeyRejection> {
        match peer {
            Some(peer) => Ok(Some(self.key_of(self.client_ip(peer.ip(), headers)))),
            None => Err(KeyRejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server passes no peer address to the rate limiter",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
