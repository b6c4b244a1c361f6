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
    // Every number of each digit count in every position, every mix of
    // digit counts (the shortest and longest of each, in all four places:
    // where each number's text starts depends on those before it), and
    // some addresses as they come.
    let ends = [0u8, 9, 10, 99, 100, 255];
    let mixes = ends.into_iter().flat_map(move |a| {
        ends.into_iter().flat_map(move |b| {
            ends.into_iter()
                .flat_map(move |c| ends.into_iter().map(move |d| [a, b, c, d]))
        })
    });
    let addrs = (0..=255u8)
        .map(|n| {
            [
                n,
                n.wrapping_add(85),
                n.wrapping_add(170),
                n.wrapping_add(100),
            ]
        })
        .chain(mixes)
        .chain([[203, 0, 113, 9], [192, 168, 1, 20]]);
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

/// The key `p` finds for a request from `peer` carrying `headers`,
/// the peer given as axum's `ConnectInfo` and as a bare `SocketAddr`
/// (both must agree).
fn key_for(p: &PeerIp, peer: &str, headers: &[(&str, &str)]) -> String {
    let peer: SocketAddr = peer.parse().unwrap();
    let mut keys = Vec::new();
    for as_connect_info in [true, false] {
        let mut req = Request::get("/").body(()).unwrap();
        *req.headers_mut() = self::headers(headers);
        if as_connect_info {
            #[cfg(feature = "axum")]
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            #[cfg(not(feature = "axum"))]
            req.extensions_mut().insert(peer);
        } else {
            req.extensions_mut().insert(peer);
        }
        let key = p.extract(&req).unwrap().unwrap();
        keys.push(String::from_utf8(key.as_bytes().to_vec()).unwrap());
    }
    assert_eq!(keys[0], keys[1]);
    keys.remove(0)
}

#[test]
fn every_kind_of_peer_gives_the_key_of_its_client() {
    let p = PeerIp::new();
    let xff = [("x-forwarded-for", "198.51.100.7")];
    assert_eq!(key_for(&p, "203.0.113.9:40000", &xff), "203.0.113.9");
    assert_eq!(key_for(&p, "[::ffff:203.0.113.9]:1", &xff), "203.0.113.9");
    assert_eq!(key_for(&p, "[2001:db8:1:2::9]:1", &[]), "2001:db8:1:2::/64");
    let p = PeerIp::new().ipv4_prefix(24);
    assert_eq!(key_for(&p, "203.0.113.9:40000", &[]), "203.0.113.0/24");
    let p = PeerIp::new().trust(["10.0.0.0/8"]).unwrap();
    assert_eq!(key_for(&p, "10.1.2.3:40000", &xff), "198.51.100.7");
    assert_eq!(key_for(&p, "203.0.113.9:40000", &xff), "203.0.113.9");
    let none = Request::get("/").body(()).unwrap();
    let e = p.extract(&none).unwrap_err();
    assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn a_bad_proxy_entry_is_an_error_naming_it() {
    let e = PeerIp::new().trust(["10.0.0.0/8", "nope"]).unwrap_err();
    assert_eq!(e, ProxyParseError("nope".into()));
    assert!(e.to_string().contains("nope"));
}

#[test]
fn a_long_chain_is_read_only_as_far_as_the_walk_goes() {
    let p = PeerIp::new().trust(["10.0.0.0/8"]).unwrap();
    // A client's 10,000 forged entries (garbage here) sit beyond the
    // address the trusted proxy appended: the walk stops there.
    let forged = vec!["garbage"; 10_000].join(", ");
    let h = headers(&[(
        "x-forwarded-for",
        &format!("{forged}, 198.51.100.7, 10.0.0.2"),
    )]);
    assert_eq!(p.client_ip(ip("10.1.2.3"), &h), ip("198.51.100.7"));
    // Forged trusted hops: at most 32 read, the 32nd from the right taken.
    let chain: Vec<String> = (0..1_000)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    let h = headers(&[("x-forwarded-for", &chain.join(", "))]);
    assert_eq!(p.client_ip(ip("10.1.2.3"), &h), ip(&chain[1_000 - 32]));
    // The same in Forwarded, across header lines (the last line is nearest).
    let p = p.forwarded_by(ForwardedBy::Forwarded);
    let h = headers(&[
        ("forwarded", "for=6.6.6.6, for=198.51.100.7"),
        ("forwarded", "for=10.0.0.2;proto=https"),
    ]);
    assert_eq!(p.client_ip(ip("10.1.2.3"), &h), ip("198.51.100.7"));
}
