//! The Redis key layout every shell shares (`wire::redis_key`).

use proptest::prelude::*;
use ratebound_core::wire::{redis_key, redis_key_parts_valid};

fn key(prefix: &[u8], tag: &[u8], name: &[u8]) -> Vec<u8> {
    redis_key(prefix, tag, name).collect()
}

#[test]
fn keys_are_prefix_tag_name_with_the_tag_escaped() {
    assert_eq!(key(b"rb:", b"user-42", b"api"), b"rb:{user-42}:api");
    assert_eq!(key(b"rb:", b"a{b}c%d", b"x"), b"rb:{a%7Bb%7Dc%25d}:x");
    assert_eq!(key(b"", b"", b"n"), b"{%}:n");
    assert_eq!(key(b"p", "é".as_bytes(), b""), "p{é}:".as_bytes());
    assert!(redis_key_parts_valid(b"rb:", b"api"));
    assert!(!redis_key_parts_valid(b"r{b", b"api"));
    assert!(!redis_key_parts_valid(b"rb:", b"a}"));
}

proptest! {
    /// Two tags share a key only if they are equal, and the hash tag (the
    /// text between the first `{` and the next `}`) is the escaped tag
    /// whole: a tag can never end early or move the slot.
    #[test]
    fn distinct_tags_never_share_a_key_or_end_early(
        a in proptest::collection::vec(any::<u8>(), 0..12),
        b in proptest::collection::vec(any::<u8>(), 0..12),
    ) {
        let (ka, kb) = (key(b"rb:", &a, b"x"), key(b"rb:", &b, b"x"));
        prop_assert_eq!(ka == kb, a == b);
        let open = ka.iter().position(|&c| c == b'{').unwrap();
        let close = open + 1 + ka[open + 1..].iter().position(|&c| c == b'}').unwrap();
        prop_assert_eq!(close, ka.len() - 3, "the tag ends only at its own brace");
        prop_assert!(close > open + 1, "never an empty hash tag");
    }
}
