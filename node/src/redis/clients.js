// Adapters from the Redis clients people use to the one thing the store
// needs: send one command (argv of strings and byte arrays), get its reply;
// and tell a server's error reply (with its code) from a failure to reach
// the server.

/**
 * @typedef {object} RedisCommander
 * @property {(argv: (string | Uint8Array)[]) => Promise<unknown>} send
 * @property {(err: unknown) => string | null} replyCode The server error's
 *   code (`NOSCRIPT`, `ERR`, `LATE`…) when `err` is a reply from the
 *   server; `null` when the server was not reached or did not answer.
 */

/** The first word of a server error reply, as every client reports it. */
function codeOf(message) {
  const m = /^([A-Z][A-Z_-]*)(?:\s|$)/.exec(message);
  return m ? m[1] : "ERR";
}

/** Byte arrays as Buffers (the clients send other objects as their text). */
const buffers = (argv) => argv.map((a) => (typeof a === "string" || Buffer.isBuffer(a) ? a : Buffer.from(a.buffer, a.byteOffset, a.byteLength)));

/** Whether a class of `err`'s prototype chain has one of `names` (the clients' error classes are not importable here). */
function isA(err, names) {
  for (let p = err !== null && typeof err === "object" ? Object.getPrototypeOf(err) : null; p; p = Object.getPrototypeOf(p)) {
    if (names.includes(p.constructor?.name)) return true;
  }
  return false;
}

function check(client, method, what) {
  if (client === null || typeof client !== "object" || typeof client[method] !== "function") {
    throw new TypeError(`expected ${what} (an object with a ${method}() method)`);
  }
}

/**
 * An `ioredis` client (`new Redis(...)`, or a `Cluster`): commands go
 * through `call`. ioredis reports server errors as `ReplyError`.
 */
export function ioredisClient(client) {
  check(client, "call", "an ioredis client");
  return {
    send: (argv) => client.call(argv[0], ...buffers(argv.slice(1))),
    replyCode: (err) => (isA(err, ["ReplyError"]) ? codeOf(err.message) : null),
  };
}

/**
 * A `node-redis` (v4 or later) client (`createClient(...)`, connected):
 * commands go through `sendCommand`. node-redis reports server errors as
 * `ErrorReply`.
 */
export function nodeRedisClient(client) {
  check(client, "sendCommand", "a node-redis client");
  return {
    send: (argv) => client.sendCommand(buffers(argv)),
    replyCode: (err) => (isA(err, ["ErrorReply", "SimpleError", "BlobError"]) ? codeOf(err.message) : null),
  };
}
