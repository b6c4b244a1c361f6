// Input checks shared by both entry points: TypeError for a wrong type or an
// unknown key, RangeError for a bad value, and a clear error for an object
// used after free().

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export function integer(name, v, min = 0) {
  if (typeof v !== "number") throw new TypeError(`${name} must be a number, got ${v === null ? "null" : typeof v}`);
  if (!Number.isFinite(v)) throw new RangeError(`${name} must be finite, got ${v}`);
  if (!Number.isInteger(v)) throw new RangeError(`${name} must be an integer, got ${v}`);
  if (v < min) throw new RangeError(`${name} must be at least ${min}, got ${v}`);
  if (v > MAX_SAFE) throw new RangeError(`${name} must be at most ${MAX_SAFE}, got ${v}`);
  return v;
}

/** Milliseconds (fractions allowed) as the whole microseconds core counts in. */
export function milliseconds(name, v, min = 0) {
  if (typeof v !== "number") throw new TypeError(`${name} must be a number of milliseconds, got ${v === null ? "null" : typeof v}`);
  if (!Number.isFinite(v) || v < min) throw new RangeError(`${name} must be a finite number ≥ ${min} (milliseconds), got ${v}`);
  const us = Math.round(v * 1000);
  if (us > MAX_SAFE) throw new RangeError(`${name} is too large: ${v} ms`);
  return us;
}

/** The keys of an options object that only takes `now`. */
export const NOW = ["now"];

export const nowMicros = (now) => (now === undefined ? Math.floor(Date.now() * 1000) : milliseconds("now", now));

/**
 * An options or config object (`undefined` is `{}`) whose keys are all in
 * `keys`: a misspelt key would otherwise be ignored and its default used.
 */
export function options(o, name, keys) {
  if (o === undefined) return {};
  if (o === null || typeof o !== "object") throw new TypeError(`${name} must be an object, got ${o === null ? "null" : typeof o}`);
  for (const k in o) {
    if (!keys.includes(k)) throw unknownKey(name, k, keys);
  }
  return o;
}

export const unknownKey = (name, k, keys) => new TypeError(`unknown key \`${k}\` in ${name} (expected ${keys.join(", ")})`);

/**
 * `options(o, "options", ["cost", "now"])` for the calls on the hot path
 * (`check`, `peek`): the same checks with the two names compared inline,
 * which keeps a `check({ cost, now })` within a few ns of no check at all.
 */
export function costOptions(o) {
  if (o === undefined) return NO_OPTIONS;
  if (o === null || typeof o !== "object") throw new TypeError(`options must be an object, got ${o === null ? "null" : typeof o}`);
  for (const k in o) {
    if (k !== "cost" && k !== "now") throw unknownKey("options", k, ["cost", "now"]);
  }
  return o;
}
const NO_OPTIONS = Object.freeze({});

/**
 * What a class holds in place of its wasm object after `free()`: any use
 * throws a TypeError naming the class (not wasm-bindgen's null pointer);
 * `free()` again does nothing.
 */
export function freed(kind) {
  const fail = () => {
    throw new TypeError(`this ${kind} was freed: free() was called on it, so it can no longer be used`);
  };
  return new Proxy({}, {
    get: (_, p) => (p === "free" ? () => {} : fail()),
    getPrototypeOf: fail,
  });
}

/** A config error thrown by a wasm module (the offending field's name) as a RangeError. */
export function configError(e, kind) {
  if (typeof e === "string") return new RangeError(`invalid ${kind} config: \`${e}\` is out of range (zero, too large, or inconsistent)`);
  return e;
}
