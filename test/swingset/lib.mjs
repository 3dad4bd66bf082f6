// Shared harness for the SwingSet-through-vatrun tests: builds the bundles once per process, opens a
// file-backed swing-store, and starts a SwingSet kernel whose xsnap workers are spawned either
// plainly (child_process.spawn, what the kernel does today) or through vatrun (makeVatrunSpawn).
// Every spawn is recorded: which vat, whether it started from a snapshot (-r), whether it is
// metered (-l), the child, and (through vatrun) its death report.
import './lockdown-env.mjs';
import '@endo/init/debug.js';

import { execFileSync, spawn as plainSpawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import bundleSource from '@endo/bundle-source';
import { openSwingStore, makeSwingStoreExporter } from '@agoric/swing-store';
import {
  buildKernelBundles,
  initializeSwingset,
  makeSwingsetController,
} from '@agoric/swingset-vat';
import { kunser } from '@agoric/kmarshal';

import { makeVatrunSpawn } from '../../js/index.js';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const VATRUN = path.resolve(HERE, process.env.VATRUN_BIN || '../../bin/vatrun');
// Where stores and the bundle cache go: test/swingset/state, or $VATRUN_SWINGSET_STATE (the e2e VM
// sees the repository read-only and points it at a tmpfs).
export const STATE = process.env.VATRUN_SWINGSET_STATE || path.join(HERE, 'state');
/**
 * The vatrun profiles compared with plain spawn ($VATRUN_SWINGSET_PROFILES, comma-separated;
 * default xsnap,solo), and the `vatrun run` flags they get ($VATRUN_SWINGSET_VATRUN_ARGS,
 * space-separated; default --no-cgroup: this host's cgroups are not ours to use; the e2e VM passes
 * --cgroup-parent with real cgroup v2 leaves).
 */
export const PROFILES = (process.env.VATRUN_SWINGSET_PROFILES || 'xsnap,solo').split(',').filter(Boolean);
export const VATRUN_ARGS = (process.env.VATRUN_SWINGSET_VATRUN_ARGS ?? '--no-cgroup').split(/\s+/).filter(Boolean);
/** Where cached bundles are looked for first ($VATRUN_SWINGSET_BUNDLES, e.g. the host's state/ read-only in the e2e VM). */
export const BUNDLES = process.env.VATRUN_SWINGSET_BUNDLES || STATE;
/** Deliveries before and after the restart ($VATRUN_SWINGSET_DELIVERIES="N,M", default 20,10). */
export const [DELIVERIES1, DELIVERIES2] = (process.env.VATRUN_SWINGSET_DELIVERIES || '20,10').split(',').map(Number);
/** The per-test timeout ($VATRUN_SWINGSET_TIMEOUT_MS, default 180 s; the e2e VM runs under TCG). */
export const TEST_TIMEOUT = Number(process.env.VATRUN_SWINGSET_TIMEOUT_MS || 180_000);
const ONLY = (process.env.VATRUN_SWINGSET_ONLY || '').split(',').filter(Boolean);
/**
 * Whether the case named key runs ($VATRUN_SWINGSET_ONLY: comma-separated keys; default all):
 * baseline, in-delivery, idle, restart, create, metering.
 */
export const runs = key => ONLY.length === 0 || ONLY.includes(key);

/** Time in ms since `t0` (performance.now()). */
export const since = t0 => Math.round(performance.now() - t0);

let bundlesP;
/**
 * Kernel, vat-admin and our vats' bundles, built once per process (bundling takes ~10 s on a small
 * machine) and cached in state/ keyed by the sources and package versions, so the test files and
 * reruns share them. Bundles are deterministic, so a cached bundle is the same bundle.
 */
export function getBundles() {
  if (!bundlesP) {
    bundlesP = (async () => {
      const t0 = performance.now();
      const key = crypto.createHash('sha256');
      for (const f of ['vats/bootstrap.js', 'vats/worker.js', 'package-lock.json']) {
        key.update(fs.readFileSync(path.join(HERE, f)));
      }
      key.update(process.version);
      const name = `bundles-${key.digest('hex').slice(0, 16)}.json`;
      const cache = path.join(STATE, name);
      for (const f of new Set([path.join(BUNDLES, name), cache])) {
        try {
          const b = JSON.parse(fs.readFileSync(f, 'utf8'));
          return harden({ ...b, ms: since(t0), cached: true });
        } catch {
          // not cached there
        }
      }
      const [kernelBundles, bootstrap, worker] = await Promise.all([
        buildKernelBundles(),
        bundleSource(path.join(HERE, 'vats/bootstrap.js')),
        bundleSource(path.join(HERE, 'vats/worker.js')),
      ]);
      const b = { kernelBundles, bootstrap, worker };
      fs.mkdirSync(STATE, { recursive: true });
      fs.writeFileSync(`${cache}.tmp${process.pid}`, JSON.stringify(b));
      fs.renameSync(`${cache}.tmp${process.pid}`, cache);
      return harden({ ...b, ms: since(t0), cached: false });
    })();
  }
  return bundlesP;
}

export async function makeConfig() {
  const { bootstrap, worker } = await getBundles();
  return {
    bootstrap: 'bootstrap',
    defaultManagerType: 'xsnap',
    // small, so workers are snapshotted (and, with restartWorkerOnSnapshot, restarted from the
    // snapshot) many times in a short run
    snapshotInitial: 2,
    snapshotInterval: 5,
    defaultReapInterval: 'never',
    vats: {
      bootstrap: { bundle: bootstrap },
      alice: { bundle: worker, parameters: { name: 'alice' } },
      bob: { bundle: worker, parameters: { name: 'bob' } },
    },
    bundles: { metered: { bundle: worker } },
  };
}

/** A fresh, empty state directory for one scenario. */
export function freshDir(name) {
  const dir = path.join(STATE, name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * A spawn function for the kernel, plus the record of every worker it started.
 * mode: 'plain' | a vatrun profile name ('xsnap', 'solo').
 * hooks.onSpawn(rec) is called right after each spawn.
 */
export function makeRecordingSpawn(mode, hooks = {}) {
  const spawns = [];
  const reports = [];
  const base =
    mode === 'plain'
      ? plainSpawn
      : makeVatrunSpawn({
          vatrun: VATRUN,
          profile: mode,
          args: VATRUN_ARGS,
          name: (_cmd, args) => String(args[0] || 'xsnap'),
          onReport: (report, child) => {
            reports.push({ vat: child.vatrunVat, report });
          },
        });
  function spawn(command, args, options) {
    const child = base(command, args, options);
    // @agoric/xsnap writes to fds 3 and 8 without an 'error' listener, so a write to a worker that
    // has just died (EPIPE) is an uncaught exception of the whole process (plain spawn as well).
    // The kernel still sees the failed write through the write's callback; a no-op listener only
    // keeps the test process alive.
    for (const fd of [3, 7, 8]) child.stdio[fd]?.on?.('error', () => {});
    const vat = String(args[0] || '');
    child.vatrunVat = vat;
    const rec = {
      n: spawns.length,
      vat, // e.g. 'v5:alice'
      vatID: vat.split(':')[0],
      fromSnapshot: args.includes('-r'),
      metered: args.includes('-l'),
      args: [...args],
      child,
      exit: new Promise(resolve => {
        child.once('exit', (code, signal) => resolve({ code, signal }));
      }),
      report: child.vatrunReport || Promise.resolve(null),
    };
    spawns.push(rec);
    if (hooks.onSpawn) hooks.onSpawn(rec);
    return child;
  }
  return { spawn, spawns, reports, mode };
}

/**
 * Opens (or creates) the file-backed swing-store in `dir` and starts a kernel on it.
 * With init: true, initializes it with our config first (the bootstrap message is queued).
 */
export async function startKernel(dir, spawn, { init = false, maxVatsOnline = 2 } = {}) {
  const { kernelBundles } = await getBundles();
  const { kernelStorage, hostStorage } = openSwingStore(dir);
  if (init) {
    await initializeSwingset(await makeConfig(), [], kernelStorage, {
      kernelBundles,
      addComms: false,
      addVattp: false,
      addTimer: false,
    });
    await hostStorage.commit();
  }
  let controller;
  try {
    controller = await makeSwingsetController(
      kernelStorage,
      {},
      {
        spawn,
        kernelBundle: kernelBundles.kernel,
        warehousePolicy: { maxVatsOnline },
        env: {},
      },
    );
  } catch (e) {
    await hostStorage.close().catch(() => {});
    throw e;
  }
  if (init) {
    // The host sends to these roots with queueToVatRoot; pin them, or the kernel's GC may drop a
    // root once nothing else references it (then: "I don't remember allocating o+0").
    for (const name of ['bootstrap', 'alice', 'bob']) controller.pinVatRoot(name);
    await hostStorage.commit();
  }
  let closed = false;
  const kernel = {
    controller,
    kernelStorage,
    hostStorage,
    /** queue a message to a static vat's root and run to quiescence; returns the kpid */
    async send(vatName, method, args = []) {
      const kpid = controller.queueToVatRoot(vatName, method, args, 'ignore');
      await controller.run();
      return kpid;
    },
    /** send and return the unserialized resolution */
    async call(vatName, method, args = []) {
      const kpid = await kernel.send(vatName, method, args);
      const status = controller.kpStatus(kpid);
      const value = kunser(controller.kpResolution(kpid));
      if (status !== 'fulfilled') throw Object.assign(Error(`${method}: ${status}`), { value });
      return value;
    },
    async commit() {
      await hostStorage.commit();
      return controller.getActivityhash();
    },
    /** shut down workers and close the store, without committing anything new */
    async close() {
      if (closed) return;
      closed = true;
      await controller.shutdown().catch(() => {});
      await hostStorage.close().catch(() => {});
    },
  };
  return kernel;
}

/** The swing-store's export data (consensus kv entries, snapshot/transcript/bundle metadata). */
export async function exportData(dir) {
  const exporter = makeSwingStoreExporter(dir);
  const data = {};
  try {
    for await (const [k, v] of exporter.getExportData()) data[k] = v;
  } finally {
    await exporter.close();
  }
  return data;
}

/** { 'v5.7': hash } for every snapshot the export data lists, and { v5: endPos } transcript lengths. */
export function summarize(data) {
  const snapshots = {};
  const transcripts = {};
  for (const [k, v] of Object.entries(data)) {
    let m = /^snapshot\.(v\d+)\.(\d+)$/.exec(k);
    if (m) snapshots[`${m[1]}.${m[2]}`] = JSON.parse(v).hash;
    m = /^transcript\.(v\d+)\.current$/.exec(k);
    if (m) transcripts[m[1]] = JSON.parse(v).endPos;
  }
  return { snapshots, transcripts };
}

/** pids of all descendants of `pid` (via /proc/PID/task/TID/children). */
export function descendants(pid) {
  const out = [];
  const walk = p => {
    let tids = [];
    try {
      tids = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const tid of tids) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.split(/\s+/).filter(Boolean)) {
        out.push(Number(k));
        walk(Number(k));
      }
    }
  };
  walk(pid);
  return out;
}

const comm = pid => {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};

/** The real xsnap-worker process behind a spawned child: the child itself, or vatrun's grandchild. */
export function workerPid(child) {
  if (comm(child.pid) === 'xsnap-worker') return child.pid;
  return descendants(child.pid).find(p => comm(p) === 'xsnap-worker');
}

/** Waits until `pred()` is truthy (polling), or throws after `ms`. */
export async function waitFor(pred, ms = 10000, what = 'condition') {
  const t0 = Date.now();
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() - t0 > ms) throw Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise(r => setTimeout(r, 20));
  }
}

/** Calls `fn` when the kernel writes a command containing `needle` to the worker's fd 3. */
export function onCommand(child, needle, fn) {
  const s = child.stdio[3];
  const orig = s.write;
  let fired = false;
  s.write = function write(chunk, ...rest) {
    if (!fired && Buffer.from(chunk).toString('latin1').includes(needle)) {
      fired = true;
      queueMicrotask(fn);
    }
    return orig.call(this, chunk, ...rest);
  };
}

/** Sum of user+system CPU ticks of a process. */
export function cpuTicks(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return -1;
  }
}

/**
 * The baseline scenario: initialize a kernel in `dir`, boot it, create the metered dynamic vat,
 * make N deliveries, commit and close; then reopen the same store, make M more, commit and close.
 * Returns what the kernel computed, the activity hash after each phase, timings, and the spawns.
 */
export async function runScenario(mode, dir, { N = 20, M = 10, log = () => {} } = {}) {
  const rs = makeRecordingSpawn(mode);
  const timings = {};
  const activityhash = {};
  const states = {};
  const deliver = async (k, from, to) => {
    for (let i = from; i <= to; i += 1) {
      await k.send(i % 2 ? 'alice' : 'bob', 'add', [i]);
      if (i % 5 === 0) await k.send('bootstrap', 'meteredAdd', [i]);
    }
  };

  let t0 = performance.now();
  let k = await startKernel(dir, rs.spawn, { init: true });
  try {
    await k.controller.run(); // bootstrap
    states.metered1 = await k.call('bootstrap', 'createMetered', [10 ** 12]);
    timings.boot = since(t0);
    let t1 = performance.now();
    await deliver(k, 1, N);
    timings.deliveries1 = since(t1);
    states.phase1 = await k.call('bootstrap', 'state');
    activityhash.phase1 = await k.commit();
  } finally {
    await k.close();
  }
  timings.phase1 = since(t0);
  log(`${mode}: phase 1 done in ${timings.phase1} ms`);

  t0 = performance.now();
  k = await startKernel(dir, rs.spawn);
  try {
    timings.restart = since(t0);
    const t1 = performance.now();
    await deliver(k, N + 1, N + M);
    timings.deliveries2 = since(t1);
    states.phase2 = await k.call('bootstrap', 'state');
    activityhash.phase2 = await k.commit();
  } finally {
    await k.close();
  }
  timings.phase2 = since(t0);
  log(`${mode}: phase 2 done in ${timings.phase2} ms`);

  const exits = await Promise.all(rs.spawns.map(s => s.exit));
  const reports = await Promise.all(rs.spawns.map(s => s.report));
  const data = await exportData(dir);
  return { mode, states, activityhash, timings, data, ...summarize(data), spawns: rs.spawns, exits, reports };
}

const sleepSync = ms => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Synchronously waits (up to `ms`) until the child's real xsnap-worker process exists (exec done),
 * then SIGKILLs it; returns its pid. Used inside spawn(), before the kernel has written anything to
 * the worker, so the kill lands at a deterministic point: the very start of the worker.
 */
export function killWorkerNow(child, ms = 5000) {
  const t0 = Date.now();
  for (;;) {
    const pid = workerPid(child);
    if (pid) {
      process.kill(pid, 'SIGKILL');
      return pid;
    }
    if (Date.now() - t0 > ms || child.exitCode !== null) return undefined;
    sleepSync(2);
  }
}

/**
 * Builds (once per process) a booted kernel state: initialized, bootstrapped, the metered dynamic
 * vat created, 10 deliveries made, committed and closed. Cases copy it instead of booting again.
 */
let templateP;
export function bootedTemplate() {
  if (!templateP) {
    templateP = (async () => {
      const t0 = performance.now();
      const dir = freshDir('template');
      const rs = makeRecordingSpawn('plain');
      const k = await startKernel(dir, rs.spawn, { init: true });
      try {
        await k.controller.run();
        await k.call('bootstrap', 'createMetered', [10 ** 12]);
        for (let i = 1; i <= 10; i += 1) await k.send(i % 2 ? 'alice' : 'bob', 'add', [i]);
        await k.commit();
      } finally {
        await k.close();
      }
      return { dir, ms: since(t0) };
    })();
  }
  return templateP;
}

/** A fresh copy of the booted template (the swing-store is a directory of sqlite files). */
export async function copyOfTemplate(name) {
  const { dir: src } = await bootedTemplate();
  const dir = freshDir(name);
  fs.cpSync(src, dir, { recursive: true });
  return dir;
}

/** The most recently spawned worker of a vat that has not exited yet. */
export function liveWorker(rs, vatName) {
  return [...rs.spawns].reverse().find(s => s.vat.endsWith(`:${vatName}`) && s.child.exitCode === null && s.child.signalCode === null);
}

/** SIGKILLs every worker of `rs` that is still running (test cleanup: no stray spinning workers). */
export function killAll(rs) {
  for (const s of rs.spawns) {
    if (s.child.exitCode !== null || s.child.signalCode !== null) continue;
    const pid = workerPid(s.child);
    try {
      if (pid) process.kill(pid, 'SIGKILL');
      s.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The digest `vatrun profile digest NAME` prints. */
export function profileDigest(name) {
  return execFileSync(VATRUN, ['profile', 'digest', name], { encoding: 'utf8' }).trim().split(/\s+/).pop();
}
