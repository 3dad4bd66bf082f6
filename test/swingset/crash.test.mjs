// Worker deaths (SwingSet issue #2958: what the kernel does when a vat worker dies), each run with
// plain spawn and with `vatrun --profile xsnap --no-cgroup`, from a copy of the same booted
// swing-store. Each case asserts what the kernel did, that it did the same with and without vatrun,
// and what vatrun's death report says.
//
// The real xsnap-worker is killed, never vatrun: through vatrun it is vatrun's grandchild (vatrun ->
// init stage -> worker), found through /proc/PID/task/TID/children.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import {
  PROFILES,
  TEST_TIMEOUT,
  runs,
  VATRUN,
  bootedTemplate,
  copyOfTemplate,
  getBundles,
  killAll,
  killWorkerNow,
  liveWorker,
  makeRecordingSpawn,
  onCommand,
  profileDigest,
  since,
  startKernel,
  workerPid,
} from './lib.mjs';

// plain spawn, and the first profile of $VATRUN_SWINGSET_PROFILES (xsnap by default)
const PROFILE = PROFILES[0];
const MODES = ['plain', PROFILE];
const opts = key => ({ timeout: TEST_TIMEOUT, skip: !runs(key) });
const ANY = ['in-delivery', 'idle', 'restart', 'create', 'metering'].some(runs);
const errInfo = e => ({ message: e && e.message, code: e && e.code });

/** Checks the fields every vatrun report has, for the profile under test. */
function checkReport(rep, want) {
  assert.ok(rep, 'vatrun wrote no report');
  const got = Object.fromEntries(Object.keys(want).map(k => [k, rep[k]]));
  assert.deepEqual(got, want, `report: ${JSON.stringify(rep)}`);
  assert.equal(rep.profile, PROFILE);
  assert.equal(rep.profileDigest, profileDigest(PROFILE));
}

/**
 * Runs `body(ctx)` in each mode against a fresh copy of the booted store; ctx has the mode, dir,
 * the recording spawn (rs) and a slot for hooks. Always kills leftover workers and closes.
 */
async function eachMode(name, hooksFor, body) {
  const out = {};
  for (const mode of MODES) {
    const t0 = performance.now();
    const dir = await copyOfTemplate(`crash-${name}-${mode}`);
    const ctx = { mode, dir, hooks: {} };
    ctx.rs = makeRecordingSpawn(mode, { onSpawn: rec => ctx.hooks.onSpawn?.(rec) });
    hooksFor?.(ctx);
    try {
      out[mode] = await body(ctx);
    } finally {
      killAll(ctx.rs);
      await ctx.kernel?.close();
    }
    out[mode].ms = since(t0);
  }
  return out;
}

test('setup: vatrun present, bundles, booted template store', { timeout: TEST_TIMEOUT * 3, skip: !ANY }, async t => {
  assert.ok(fs.existsSync(VATRUN), `${VATRUN} missing: run 'make bin/vatrun' in the repository root (or set VATRUN_BIN)`);
  const b = await getBundles();
  const tpl = await bootedTemplate();
  t.diagnostic(`bundles ${b.cached ? 'cached' : 'built'} ${b.ms} ms; template store booted in ${tpl.ms} ms`);
});

test('SIGKILL of the worker during a long delivery: kernel panic; report killed/external/in-delivery', opts('in-delivery'), async t => {
  const out = await eachMode(
    'in-delivery',
    ctx => {
      // arm every alice worker: when the kernel sends it spinForever, kill the real worker 300 ms later
      ctx.hooks.onSpawn = rec => {
        if (!rec.vat.endsWith(':alice')) return;
        onCommand(rec.child, 'spinForever', () =>
          setTimeout(() => {
            const pid = workerPid(rec.child);
            ctx.killed = { rec, pid };
            if (pid) process.kill(pid, 'SIGKILL');
          }, 300),
        );
      };
    },
    async ctx => {
      ctx.kernel = await startKernel(ctx.dir, ctx.rs.spawn);
      await ctx.kernel.send('alice', 'add', [100]);
      const err = await ctx.kernel.send('alice', 'spinForever').then(
        () => assert.fail('controller.run() resolved: the kernel did not notice the dead worker'),
        e => e,
      );
      assert.ok(ctx.killed?.pid, 'the alice worker was not found/killed');
      return { err: errInfo(err), exit: await ctx.killed.rec.exit, report: await ctx.killed.rec.report };
    },
  );
  for (const m of MODES) t.diagnostic(`${m}: run() rejected ${JSON.stringify(out[m].err)}; worker exit ${JSON.stringify(out[m].exit)} (${out[m].ms} ms)`);
  assert.deepEqual(out.plain.err, { message: 'v3:alice exited due to signal SIGKILL', code: 'SIGKILL' });
  assert.deepEqual(out.plain.exit, { code: null, signal: 'SIGKILL' });
  checkReport(out[PROFILE].report, { cause: 'killed', class: 'external', signalName: 'SIGKILL', signal: 9, phase: 'in-delivery', killedBy: 'nobody' });
  // vatrun mirrors the worker's death: the kernel sees exactly what it sees without vatrun
  assert.deepEqual(out[PROFILE].exit, out.plain.exit, 'vatrun exit status (the kernel SIGTERMs vatrun when fd 4 closes; vatrun must still die by the worker\'s SIGKILL)');
  assert.deepEqual(out[PROFILE].err, out.plain.err);
});

test('SIGKILL of an idle worker, then a delivery to it: kernel panic; report phase idle', opts('idle'), async t => {
  const out = await eachMode('idle', null, async ctx => {
    ctx.kernel = await startKernel(ctx.dir, ctx.rs.spawn);
    await ctx.kernel.send('alice', 'add', [100]);
    const w = liveWorker(ctx.rs, 'alice');
    assert.ok(w, 'no live alice worker');
    process.kill(workerPid(w.child), 'SIGKILL');
    const exit = await w.exit;
    const report = await w.report;
    const err = await ctx.kernel.send('alice', 'add', [101]).then(
      () => assert.fail('controller.run() resolved after the worker died'),
      e => e,
    );
    return { err: errInfo(err), exit, report };
  });
  for (const m of MODES) t.diagnostic(`${m}: run() rejected ${JSON.stringify(out[m].err)}; worker exit ${JSON.stringify(out[m].exit)} (${out[m].ms} ms)`);
  assert.deepEqual(out.plain.err, { message: 'v3:alice exited due to signal SIGKILL', code: 'SIGKILL' });
  assert.deepEqual(out[PROFILE].err, out.plain.err);
  assert.deepEqual(out[PROFILE].exit, out.plain.exit);
  checkReport(out[PROFILE].report, { cause: 'killed', class: 'external', signalName: 'SIGKILL', phase: 'idle', killedBy: 'nobody' });
});

test('SIGKILL of each worker as it starts, in a kernel restart: the restart fails (panic) in both; the store is intact', opts('restart'), async t => {
  const out = await eachMode(
    'reload',
    ctx => {
      ctx.hooks.onSpawn = rec => {
        rec.killedPid = killWorkerNow(rec.child);
      };
    },
    async ctx => {
      const err = await startKernel(ctx.dir, ctx.rs.spawn).then(
        k => {
          ctx.kernel = k;
          assert.fail('makeSwingsetController resolved although its preloaded worker was killed');
        },
        e => e,
      );
      const first = ctx.rs.spawns[0];
      assert.ok(first?.killedPid, 'the first worker was not found/killed');
      const res = { err: errInfo(err), spawns: ctx.rs.spawns.map(s => s.vat), exit: await first.exit, report: await first.report };
      // the failed start committed nothing: a clean restart from the same store works
      const rs2 = makeRecordingSpawn(ctx.mode);
      const k = await startKernel(ctx.dir, rs2.spawn);
      try {
        res.state = await k.call('bootstrap', 'state');
        res.activityhash = k.controller.getActivityhash();
      } finally {
        await k.close();
      }
      return res;
    },
  );
  for (const m of MODES) t.diagnostic(`${m}: start rejected ${JSON.stringify(out[m].err)}; spawned ${out[m].spawns}; worker exit ${JSON.stringify(out[m].exit)} (${out[m].ms} ms)`);
  assert.deepEqual(out.plain.spawns, ['v3:alice'], 'the kernel preloads one vat (maxVatsOnline 2 / 2)');
  assert.deepEqual(out[PROFILE].spawns, out.plain.spawns);
  // The kernel does the same: makeSwingsetController rejects (the preload is a 'recreate', so the
  // kernel panics: "unable to re-create vat"), nothing is committed, and a clean restart works.
  // Which symptom of the death the kernel sees first is a race inside @agoric/xsnap: the kernel's
  // write of the snapshot to fd 8 failing (EPIPE) or the worker's 'exit' event. With plain spawn
  // the worker is dead before the kernel writes anything, so EPIPE always wins; through vatrun,
  // vatrun still holds its copies of the pipes for a moment after the worker's exec, so the kernel
  // may see the exit first. Both are worker deaths; the message is not stored anywhere.
  const deathErrors = [
    { message: 'write EPIPE', code: 'EPIPE' },
    { message: 'v3:alice exited due to signal SIGKILL', code: 'SIGKILL' },
  ];
  for (const m of MODES) assert.ok(deathErrors.some(e => e.message === out[m].err.message && e.code === out[m].err.code), `${m}: ${JSON.stringify(out[m].err)}`);
  assert.deepEqual(out[PROFILE].exit, out.plain.exit);
  assert.deepEqual(out.plain.exit, { code: null, signal: 'SIGKILL' });
  checkReport(out[PROFILE].report, { cause: 'killed', class: 'external', signalName: 'SIGKILL', phase: 'startup', killedBy: 'nobody' });
  assert.deepEqual(out[PROFILE].state, out.plain.state);
  assert.equal(out[PROFILE].activityhash, out.plain.activityhash);
});

test('SIGKILL of a dynamic vat\'s worker at creation: createVat rejects, the kernel carries on, same state', opts('create'), async t => {
  const out = await eachMode(
    'create',
    ctx => {
      ctx.hooks.onSpawn = rec => {
        if (rec.vat.endsWith(':doomed')) rec.killedPid = killWorkerNow(rec.child);
      };
    },
    async ctx => {
      ctx.kernel = await startKernel(ctx.dir, ctx.rs.spawn);
      const created = await ctx.kernel.call('bootstrap', 'createMetered', [10 ** 12, 'doomed']).then(
        v => ({ fulfilled: v }),
        e => ({ rejected: e.value && e.value.message }),
      );
      const doomed = ctx.rs.spawns.find(s => s.vat.endsWith(':doomed'));
      assert.ok(doomed?.killedPid, 'the new vat\'s worker was not found/killed');
      // the kernel carries on: static vats still work
      const after = await ctx.kernel.call('alice', 'add', [100]);
      const activityhash = await ctx.kernel.commit();
      return { created, after, activityhash, exit: await doomed.exit, report: await doomed.report, vat: doomed.vat };
    },
  );
  for (const m of MODES) t.diagnostic(`${m}: ${out[m].vat} createVat ${JSON.stringify(out[m].created)}; worker exit ${JSON.stringify(out[m].exit)}; activityhash ${out[m].activityhash} (${out[m].ms} ms)`);
  assert.ok(out.plain.created.rejected?.startsWith('Vat Creation Error: '), JSON.stringify(out.plain.created));
  assert.deepEqual(out[PROFILE].created, out.plain.created, 'the creation error (which the kernel stores) is the same');
  assert.equal(out.plain.after, out[PROFILE].after);
  // the error text is part of consensus state: the activity hash must not depend on vatrun
  assert.equal(out[PROFILE].activityhash, out.plain.activityhash);
  assert.deepEqual(out[PROFILE].exit, out.plain.exit);
  checkReport(out[PROFILE].report, { cause: 'killed', class: 'external', signalName: 'SIGKILL', phase: 'startup', killedBy: 'nobody' });
});

test('a metered dynamic vat exceeding its per-crank computron limit: only that vat is terminated; report metering-fault', opts('metering'), async t => {
  const out = await eachMode('meter', null, async ctx => {
    ctx.kernel = await startKernel(ctx.dir, ctx.rs.spawn);
    const t0 = performance.now();
    const spin = await ctx.kernel.call('bootstrap', 'meteredSpin').then(
      v => ({ fulfilled: v }),
      e => ({ rejected: e.value && e.value.message }),
    );
    const spinMs = since(t0);
    const status = await ctx.kernel.call('bootstrap', 'meteredStatus');
    const state = await ctx.kernel.call('bootstrap', 'state');
    const activityhash = await ctx.kernel.commit();
    const metered = ctx.rs.spawns.filter(s => s.vat.endsWith(':metered'));
    const last = metered[metered.length - 1];
    assert.ok(last, 'the metered vat never got a worker');
    return { spin, spinMs, status, state, activityhash, args: last.args, exit: await last.exit, report: await last.report };
  });
  for (const m of MODES) t.diagnostic(`${m}: meteredSpin ${JSON.stringify(out[m].spin)} after ${out[m].spinMs} ms; status ${out[m].status}; worker ${out[m].args.join(' ')} exit ${JSON.stringify(out[m].exit)} (${out[m].ms} ms)`);
  assert.deepEqual(out.plain.spin, { rejected: 'vat terminated' });
  assert.equal(out.plain.status, 'terminated: Compute meter exceeded');
  assert.ok(out.plain.args.includes('-l'), 'the metered worker runs with -l');
  assert.deepEqual(out.plain.exit, { code: 17, signal: null }, 'xsnap exits 17 (E_TOO_MUCH_COMPUTATION)');
  // the rest of the kernel is fine
  assert.equal(out.plain.state.alice.name, 'alice');
  for (const k of ['spin', 'status', 'state', 'activityhash', 'exit']) {
    assert.deepEqual(out[PROFILE][k], out.plain[k], k);
  }
  checkReport(out[PROFILE].report, { cause: 'metering-fault', class: 'deterministic', exitCode: 17, phase: 'in-delivery', killedBy: 'nobody' });
});
