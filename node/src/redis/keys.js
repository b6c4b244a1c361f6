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

/**
 * Package-private (tests and replays): a call's `now` in whole µs, for
 * times a number of milliseconds cannot carry exactly (near 2^52 µs).
 * Taken only by a store with `time: "caller"`, like `now`.
 */
export const NOW_US = Symbol("ratebound.redis.nowUs");

/** A call's `now` (µs) from its options: `undefined` means Redis TIME. */
export function callNow(o, callerTime, milliseconds) {
  const us = o[NOW_US];
  if (o.now === undefined && us === undefined) return callerTime ? Math.floor(Date.now() * 1000) : undefined;
  if (!callerTime) throw new TypeError('now is only taken by a store with time: "caller" (otherwise Redis TIME decides)');
  if (us !== undefined) {
    if (!Number.isSafeInteger(us) || us < 0) throw new RangeError("a µs time must be a safe integer ≥ 0");
    return us;
  }
  return milliseconds("now", o.now);
}
