// Runs node/README.md's snippets the way a user would meet them: against the
// packed tarball (`npm pack`) installed into this project, not the source.
//
// Each block marked `<!-- readme-check: KIND -->` is checked:
// - `node`: run as an ES module and, rewritten to `require`, as CommonJS;
//   type-checked with `tsc --strict` (TypeScript 5.9 and 5.4) as `.mts` and
//   `.cts` (module nodenext) and as `.ts` under the classic `module:
//   commonjs` + `moduleResolution: node10` setup.
// - `worker` + `wrangler.toml`: written to `src/index.js` and
//   `wrangler.toml`, run with `wrangler dev` (real workerd, bundled by
//   wrangler through the package's `workerd` export), and sent requests:
//   three pass, the fourth is 429 with `Retry-After`.
// The free names the snippets use (`res`, `callTheModel`, `redisUrl`: a
// redis-server this check starts on a free loopback port) are globals
// defined here. A README edit that breaks a snippet fails this check.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, "..");
const readme = readFileSync(join(pkg, "README.md"), "utf8");

function blocks(kind) {
  const re = new RegExp(`<!-- readme-check: ${kind.replace(".", "\\.")} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\\n\`\`\``, "g");
  return [...readme.matchAll(re)].map((m) => m[1]);
}
const fences = (readme.match(/^```js$/gm) ?? []).length;
const node = blocks("node");
const [worker] = blocks("worker");
const [toml] = blocks("wrangler.toml");
if (node.length + (worker ? 1 : 0) !== fences || node.length < 4 || !worker || !toml) {
  throw new Error(`every \`\`\`js block of README.md needs a readme-check marker: ${fences} js blocks, ${node.length} node + ${worker ? 1 : 0} worker marked; wrangler.toml ${!!toml}`);
}

const work = mkdtempSync(join(tmpdir(), "ratebound-readme-"));
let stopRedis = () => {};
// No npm update notifier (it asks the registry); every command bounded.
const quiet = { ...process.env, npm_config_update_notifier: "false" };
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", timeout: 120_000, env: quiet, ...opts });
try {
  // The package as published, installed next to this project's tools.
  const tarball = join(work, run("npm", ["pack", "--silent", "--pack-destination", work], { cwd: pkg }).trim().split("\n").pop());
  const project = join(work, "project");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "readme-project", private: true, type: "module" }));
  run("npm", ["install", "--no-audit", "--no-fund", "--offline", "--no-save", tarball], { cwd: project });
  for (const ts of ["typescript", "typescript-5.4"]) symlinkSync(join(here, "node_modules", ts), join(project, "node_modules", ts));
  // The Redis clients a user brings (resolved, with their dependencies, from the package's dev install).
  for (const dep of ["ioredis", "redis", "@types"]) symlinkSync(join(pkg, "node_modules", dep), join(project, "node_modules", dep));
  const redisPort = await freePort();
  execFileSync("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes"]);
  stopRedis = () => execFileSync("redis-cli", ["-p", String(redisPort), "shutdown", "nosave"], { stdio: "ignore" });
  for (let i = 0; i < 100 && spawnSync("redis-cli", ["-p", String(redisPort), "ping"], { encoding: "utf8" }).stdout.trim() !== "PONG"; i++) await new Promise((r) => setTimeout(r, 50));
  symlinkSync(join(here, "node_modules", "wrangler"), join(project, "node_modules", "wrangler"));

  const stubs = `globalThis.res = { setHeader() {} };\nglobalThis.callTheModel = async () => ({ ok: true });\nglobalThis.redisUrl = "redis://127.0.0.1:${redisPort}";\n`;
  const stubTypes = `declare var res: { setHeader(name: string, value: string | number): void };\ndeclare function callTheModel(): Promise<{ ok: boolean }>;\ndeclare var redisUrl: string;\ndeclare module "redis-errors";\n`;
  const importRe = /^import \{([^}]*)\} from ("[^"]+");.*$/gm;
  const toCjs = (src) => {
    const requires = [...src.matchAll(importRe)].map((m) => `const {${m[1]}} = require(${m[2]});`).join("\n");
    return `${stubs}${requires}\n(async () => {\n${src.replace(importRe, "")}\n})().catch((e) => { console.error(e); process.exit(1); });\n`;
  };
  const ts = { mts: [], cts: [], legacy: [] };
  node.forEach((src, i) => {
    writeFileSync(join(project, `snippet${i}.mjs`), `${stubs}${src}\n`);
    writeFileSync(join(project, `snippet${i}.cjs`), toCjs(src));
    writeFileSync(join(project, `snippet${i}.mts`), `${src}\nexport {};\n`);
    const imports = [...src.matchAll(importRe)].map((m) => m[0]).join("\n");
    const body = `${imports}\n(async () => {\n${src.replace(importRe, "")}\n})();\n`;
    writeFileSync(join(project, `snippet${i}.cts`), body);
    mkdirSync(join(project, "legacy"), { recursive: true });
    writeFileSync(join(project, "legacy", `snippet${i}.ts`), body);
    ts.mts.push(`snippet${i}.mts`);
    ts.cts.push(`snippet${i}.cts`);
    ts.legacy.push(`legacy/snippet${i}.ts`);
  });
  for (let i = 0; i < node.length; i++) {
    for (const ext of ["mjs", "cjs"]) {
      try {
        run(process.execPath, [join(project, `snippet${i}.${ext}`)], { cwd: project });
      } catch (e) {
        throw new Error(`README node block ${i + 1} failed as ${ext === "mjs" ? "ESM" : "CommonJS"}:\n${e.stderr}\n--- block ---\n${node[i]}`);
      }
    }
  }
  console.log(`node: ${node.length} README blocks ran as ESM and as CommonJS against ${tarball.split("/").pop()}`);

  writeFileSync(join(project, "globals.d.ts"), stubTypes);
  // Node's types, as ioredis and node-redis users have them; ioredis's
  // declarations import the untyped `redis-errors` (declared in globals).
  const common = { strict: true, noEmit: true, target: "es2022", lib: ["es2022", "dom"], types: ["node"] };
  const configs = {
    "ESM (.mts, module nodenext)": { compilerOptions: { ...common, module: "nodenext", moduleResolution: "nodenext" }, files: ["globals.d.ts", ...ts.mts] },
    "CommonJS (.cts, module nodenext)": { compilerOptions: { ...common, module: "nodenext", moduleResolution: "nodenext" }, files: ["globals.d.ts", ...ts.cts] },
    "ESM for bundlers (module esnext, moduleResolution bundler)": { compilerOptions: { ...common, module: "esnext", moduleResolution: "bundler" }, files: ["globals.d.ts", ...ts.mts] },
    "CommonJS (module commonjs, moduleResolution node10)": { compilerOptions: { ...common, module: "commonjs", moduleResolution: "node10", ignoreDeprecations: "5.0" }, files: ["globals.d.ts", ...ts.legacy] },
  };
  const compilers = ["typescript", "typescript-5.4"].map((ts) => [
    JSON.parse(readFileSync(join(project, "node_modules", ts, "package.json"), "utf8")).version,
    join(project, "node_modules", ts, "bin", "tsc"),
  ]);
  Object.entries(configs).forEach(([name, config], i) => {
    const file = join(project, `tsconfig.${i}.json`);
    writeFileSync(file, JSON.stringify(config));
    for (const [version, tsc] of compilers) {
      try {
        run(process.execPath, [tsc, "-p", file], { cwd: project });
      } catch (e) {
        throw new Error(`tsc ${version} --strict failed on the README blocks, ${name}:\n${e.stdout}${e.stderr}`);
      }
    }
  });
  console.log(`types: tsc --strict (TypeScript ${compilers.map(([v]) => v).join(" and ")}) passed for ${Object.keys(configs).join("; ")}`);

  // The Worker, as the README says to run it.
  mkdirSync(join(project, "src"));
  writeFileSync(join(project, "src", "index.js"), `${worker}\n`);
  writeFileSync(join(project, "wrangler.toml"), `${toml}\n`);
  await checkWorker(project);
} finally {
  try { stopRedis(); } catch {}
  rmSync(work, { recursive: true, force: true });
}

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function checkWorker(project) {
  const port = await freePort();
  const wrangler = join(project, "node_modules", "wrangler", "bin", "wrangler.js");
  // No request leaves loopback: no metrics, no download of the `cf` sample,
  // no banner (its update check asks the npm registry).
  const env = { ...quiet, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_HIDE_BANNER: "true", CI: "true", NO_COLOR: "1" };
  const child = spawn(process.execPath, [wrangler, "dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(await freePort()), "--show-interactive-dev-session=false"], {
    cwd: project, env, stdio: ["ignore", "pipe", "pipe"], detached: true,
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const base = `http://127.0.0.1:${port}/`;
  try {
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`wrangler dev exited (${child.exitCode}):\n${log}`);
      try {
        if ((await fetch(`${base}?key=warmup`, { signal: AbortSignal.timeout(5_000) })).ok) break;
      } catch {}
      if (Date.now() > deadline) throw new Error(`wrangler dev did not answer within 90 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const statuses = [];
    let last;
    for (let i = 0; i < 4; i++) {
      last = await fetch(`${base}?key=user-42`, { signal: AbortSignal.timeout(10_000) });
      statuses.push(last.status);
      await last.json();
    }
    const other = await fetch(`${base}?key=user-43`, { signal: AbortSignal.timeout(10_000) });
    const want = "200,200,200,429";
    if (statuses.join() !== want) throw new Error(`worker: statuses ${statuses} for one key, want ${want}\n${log}`);
    const retryAfter = Number(last.headers.get("retry-after"));
    if (!(retryAfter >= 1 && retryAfter <= 60)) throw new Error(`worker: 429 without a Retry-After of 1–60 s (got ${last.headers.get("retry-after")})`);
    if (other.status !== 200) throw new Error(`worker: another key got ${other.status}, want 200`);
    if (process.env.READMECHECK_LOG) console.log(log);
    console.log(`worker: wrangler dev (workerd) answered ${statuses.join(", ")} for one key (Retry-After: ${retryAfter}), 200 for another`);
  } finally {
    // Stopped and gone before its directory is removed.
    const exited = child.exitCode !== null ? Promise.resolve() : new Promise((r) => child.once("exit", r));
    try { process.kill(-child.pid, "SIGTERM"); } catch {}
    const killer = setTimeout(() => { try { process.kill(-child.pid, "SIGKILL"); } catch {} }, 10_000);
    await exited;
    clearTimeout(killer);
  }
}
