// Keys: the caller's key as the tag's bytes, limit names as the Rust
// backend takes them. The layout itself (`prefix{tag}:name`, escaped) is
// core's, through wasm (`redisKey`).

import { raw as wasm } from "../budget-node.js";

export const utf8 = new TextEncoder();
/** Bytes to a string of one char per byte (windows-1252 maps each byte to its own char): keys of the in-memory fallback. */
export const LATIN1 = new TextDecoder("latin1");

/** Names as the Rust backend's limit sets take them, so both name keys alike. */
const NAME = /^[\x20-\x7e]{1,64}$/;
const NAME_FORBIDDEN = /[{}"\\]/;

/** `name` checked (1 to 64 printable ASCII characters but `{ } " \`). */
export function validName(name, prefix) {
  if (typeof name !== "string" || !NAME.test(name) || NAME_FORBIDDEN.test(name) || !wasm.redisKeyPartsValid(prefix, utf8.encode(name))) {
    throw new RangeError(`name ${JSON.stringify(name)}: names are 1 to 64 characters of printable ASCII but { } " \\`);
  }
  return name;
}

/** A key (a well-formed string, or bytes) as the tag's bytes, at most `max` of them. */
export function tagOf(key, max) {
  let bytes;
  if (typeof key === "string") {
    if (!key.isWellFormed()) throw new TypeError("key must be a well-formed string (no lone surrogates: two keys would share a state)");
    bytes = utf8.encode(key);
  } else if (key instanceof Uint8Array) {
    bytes = key.slice(); // the caller may reuse its buffer while the call awaits Redis
  } else {
    throw new TypeError(`key must be a string or a Uint8Array, got ${key === null ? "null" : typeof key}`);
  }
  if (bytes.length > max) throw new RangeError(`key is ${bytes.length} bytes, over maxTagLength ${max}`);
  return bytes;
}
