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

/**
 * Whether `err` is a server's error reply. The clients' classes are not
 * importable here (they are optional peers) and their names do not survive
 * minification, so besides the class names this goes by the reply's own
 * shape: a message that starts with an error code in capitals ("ERR …",
 * "NOSCRIPT …", "WRONGTYPE …"), from an error that is not a system error
 * (those carry `syscall` / an `E…` code and say "connect ECONNREFUSED …").
 */
function isReply(err, names) {
  if (err === null || typeof err !== "object") return false;
  for (let p = Object.getPrototypeOf(err); p; p = Object.getPrototypeOf(p)) {
    if (names.includes(p.constructor?.name)) return true;
  }
  return typeof err.message === "string" && /^[A-Z][A-Z0-9_-]+ /.test(err.message) && err.syscall === undefined && err.errno === undefined;
}

function check(client, method, what) {
  if (client === null || typeof client !== "object" || typeof client[method] !== "function") {
    throw new TypeError(`expected ${what} (an object with a ${method}() method)`);
  }
}

/** The key a command is routed by in a cluster: the first of its keys (`FCALL f n key …`, `EVALSHA sha n key …`). */
const firstKey = (argv) => (argv[0] === "TIME" || argv[0] === "FUNCTION" ? undefined : argv[3]);
const isReadOnly = (argv) => argv[0] === "FCALL_RO" || argv[0] === "TIME";

/**
 * An `ioredis` client, `new Redis(...)` or a `Cluster`: commands go through
 * `call` (a cluster routes them by their keys, which share one hash tag);
 * on a cluster the function library is loaded on every master. ioredis
 * reports server errors as `ReplyError`.
 */
export function ioredisClient(client) {
  check(client, "call", "an ioredis client");
  const cluster = typeof client.nodes === "function";
  return {
    send: (argv) => {
      const args = buffers(argv.slice(1));
      if (cluster && argv[0] === "FUNCTION") return Promise.all(client.nodes("master").map((n) => n.call(argv[0], ...args)));
      return client.call(argv[0], ...args);
    },
    replyCode: (err) => (isReply(err, ["ReplyError"]) ? codeOf(err.message) : null),
  };
}

/**
 * A `node-redis` (v4 or later) client, connected: `createClient(...)`
 * (commands through `sendCommand`) or `createCluster(...)` (routed by the
 * command's first key; the function library loaded on every master).
 * node-redis reports server errors as `ErrorReply`.
 */
export function nodeRedisClient(client) {
  check(client, "sendCommand", "a node-redis client");
  const cluster = Array.isArray(client.masters) && typeof client.nodeClient === "function";
  return {
    send: async (argv) => {
      const args = buffers(argv);
      if (!cluster) return client.sendCommand(args);
      if (argv[0] === "FUNCTION") return Promise.all(client.masters.map(async (m) => (await client.nodeClient(m)).sendCommand(args)));
      const key = firstKey(argv);
      return client.sendCommand(key === undefined ? undefined : buffers([key])[0], isReadOnly(argv), args);
    },
    replyCode: (err) => (isReply(err, ["ErrorReply", "SimpleError", "BlobError"]) ? codeOf(err.message) : null),
  };
}

class NoFunctions extends Error {
  constructor() {
    super("ERR unknown command 'FUNCTION' (this @upstash/redis client has no functions API)");
  }
}

/** A server error from @upstash/redis, its message as the server wrote it (the client adds a prefix or the whole command). */
class UpstashReply extends Error {
  constructor(err) {
    super(err.message.replace(/^Command failed: /, "").replace(/, command was: [\s\S]*$/, ""), { cause: err });
  }
}

/** Keys as text for a JSON protocol: UTF-8 only (a binary key would not survive). */
const UTF8 = new TextDecoder("utf-8", { fatal: true });
function text(a) {
  if (typeof a === "string") return a;
  try {
    return UTF8.decode(a);
  } catch {
    const e = new TypeError("@upstash/redis sends keys as JSON text: a key must be valid UTF-8 (use ioredis or node-redis for binary keys)");
    e.callerError = true; // about this call: thrown as is, never failed over
    throw e;
  }
}

/**
 * An `@upstash/redis` client (`new Redis({ url, token })`, HTTP): the store's
 * commands map to its methods (`functions.load` / `functions.call`,
 * `evalsha`, `eval`, `time`). Server errors arrive as `UpstashError`.
 */
export function upstashClient(client) {
  check(client, "evalsha", "an @upstash/redis client");
  const split = (argv, at) => {
    const n = Number(argv[at]);
    const rest = argv.slice(at + 1).map(text);
    return [rest.slice(0, n), rest.slice(n)];
  };
  const send = async (argv) => {
      const [cmd] = argv;
      if (cmd === "TIME") return client.time();
      if (cmd === "FUNCTION") {
        // An older client without Functions answers as a server without them would: the store runs scripts.
        if (typeof client.functions?.load !== "function") return Promise.reject(new NoFunctions());
        return client.functions.load({ code: argv[argv.length - 1], replace: argv.includes("REPLACE") });
      }
      if (cmd === "FCALL" || cmd === "FCALL_RO") {
        const [keys, args] = split(argv, 2);
        return cmd === "FCALL" ? client.functions.call(argv[1], keys, args) : client.functions.callRo(argv[1], keys, args);
      }
      const [keys, args] = split(argv, 2);
      if (cmd === "EVALSHA") return client.evalsha(argv[1], keys, args);
      if (cmd === "EVAL") return client.eval(argv[1], keys, args);
      return Promise.reject(new TypeError(`upstashClient: no mapping for ${cmd}`));
  };
  return {
    // @upstash/redis names its errors itself (minification keeps them): a
    // server's error is an UpstashError; a body that is not JSON (a proxy's
    // error page) is not an answer from Redis.
    send: (argv) =>
      send(argv).catch((e) => {
        throw e?.name === "UpstashError" ? new UpstashReply(e) : e;
      }),
    replyCode: (err) => (err instanceof UpstashReply || err instanceof NoFunctions ? codeOf(err.message) : null),
  };
}
