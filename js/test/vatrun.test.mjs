// Integration tests: the adapter driving the real vatrun binary and the C test worker
// (test/worker/worker.c). Env: VATRUN_BIN (default ../bin/vatrun), VATRUN_TESTWORKER
// (default ../bin/vatrun-testworker), both resolved from js/. Missing binaries skip the tests.
// cgroups are never used here (--no-cgroup).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeVatrunSpawn } from '../index.js';

const jsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const VATRUN = path.resolve(jsDir, process.env.VATRUN_BIN || '../bin/vatrun');
const WORKER = path.resolve(jsDir, process.env.VATRUN_TESTWORKER || '../bin/vatrun-testworker');
const XSNAP_STDIO = ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'ignore', 'ignore', 'pipe', 'pipe'];
const TIMEOUT = 30_000;

function missing() {
  for (const [what, p] of [['VATRUN_BIN', VATRUN], ['VATRUN_TESTWORKER', WORKER]]) {
    try {
      fs.accessSync(p, fs.constants.X_OK);
    } catch {
      return `needs ${what}: ${p} is not an executable (cd .. && make bin/vatrun bin/vatrun-testworker)`;
    }
  }
  return null;
}

const netstring = s => `${Buffer.byteLength(s)}:${s},`;

/**
 * Starts the test worker through the adapter and returns helpers: send a command, await the next
 * reply, await the exit event and the report. stdout/stderr (when piped) are collected for messages.
 */
function start(t, { profile = 'xsnap', stdio = XSNAP_STDIO, workerArgs = [], onReport } = {}) {
  const reports = [];
  const spawn = makeVatrunSpawn({
    vatrun: VATRUN, profile, args: ['--no-cgroup', '--kill-grace', '2s'], name: 'js-test',
    onReport: (r, c) => {
      reports.push([r, c]);
      onReport?.(r, c);
    },
  });
  const child = spawn(WORKER, workerArgs, { stdio });
  let logs = '';
  for (const i of [1, 2]) child.stdio[i]?.on('data', d => { logs += d; });
  const exited = new Promise(resolve => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  // netstring replies from fd 4, read with an async iterator as xsnap does
  const replies = [];
  const waiters = [];
  let buf = Buffer.alloc(0);
  const pump = (async () => {
    if (!child.stdio[4]) return;
    for await (const chunk of child.stdio[4]) {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const colon = buf.indexOf(0x3a);
        if (colon < 0) break;
        const len = Number(buf.subarray(0, colon).toString());
        if (buf.length < colon + 2 + len) break;
        const msg = buf.subarray(colon + 1, colon + 1 + len).toString();
        buf = buf.subarray(colon + 2 + len);
        if (waiters.length) waiters.shift()(msg);
        else replies.push(msg);
      }
    }
  })().catch(() => {});
  const reply = () => (replies.length ? Promise.resolve(replies.shift()) : new Promise(r => waiters.push(r)));
  const send = cmd => child.stdio[3].write(netstring(cmd));
  return { child, exited, send, reply, reports, pump, logs: () => logs };
}

/** Pids of the children of every thread of pid. */
function childrenOf(pid) {
  const out = [];
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    const text = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
    if (text) out.push(...text.split(/\s+/).map(Number));
  }
  return out;
}

const skip = missing();

test('1. ping/pong with xsnap stdio; exited 0, phase idle, report via vatrunReport and onReport', { timeout: TIMEOUT }, async t => {
  if (skip) return t.skip(skip);
  const w = start(t);
  w.send('ping');
  assert.equal(await w.reply(), 'pong');
  w.child.stdio[3].end(); // EOF on fd 3 between netstrings: the worker exits 0
  const { code, signal } = await w.exited;
  const report = await w.child.vatrunReport;
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, w.logs());
  assert.ok(report, 'a report');
  assert.equal(report.cause, 'exited');
  assert.equal(report.exitCode, 0);
  assert.equal(report.phase, 'idle');
  assert.equal(report.profile, 'xsnap');
  assert.equal(w.reports.length, 1, 'onReport called once');
  assert.equal(w.reports[0][0], report, 'onReport gets the same object');
  assert.equal(w.reports[0][1], w.child);
});

test("1b. xsnap's quit after a reply: the worker exits 0 in phase idle, not in-delivery", { timeout: TIMEOUT }, async t => {
  if (skip) return t.skip(skip);
  const w = start(t);
  w.send('ping');
  assert.equal(await w.reply(), 'pong');
  w.send('q'); // the test worker exits 0 on 'q', as xsnap does on its quit command
  const { code, signal } = await w.exited;
  const report = await w.child.vatrunReport;
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, w.logs());
  assert.equal(report?.cause, 'exited', JSON.stringify(report));
  assert.equal(report.phase, 'idle');
});

test('2. exit:17 -> exit code 17, metering-fault in-delivery', { timeout: TIMEOUT }, async t => {
  if (skip) return t.skip(skip);
  const w = start(t);
  w.send('ping');
  assert.equal(await w.reply(), 'pong');
  w.send('exit:17');
  const { code, signal } = await w.exited;
  const report = await w.child.vatrunReport;
  assert.deepEqual({ code, signal }, { code: 17, signal: null }, w.logs());
  assert.equal(report?.cause, 'metering-fault', JSON.stringify(report));
  assert.equal(report.exitCode, 17);
  assert.equal(report.phase, 'in-delivery');
  assert.equal(w.reports.length, 1);
});

test('3. abort -> exit (null, SIGABRT), cause abort', { timeout: TIMEOUT }, async t => {
  if (skip) return t.skip(skip);
  const w = start(t);
  w.send('abort'); // the first command: the worker never replied, so it died in start-up
  const { code, signal } = await w.exited;
  const report = await w.child.vatrunReport;
  assert.equal(report?.cause, 'abort', JSON.stringify(report));
  assert.equal(report.signalName, 'SIGABRT');
  assert.equal(report.phase, 'startup');
  assert.deepEqual({ code, signal }, { code: null, signal: 'SIGABRT' }, `vatrun should die by the worker's signal\n${w.logs()}`);
});

test('4. SIGKILL of the worker itself -> exit (null, SIGKILL), cause killed, class external', { timeout: TIMEOUT }, async t => {
  if (skip) return t.skip(skip);
  const w = start(t, { profile: 'solo' });
  w.send('probe:pid');
  assert.equal(await w.reply(), 'pid:2', 'the worker is pid 2 of its pid namespace');
  const init = childrenOf(w.child.pid);
  assert.equal(init.length, 1, `vatrun has exactly one child, the init stage: ${init}`);
  const workers = childrenOf(init[0]);
  assert.equal(workers.length, 1, `the init stage has exactly one child, the worker: ${workers}`);
  const workerPid = workers[0];
  assert.match(fs.readFileSync(`/proc/${workerPid}/cmdline`, 'utf8'), /vatrun-testworker/);
  process.kill(workerPid, 'SIGKILL');
  const { code, signal } = await w.exited;
  const report = await w.child.vatrunReport;
  assert.equal(report?.cause, 'killed', JSON.stringify(report));
  assert.equal(report.class, 'external');
  assert.equal(report.signalName, 'SIGKILL');
  assert.equal(report.profile, 'solo');
  assert.equal(report.phase, 'idle');
  assert.deepEqual({ code, signal }, { code: null, signal: 'SIGKILL' }, `vatrun should die by the worker's signal\n${w.logs()}`);
});

test('5. fds 3,4,7,8 reach the worker at their numbers; 5, 6 and the report fd do not', { timeout: TIMEOUT }, async t => {
  if (skip) return t.skip(skip);
  const stdio = ['ignore', 'ignore', 'ignore', 'pipe', 'pipe', 'ignore', 'ignore', 'pipe', 'pipe'];

  // (a) the real xsnap profile, seen from the host: /proc/<worker>/fd
  const w = start(t, { stdio });
  w.send('ping');
  assert.equal(await w.reply(), 'pong');
  const [init] = childrenOf(w.child.pid);
  const [workerPid] = childrenOf(init);
  const hostView = fs.readdirSync(`/proc/${workerPid}/fd`).map(Number).sort((a, b) => a - b);
  assert.deepEqual(hostView, [0, 1, 2, 3, 4, 7, 8], `open fds of the worker (pid ${workerPid}) under xsnap`);
  w.child.stdio[3].end();
  assert.deepEqual(await w.exited, { code: 0, signal: null });
  assert.equal((await w.child.vatrunReport)?.cause, 'exited');

  // (b) the worker's own probe:fds. It lists /proc/self/fd, and the xsnap allowlist has no
  // getdents64 (EPERM, so the list comes back empty): run it under xsnap + getdents64, a profile
  // file derived from `vatrun profile show xsnap` (same fds, limits and namespaces).
  const shown = JSON.parse(execFileSync(VATRUN, ['profile', 'show', 'xsnap'], { encoding: 'utf8' }));
  const profile = shown.profile ?? shown;
  profile.name = 'xsnap-getdents';
  profile.seccomp.syscalls.push({ action: 'SCMP_ACT_ALLOW', names: ['getdents64'] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vatrun-js-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'xsnap-getdents.json');
  fs.writeFileSync(file, JSON.stringify(profile));
  const p = start(t, { stdio, profile: file });
  p.send('probe:fds');
  assert.equal(await p.reply(), 'fds:0,1,2,3,4,7,8');
  p.child.stdio[3].end();
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  const report = await p.child.vatrunReport;
  assert.equal(report?.cause, 'exited');
  assert.equal(report.phase, 'idle');
});

test('6. kill() on fd 4 EOF right after the reply that preceded exit:17 never makes the report "stopped" (50 runs)', { timeout: 120_000 }, async t => {
  if (skip) return t.skip(skip);
  const causes = {};
  const exits = {};
  for (let i = 0; i < 50; i += 1) {
    const w = start(t, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', 'ignore', 'ignore', 'pipe', 'pipe'] });
    // one write, two commands: the worker replies to ping, then exits 17
    w.child.stdio[3].write(netstring('ping') + netstring('exit:17'));
    assert.equal(await w.reply(), 'pong');
    // xsnap's runToIdle: the reader ends at EOF (for await closes our end of fd 4), then kill()
    await w.pump;
    assert.equal(w.child.stdio[4].destroyed, true);
    w.child.kill();
    const { code, signal } = await w.exited;
    const report = await w.child.vatrunReport;
    const cause = report?.cause ?? 'no report';
    causes[cause] = (causes[cause] ?? 0) + 1;
    exits[`${code}/${signal}`] = (exits[`${code}/${signal}`] ?? 0) + 1;
    if (cause !== 'metering-fault') {
      assert.fail(`run ${i}: cause ${cause} (exit ${code}/${signal}), want metering-fault\n${JSON.stringify(report)}\n${w.logs()}`);
    }
  }
  assert.deepEqual(causes, { 'metering-fault': 50 });
  assert.deepEqual(exits, { '17/null': 50 });
});

test('8. real vatrun: stdio of length 3 puts the report on fd 5', { timeout: TIMEOUT }, async t => {
  if (skip) return t.skip(skip);
  const w = start(t, { stdio: ['ignore', 'pipe', 'pipe'], workerArgs: ['--exit-at-start', '3'] });
  assert.equal(w.child.stdio.length, 6);
  assert.equal(w.child.stdio[3], null);
  assert.equal(w.child.stdio[4], null);
  assert.ok(w.child.stdio[5], 'the report pipe');
  assert.deepEqual(await w.exited, { code: 3, signal: null });
  const report = await w.child.vatrunReport;
  assert.equal(report?.exitCode, 3, JSON.stringify(report));
  assert.equal('phase' in report, false, 'no phase is invented when fds 3/4 are not pipes');
});
