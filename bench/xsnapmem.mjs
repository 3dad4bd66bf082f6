// What a real xsnap worker holds when its allocation meter trips (docs/limits.md).
// Usage: node bench/xsnapmem.mjs SWINGSET_DIR N [plain | vatrun:VATRUN:PROFILE[:EXTRA,ARGS]] [snapshot | spin]
// Starts an xsnap-worker through @agoric/xsnap's own JS API with no computron limit, evaluates a
// vat that keeps N_OBJECTS small objects ({ i }) in an array, then (with "snapshot") writes a
// snapshot (its size and sha256: the same vat gives the same bytes under any sandbox).
// /proc/PID/status of the xsnap-worker is sampled every 20 ms: the highest VmRSS,
// VmHWM, VmData and VmPTE seen are printed with the outcome as one JSON object. Under vatrun the
// worker is found as the xsnap-worker descendant of the vatrun process, and vatrun's report is
// included. With "spin" the vat keeps nothing and computes N loop steps instead (a CPU-bound
// delivery, timed: deliveryMs). Wrap every run in `flock /tmp/vatrun-heavy.lock`: a run holds 2+ GB for a minute.
import { spawn as plainSpawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [swingset, nArg, modeArg = 'plain', snapArg] = process.argv.slice(2);
const n = Number(nArg);
const mod = p => import(pathToFileURL(path.join(swingset, 'node_modules', p)).href);
process.env.LOCKDOWN_ERROR_TRAPPING ??= 'none';
await mod('@endo/init/debug.js');
const { xsnap } = await mod('@agoric/xsnap/src/index.js');

let spawn = plainSpawn;
let report = null;
if (modeArg.startsWith('vatrun:')) {
  const [, vatrun, profile, extra = ''] = modeArg.split(':');
  const { makeVatrunSpawn } = await import(pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'js', 'index.js')).href);
  spawn = makeVatrunSpawn({ vatrun, profile, args: extra ? extra.split(',') : [], onReport: r => (report = r) });
}

const status = pid => {
  const out = {};
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(VmRSS|VmHWM|VmData|VmPTE|VmPeak|VmSize):\s+(\d+) kB/.exec(line);
    if (m) out[m[1]] = Number(m[2]) * 1024;
  }
  return out;
};
// The xsnap-worker process: the child itself (plain) or its descendant (vatrun → init → worker).
const findWorker = pid => {
  const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (comm.startsWith('xsnap')) return pid;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    for (const c of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
      const w = findWorker(Number(c));
      if (w) return w;
    }
  }
  return 0;
};

let child;
const recording = (cmd, args, opts) => (child = spawn(cmd, args, opts));
const peak = {};
let worker = 0;
const sample = () => {
  try {
    worker ||= findWorker(child.pid);
    if (!worker) return;
    for (const [k, v] of Object.entries(status(worker))) peak[k] = Math.max(peak[k] ?? 0, v);
  } catch {
    // gone
  }
};
const t0 = Date.now();
const w = await xsnap({ os: os.type(), spawn: recording, fs: {}, name: 'mem', stdout: 'inherit', stderr: 'inherit', meteringLimit: 0 });
const exited = new Promise(resolve => child.once('exit', (code, signal) => resolve({ code, signal })));
const timer = setInterval(sample, 20);
const out = { n, mode: modeArg.split(':')[0], profile: modeArg.split(':')[2] };
try {
  const tD = Date.now();
  const r = await w.evaluate(snapArg === 'spin'
    ? `let x = 0; for (let i = 0; i < ${n}; i += 1) x = (x * 31 + i) % 1000003; globalThis.x = x;`
    : `globalThis.keep = []; for (let i = 0; i < ${n}; i += 1) keep.push({ i });`);
  out.deliveryMs = Date.now() - tD;
  out.meterUsage = r?.meterUsage;
  sample();
  out.kept = true;
  if (snapArg === 'snapshot') {
    let bytes = 0;
    const hash = crypto.createHash('sha256');
    for await (const chunk of w.makeSnapshotStream()) {
      bytes += chunk.length;
      hash.update(chunk);
    }
    sample();
    out.snapshotBytes = bytes;
    out.snapshotSha256 = hash.digest('hex');
  }
  await w.close();
} catch (e) {
  out.error = String(e?.message ?? e).slice(0, 200);
}
const ex = await exited;
clearInterval(timer);
await new Promise(r => setTimeout(r, 100));
Object.assign(out, ex, { seconds: (Date.now() - t0) / 1000, peak });
if (report) out.report = { cause: report.cause, class: report.class, exitCode: report.exitCode, phase: report.phase, detail: report.detail, memory: report.limitsEnforced?.memory, cgroup: report.cgroup };
console.log(JSON.stringify(out));
