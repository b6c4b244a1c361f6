//! Key layout: `prefix{tag}:name`, the tag escaped so that it can never end
//! early or collide with another, every key of one call in one cluster slot.

use super::StoreError;

/// The key of `name` under `tag`: `prefix{tag}:name`, with `%`, `{`, `}` in
/// the tag escaped.
pub(crate) fn key(
    prefix: &str,
    max_tag_len: usize,
    tag: &[u8],
    name: &str,
) -> Result<Vec<u8>, StoreError> {
    if tag.len() > max_tag_len {
        return Err(StoreError::TagTooLong {
            len: tag.len(),
            max: max_tag_len,
        });
    }
    if name.contains(['{', '}']) {
        return Err(StoreError::Invalid(
            "a limiter name must not contain { or }",
        ));
    }
    let mut k = Vec::with_capacity(prefix.len() + tag.len() + name.len() + 4);
    k.extend_from_slice(prefix.as_bytes());
    k.push(b'{');
    if tag.is_empty() {
        // Redis hashes the whole key for an empty `{}`; a bare `%` (which
        // escaping never produces) keeps one slot per call.
        k.push(b'%');
    }
    for &b in tag {
        match b {
            b'%' => k.extend_from_slice(b"%25"),
            b'{' => k.extend_from_slice(b"%7B"),
            b'}' => k.extend_from_slice(b"%7D"),
            _ => k.push(b),
        }
    }
    k.extend_from_slice(b"}:");
    k.extend_from_slice(name.as_bytes());
    Ok(k)
}
