// Baseline equality: the same SwingSet scenario (init, boot, a metered dynamic vat, 20 deliveries,
// close, reopen the same file-backed swing-store, 10 more deliveries) run three times, with the
// kernel's xsnap workers spawned plainly, through `vatrun --profile xsnap`, and through
// `vatrun --profile solo`. Everything the kernel commits must be identical: the activity hash
// after each phase, every heap snapshot hash, every transcript length, and the whole swing-store
// export data. Workers must really have been evicted/restarted and reloaded from snapshots.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import {
  DELIVERIES1,
  DELIVERIES2,
  PROFILES,
  TEST_TIMEOUT,
  VATRUN,
  VATRUN_ARGS,
  freshDir,
  getBundles,
  profileDigest,
  runs,
  runScenario,
} from './lib.mjs';

const N = DELIVERIES1;
const M = DELIVERIES2;
const MODES = ['plain', ...PROFILES];
const results = {};

const expectedState = n => {
  // deliveries i = 1..n alternate: odd i to alice, even i to bob, each adds i
  let alice = 0;
  let bob = 0;
  for (let i = 1; i <= n; i += 1) {
    if (i % 2) alice += i;
    else bob += i;
  }
  return {
    alice: { name: 'alice', total: alice, count: Math.ceil(n / 2) },
    bob: { name: 'bob', total: bob, count: Math.floor(n / 2) },
    metered: 'running',
  };
};

test('vatrun binary is present', () => {
  assert.ok(fs.existsSync(VATRUN), `${VATRUN} missing: run 'make bin/vatrun' in the repository root (or set VATRUN_BIN)`);
});

test('bundles', { timeout: TEST_TIMEOUT * 3 }, async t => {
  const b = await getBundles();
  t.diagnostic(`bundles ${b.cached ? 'loaded from cache' : 'built'} in ${b.ms} ms`);
});

for (const mode of MODES) {
  test(`scenario with ${mode === 'plain' ? 'plain spawn' : `vatrun --profile ${mode} ${VATRUN_ARGS.join(' ')}`}`, { timeout: TEST_TIMEOUT, skip: !runs('baseline') }, async t => {
    const r = await runScenario(mode, freshDir(`baseline-${mode}`), { N, M });
    results[mode] = r;
    t.diagnostic(`${mode}: ${JSON.stringify(r.timings)}`);

    assert.equal(r.states.metered1, 1);
    assert.deepEqual(r.states.phase1, expectedState(N));
    assert.deepEqual(r.states.phase2, expectedState(N + M));

    // evictions (maxVatsOnline: 2) and snapshot restarts really happened: workers were started
    // from a heap snapshot (xsnap -r), in both phases, for more than one vat
    const vatIDs = new Set(r.spawns.map(s => s.vatID));
    const fromSnap = r.spawns.filter(s => s.fromSnapshot);
    t.diagnostic(`${mode}: ${r.spawns.length} workers for ${vatIDs.size} vats, ${fromSnap.length} started from a snapshot`);
    assert.ok(r.spawns.length > vatIDs.size, `${r.spawns.length} spawns for ${vatIDs.size} vats`);
    assert.ok(fromSnap.length >= 5, `${fromSnap.length} workers started from a snapshot`);
    assert.ok(new Set(fromSnap.map(s => s.vatID)).size >= 3, 'several vats reloaded from a snapshot');
    assert.ok(r.spawns.some(s => s.metered), 'the metered dynamic vat ran with a computron limit (-l)');

    // every worker ended cleanly (the kernel closes them with 'q')
    r.exits.forEach((e, i) => assert.deepEqual(e, { code: 0, signal: null }, `worker #${i} ${r.spawns[i].vat}`));
    if (mode === 'plain') {
      assert.ok(r.reports.every(x => x === null));
    } else {
      const digest = profileDigest(mode);
      r.reports.forEach((rep, i) => {
        assert.ok(rep, `no report for worker #${i} ${r.spawns[i].vat}`);
        assert.equal(rep.cause, 'exited', JSON.stringify(rep));
        assert.equal(rep.class, 'clean', JSON.stringify(rep));
        assert.equal(rep.exitCode, 0);
        assert.equal(rep.profile, mode);
        assert.equal(rep.profileDigest, digest);
      });
    }
  });
}

for (const mode of MODES.slice(1)) {
  test(`plain and vatrun ${mode} committed identical kernel state`, { skip: !runs('baseline') }, t => {
    const plain = results.plain;
    const r = results[mode];
    assert.ok(plain, 'the plain run did not complete');
    assert.ok(r, `the ${mode} run did not complete`);
    if (mode === MODES[1]) {
      t.diagnostic(`activityhash phase1 ${plain.activityhash.phase1}`);
      t.diagnostic(`activityhash phase2 ${plain.activityhash.phase2}`);
      t.diagnostic(`transcript lengths ${JSON.stringify(plain.transcripts)}`);
      t.diagnostic(`${Object.keys(plain.snapshots).length} snapshots: ${JSON.stringify(plain.snapshots)}`);
    }
    assert.equal(r.activityhash.phase1, plain.activityhash.phase1, `${mode}: activityhash after phase 1`);
    assert.equal(r.activityhash.phase2, plain.activityhash.phase2, `${mode}: activityhash after phase 2`);
    assert.deepEqual(r.snapshots, plain.snapshots, `${mode}: heap snapshot hashes`);
    assert.deepEqual(r.transcripts, plain.transcripts, `${mode}: transcript lengths`);
    assert.deepEqual(r.data, plain.data, `${mode}: swing-store export data`);
    assert.deepEqual(
      r.spawns.map(s => s.args.join(' ')),
      plain.spawns.map(s => s.args.join(' ')),
      `${mode}: the kernel started the same workers, with the same arguments, in the same order`,
    );
  });
}

test('timings', t => {
  const rows = MODES.filter(m => results[m]).map(m => {
    const x = results[m].timings;
    return `${m.padEnd(6)} boot ${x.boot} ms, ${N} deliveries ${x.deliveries1} ms, phase 1 ${x.phase1} ms; restart ${x.restart} ms, ${M} deliveries ${x.deliveries2} ms, phase 2 ${x.phase2} ms; ${results[m].spawns.length} workers`;
  });
  for (const r of rows) t.diagnostic(r);
});
