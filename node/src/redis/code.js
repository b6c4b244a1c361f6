// The Lua code as Redis runs it, assembled exactly as the Rust backend
// assembles it (std-adapters/src/redis/scripts.rs): one function library
// named by a hash of its code, or the same code as scripts by SHA. Equal
// text gives equal names, so Rust and Node processes share one library.

import { createHash } from "node:crypto";
import { PRELUDE, LIMIT, BUDGET, MODEL } from "../../dist/redis-lua.js";

const sha1 = (text) => createHash("sha1").update(text, "utf8").digest("hex");

const ENTRIES = [
  ["limit", LIMIT],
  ["gcra", LIMIT],
  ["budget", BUDGET],
  ["model", MODEL],
];

const body = `${PRELUDE}\n${LIMIT}\n${BUDGET}\n${MODEL}\n`;
const hash = sha1(body).slice(0, 12);

/** Per entry point: function names (read-write, read-only) and the script with its SHA. */
export const ENTRY = Object.fromEntries(
  ENTRIES.map(([name, source]) => {
    const text = `${PRELUDE}\n${source}\nreturn ${name}(KEYS, ARGV)\n`;
    return [name, { rw: `rb_${hash}_${name}`, ro: `rb_${hash}_${name}_ro`, script: text, sha: sha1(text) }];
  }),
);

/** `FUNCTION LOAD REPLACE` text. */
export const LIBRARY =
  `#!lua name=ratebound_${hash}\n${body}` +
  ENTRIES.map(
    ([name]) =>
      `redis.register_function('${ENTRY[name].rw}', ${name})\n` +
      `redis.register_function{function_name='${ENTRY[name].ro}', callback=${name}, flags={'no-writes'}}\n`,
  ).join("");

/** The library's name as `FUNCTION LIST` shows it. */
export const LIBRARY_NAME = `ratebound_${hash}`;
