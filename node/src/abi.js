// The main module's exports (wasm/src/abi/: plain functions over handles)
// as the objects api.js uses: each wraps one handle, frees it once
// (explicitly, or when garbage collected), and moves arrays through one
// scratch buffer in wasm memory. Nothing here decides: each method is one
// call of core's code. `ratebound/retry`'s module is bound the same way
// (retry-abi.js).

/** Handles of a module's objects: adopted from `*_new`, freed once. */
export function handles(instance) {
  const x = instance.exports;
  const memory = x.memory;
  const utf8 = new TextDecoder();
  // Each object's handle and its kind's free function, freed when the object
  // is collected (where the runtime has FinalizationRegistry; Workers have
  // not had it everywhere: there objects live until `free()`).
  const collected = typeof FinalizationRegistry === "function" ? new FinalizationRegistry(([free, h]) => free(h)) : { register() {}, unregister() {} };

  /** Adopt a handle from `*_new` (0: the config was refused; throw its field's name, as wasm-bindgen did). */
  function adopt(self, h, free) {
    if (h === 0) throw utf8.decode(new Uint8Array(memory.buffer, x.rb_error_ptr() >>> 0, x.rb_error_len()));
    self.h = h;
    collected.register(self, [free, h], self);
  }
  /** Free `self`'s object once; from then on any use of it (a method, a second free) throws instead of reaching wasm. */
  function release(self, free) {
    collected.unregister(self);
    free(self.h);
    Object.defineProperty(self, "h", { get() { throw new TypeError("this wasm object was freed"); } });
  }
  return { x, memory, adopt, release };
}

/** The objects over an instance of the main module. */
export function bindAbi(instance) {
  const { x, memory, adopt, release } = handles(instance);

  // One scratch buffer of f64s for arrays in and out, grown as needed.
  let scratch = 0;
  let room = 0;
  function buffer(n) {
    if (n > room) {
      if (room > 0) x.rb_free(scratch, room);
      // Addresses cross as i32: `>>> 0` reads those past 2 GiB.
      scratch = x.rb_alloc(Math.max(n, 64)) >>> 0;
      room = scratch === 0 ? 0 : Math.max(n, 64);
      if (scratch === 0) throw new RangeError(`cannot allocate ${n} numbers in wasm memory`);
    }
    return scratch;
  }
  const f64s = (at, n) => new Float64Array(memory.buffer, at, n);
  /** Copy `values` into the scratch buffer; its address. */
  function put(values) {
    const at = buffer(values.length);
    f64s(at, values.length).set(values);
    return at;
  }

  /** One limiter with its state (wasm's `Single`): the methods every kind has, and a GCRA's. */
  class Single {
    constructor(h) { adopt(this, h, x.one_free); }
    check(now, cost) { return x.one_check(this.h, now, cost); }
    peek(now, cost) { return x.one_peek(this.h, now, cost); }
    allow(now, cost) { return x.one_allow(this.h, now, cost); }
    atMost(now, n) { return x.one_at_most(this.h, now, n); }
    taken() { return x.one_taken(this.h); }
    refund(now, n) { return x.one_refund(this.h, now, n); }
    isIdle(now) { return x.one_is_idle(this.h, now) !== 0; }
    exportState() {
      let n = x.one_export(this.h, buffer(0), room);
      if (n > room) n = x.one_export(this.h, buffer(n), room);
      return Array.from(f64s(scratch, n));
    }
    importState(values) { return x.one_import(this.h, put(values), values.length) !== 0; }
    outPtr() { return x.one_out(this.h) >>> 0; }
    free() { release(this, x.one_free); }
  }
  class Gcra extends Single {
    constructor(capacity, amount, periodUs) { super(x.one_new(0, capacity, amount, periodUs)); }
  }
  class SlidingLog extends Single {
    constructor(limit, windowUs, slots) { super(x.one_new(1, limit, windowUs, slots)); }
  }
  class SlidingCounter extends Single {
    constructor(limit, windowUs) { super(x.one_new(2, limit, windowUs, 0)); }
  }

  class KeyedStore {
    constructor(h) { adopt(this, h, x.keyed_free); }
    static gcra(capacity, amount, periodUs, max, lru) { return new KeyedStore(x.keyed_new(0, capacity, amount, periodUs, max, lru ? 1 : 0)); }
    static slidingLog(limit, windowUs, slots, max, lru) { return new KeyedStore(x.keyed_new(1, limit, windowUs, slots, max, lru ? 1 : 0)); }
    static slidingCounter(limit, windowUs, max, lru) { return new KeyedStore(x.keyed_new(2, limit, windowUs, 0, max, lru ? 1 : 0)); }
    check(slot, now, cost) { return x.keyed_check(this.h, slot, now, cost); }
    allow(slot, now, cost) { return x.keyed_allow(this.h, slot, now, cost); }
    peek(slot, now, cost) { return x.keyed_peek(this.h, slot, now, cost); }
    inserted() { return x.keyed_inserted(this.h); }
    evicted() { return x.keyed_evicted(this.h); }
    evictIdle(now) {
      const held = this.size();
      const at = buffer(held);
      const n = x.keyed_evict_idle(this.h, now, at, held);
      return Array.from(f64s(at, n));
    }
    touch(slot) { x.keyed_touch(this.h, slot); }
    size() { return x.keyed_size(this.h); }
    outPtr() { return x.keyed_out(this.h) >>> 0; }
    free() { release(this, x.keyed_free); }
  }

  /** Core's policy-set fold of members packed 5 f64s each: `[allowed, binding, remaining, limit, resetAt, retryAt]`. */
  function policyFold(now, members) {
    const at = buffer(members.length + 6);
    f64s(at, members.length).set(members);
    const out = at + members.length * 8;
    x.policy_fold(now, at, members.length, out);
    return Array.from(f64s(out, 6));
  }

  return { Gcra, SlidingLog, SlidingCounter, KeyedStore, policyFold, memory };
}
