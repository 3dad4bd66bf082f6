// The real xsnap worker through vatrun vs plain spawn (make bench, section "xsnap").
// Usage: node bench/xsnap.mjs SWINGSET_DIR VATRUN N
// Each sample: @agoric/xsnap's own JS API starts an xsnap-worker (the kernel's way: its spawn
// option), evaluates one trivial expression, and closes it; timed from the xsnap() call to the
// worker's exit. Modes are interleaved (plain, vatrun, plain, …) after 3 warm-up rounds. Prints
// one JSON object: {"plain": [ms…], "vatrun": [ms…], "reports": n}.
import { spawn as plainSpawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [swingset, vatrun, nArg] = process.argv.slice(2);
const n = Number(nArg || 30);
const mod = p => import(pathToFileURL(path.join(swingset, 'node_modules', p)).href);
process.env.LOCKDOWN_ERROR_TRAPPING ??= 'none';
await mod('@endo/init/debug.js');
const { xsnap } = await mod('@agoric/xsnap/src/index.js');
const { makeVatrunSpawn } = await import(pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'js', 'index.js')).href);

let reports = 0;
const vatrunSpawn = makeVatrunSpawn({
  vatrun,
  profile: 'xsnap',
  args: ['--no-cgroup'],
  onReport: r => {
    if (r.cause !== 'exited') throw Error(`vatrun report: ${JSON.stringify(r)}`);
    reports += 1;
  },
});

async function once(spawn) {
  let child;
  const recording = (cmd, args, opts) => (child = spawn(cmd, args, opts));
  const t0 = process.hrtime.bigint();
  const w = await xsnap({ os: os.type(), spawn: recording, fs: {}, name: 'bench', stdout: 'ignore', stderr: 'ignore' });
  const r = await w.evaluate('1 + 1');
  if (!r) throw Error('no reply');
  const exited = new Promise(resolve => child.once('exit', resolve));
  await w.close();
  await exited;
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const out = { plain: [], vatrun: [] };
for (let i = -3; i < n; i++) {
  const a = await once(plainSpawn);
  const b = await once(vatrunSpawn);
  if (i >= 0) {
    out.plain.push(a);
    out.vatrun.push(b);
  }
}
// Let the last report arrive.
await new Promise(r => setTimeout(r, 50));
out.reports = reports;
console.log(JSON.stringify(out));
