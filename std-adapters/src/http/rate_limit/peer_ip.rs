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
/// that forwarded it. A client that sends its own `X-Forwarded-For` to a
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

    /// The client that the trusted proxy `proxy` names in `headers`.
    #[inline(never)]
    fn forwarded_client(&self, proxy: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let mut client = proxy;
        let hops: Vec<Option<IpAddr>> = match self.header {
            ForwardedBy::Forwarded => headers
                .get_all(http::header::FORWARDED)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .map(forwarded_for)
                .collect(),
            ForwardedBy::XForwardedFor => headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .map(|h| parse_ip(trim(h)))
                .collect(),
        };
        for hop in hops.into_iter().rev() {
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
fn ipv4_key(ip: std::net::Ipv4Addr, bits: u8) -> RateKey {
    let masked = if bits >= 32 {
        ip
    } else {
        std::net::Ipv4Addr::from(u32::from(ip) & !(u32::MAX >> bits))
    };
    // At most "255.255.255.255/32", 18 bytes: written into a buffer the
    // size of the key's inline storage (24 bytes), which the key takes as
    // it is; four bytes at a time — each number with a dot after it, the
    // last dot dropped or made the '/'.
    let mut buf = [0u8; 24];
    let mut at = 0;
    for o in masked.octets() {
        at = put_number(&mut buf, at, o);
    }
    if bits < 32 {
        put_byte(&mut buf, at - 1, b'/');
        at = put_number(&mut buf, at, bits);
    }
    RateKey::from_key_bytes(KeyBytes::from_buf(buf, at - 1))
}

/// `n` and a dot at `at` (at most 16: four numbers before it); where
/// the next number starts.
#[inline(always)]
fn put_number(buf: &mut [u8; 24], at: usize, n: u8) -> usize {
    let [len, word @ ..] = DOTTED[n as usize];
    if let Some(dst) = buf.get_mut(at..at + 4) {
        dst.copy_from_slice(&[word[0], word[1], word[2], word[3]]);
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

fn peer_of<B>(req: &Request<B>) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(ci) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(ci.0.ip());
    }
    req.extensions().get::<SocketAddr>().map(SocketAddr::ip)
}

impl<B> ExtractKey<B> for PeerIp {
    fn extract(&self, req: &Request<B>) -> Result<Option<RateKey>, KeyRejection> {
        let Some(peer) = peer_of(req) else {
            return Err(KeyRejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server passes no peer address to the rate limiter",
            ));
        };
        Ok(Some(self.key_of(self.client_ip(peer, req.headers()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let p = PeerIp::new().trust(["10.0.0.0/8"]).unwrap();
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(p.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        let p = p.forwarded_by(ForwardedBy::Forwarded);
        assert_eq!(p.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            PeerIp::new().client_ip(ip("203.0.113.9"), &h),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_chain_is_read_from_the_right_skipping_trusted_hops() {
        let p = PeerIp::new().trust(["10.0.0.0/8", "192.0.2.1"]).unwrap();
        // The client forged the first entry; 198.51.100.7 is who reached our proxies.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 192.0.2.1")]);
        assert_eq!(p.client_ip(ip("10.1.2.3"), &h), ip("198.51.100.7"));
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(p.client_ip(ip("10.1.2.3"), &h), ip("198.51.100.7"));
        // Garbage ends the walk at the trusted hop that forwarded it.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, garbage, 192.0.2.1")]);
        assert_eq!(p.client_ip(ip("10.1.2.3"), &h), ip("192.0.2.1"));
        // Every hop trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 192.0.2.1")]);
        assert_eq!(p.client_ip(ip("10.1.2.3"), &h), ip("10.9.9.9"));
    }

    #[test]
    fn only_the_chosen_header_is_read() {
        // The proxy appends to X-Forwarded-For and passes the client's own
        // Forwarded through: that one must not name the client.
        let p = PeerIp::new().trust(["10.0.0.1"]).unwrap();
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        let h = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        // And the other way round.
        let p = p.forwarded_by(ForwardedBy::Forwarded);
        let h = headers(&[
            ("forwarded", "for=198.51.100.7"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn forwarded_reads_ports_and_brackets() {
        let p = PeerIp::new()
            .trust(["::1"])
            .unwrap()
            .forwarded_by(ForwardedBy::Forwarded);
        let h = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::7]:4711";proto=https, for=::1"#,
            ),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(p.client_ip(ip("::1"), &h), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=192.0.2.60:80;by=203.0.113.43")]);
        assert_eq!(p.client_ip(ip("::1"), &h), ip("192.0.2.60"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client_ip(ip("::1"), &h), ip("::1"));
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix_and_mapped_v4_is_v4() {
        let p = PeerIp::new();
        assert_eq!(
            p.key_of(ip("2001:db8:1:2:aaaa::1")).as_bytes(),
            b"2001:db8:1:2::/64"
        );
        assert_eq!(
            p.key_of(ip("2001:db8:1:2:bbbb::9")),
            p.key_of(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            p.key_of(ip("2001:db8:1:3::1")),
            p.key_of(ip("2001:db8:1:2::1"))
        );
        assert_eq!(
            p.key_of(ip("::ffff:203.0.113.9")).as_bytes(),
            b"203.0.113.9"
        );
        let p = PeerIp::new().ipv6_prefix(128).ipv4_prefix(24);
        assert_eq!(p.key_of(ip("2001:db8::1")).as_bytes(), b"2001:db8::1");
        assert_eq!(p.key_of(ip("203.0.113.9")).as_bytes(), b"203.0.113.0/24");
    }

    #[test]
    fn ipv4_keys_are_the_text_ipnet_writes() {
        // Every number of each digit count in every position, and the
        // longest and shortest addresses.
        let addrs = (0..=255u8)
            .map(|n| {
                [
                    n,
                    n.wrapping_add(85),
                    n.wrapping_add(170),
                    n.wrapping_add(100),
                ]
            })
            .chain([[0; 4], [255; 4], [203, 0, 113, 9], [9, 99, 100, 255]]);
        for (i, octets) in addrs.enumerate() {
            let a = std::net::Ipv4Addr::from(octets);
            let addr = a.to_string();
            for bits in 0..=32u8 {
                let want = if bits == 32 {
                    a.to_string()
                } else {
                    ipnet::Ipv4Net::new(a, bits).unwrap().trunc().to_string()
                };
                let got = ipv4_key(a, bits);
                assert_eq!(got.as_bytes(), want.as_bytes(), "#{i} {addr}/{bits}");
            }
        }
    }

    #[test]
    fn a_bad_proxy_entry_is_an_error_naming_it() {
        let e = PeerIp::new().trust(["10.0.0.0/8", "nope"]).unwrap_err();
        assert_eq!(e, ProxyParseError("nope".into()));
        assert!(e.to_string().contains("nope"));
    }
}
