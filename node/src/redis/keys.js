// Keys: the caller's key as the tag's bytes, limit names as the Rust
// backend takes them. The layout itself (`prefix{tag}:name`, escaped) is
// core's, through wasm (`redisKey`).

import { raw as wasm } from "../redis-wasm.js";

export const utf8 = new TextEncoder();
/** Bytes to a string of one char per byte (windows-1252 maps each byte to its own char): keys of the in-memory fallback. */
export const LATIN1 = new TextDecoder("latin1");

/** `name` checked by core's rule, as the Rust backend's limit sets take names, so both name keys alike (1 to 64 characters of visible ASCII, no spaces, but `{ } " \`: none breaks the key's layout). */
export function validName(name) {
  if (typeof name !== "string") throw new TypeError(`name must be a string, got ${name === null ? "null" : typeof name}`);
  const bytes = utf8.encode(name);
  if (!wasm.limitNameValid(bytes)) {
    throw new RangeError(`name ${JSON.stringify(name)}: names are 1 to 64 characters of visible ASCII (no spaces) but { } " \\`);
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
    // A copy (a Buffer's own slice is a view): the caller may reuse its
    // buffer while the call awaits Redis.
    bytes = Uint8Array.prototype.slice.call(key);
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

/**
 * The in-memory stand-ins of the local fallback, per key, at most `max`:
 * the least recently used is dropped (and freed) for a new key, so a long
 * life of outages never fills it.
 */
export class LocalKeys {
  #map = new Map();
  #max;
  #make;
  constructor(max, make) {
    this.#max = max;
    this.#make = make;
  }
  get(tag) {
    const key = LATIN1.decode(tag);
    let v = this.#map.get(key);
    if (v !== undefined) {
      this.#map.delete(key); // most recently used last
    } else {
      if (this.#map.size >= this.#max) {
        const [oldest, dropped] = this.#map.entries().next().value;
        this.#map.delete(oldest);
        dropped.free();
      }
      v = this.#make();
    }
    this.#map.set(key, v);
    return v;
  }
  /** The stand-in of `tag`, if there is one (not made, not reordered). */
  peek(tag) {
    return this.#map.get(LATIN1.decode(tag));
  }
  values() {
    return this.#map.values();
  }
}
