//! Key layout: core's [`wire::redis_key`] (`prefix{tag}:name`, the tag
//! escaped), with the tag's length bounded.

use ratebound_core::wire;

use super::StoreError;

/// The key of `name` under `tag`.
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
    if !wire::redis_key_parts_valid(b"", name.as_bytes()) {
        return Err(StoreError::Invalid(
            "a limiter name must not contain { or }",
        ));
    }
    let mut k = Vec::with_capacity(prefix.len() + tag.len() + name.len() + 4);
    k.extend(wire::redis_key(prefix.as_bytes(), tag, name.as_bytes()));
    Ok(k)
}
