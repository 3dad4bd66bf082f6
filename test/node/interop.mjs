// Interop test: a Node.js kernel spawns its worker through vatrun exactly as it spawns xsnap today
// (stdio ['ignore', out, err, 'pipe', 'pipe']) plus one more pipe, fd 5, for vatrun's death report.
// It talks netstrings on fds 3/4, ends the worker in several ways and checks, for each, what the
// kernel sees: the 'exit' event's code/signal, the end of fd 4, and the JSON report on fd 5.
//
// Usage: node interop.mjs VATRUN TESTWORKER [PROFILE]   (or env VATRUN_BIN, VATRUN_TESTWORKER,
// VATRUN_PROFILE). Node standard library only. Prints one TAP line per case; exit 1 on failure.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const bin = process.argv[2] || process.env.VATRUN_BIN;
const worker = process.argv[3] || process.env.VATRUN_TESTWORKER;
const profile = process.argv[4] || process.env.VATRUN_PROFILE || 'xsnap';
if (!bin || !worker) {
  console.error('usage: node interop.mjs VATRUN TESTWORKER [PROFILE]');
  process.exit(2);
}
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vatrun-node-'));

function netstring(s) {
  return `${Buffer.byteLength(s)}:${s},`;
}

// Parses netstrings out of a byte stream; calls onMessage for each complete one.
function netstringReader(onMessage) {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const colon = buf.indexOf(0x3a);
      if (colon < 0) return;
      const len = Number(buf.subarray(0, colon).toString());
      if (buf.length < colon + 1 + len + 1) return;
      onMessage(buf.subarray(colon + 1, colon + 1 + len).toString());
      buf = buf.subarray(colon + 1 + len + 1);
    }
  };
}

// Starts `vatrun run` the way a kernel would and returns a handle on the three pipes.
function start(name, workerArgs = []) {
  const logPath = path.join(logDir, `${name.replace(/\W+/g, '-')}.log`);
  const out = fs.openSync(logPath, 'a');
  const err = fs.openSync(logPath, 'a');
  const args = ['run', '--profile', profile, '--report-fd', '5', '--name', name, '--kill-grace', '2s',
    '--', worker, ...workerArgs];
  const child = spawn(bin, args, { stdio: ['ignore', out, err, 'pipe', 'pipe', 'pipe'] });
  fs.closeSync(out);
  fs.closeSync(err);
  const [, , , toWorker, fromWorker, reportPipe] = child.stdio;
  const replies = [];
  let waiter = null;
  fromWorker.on('data', netstringReader((m) => {
    replies.push(m);
    if (waiter) waiter();
  }));
  let fd4IsClosed = false;
  const fd4Closed = new Promise((resolve) => fromWorker.on('close', () => {
    fd4IsClosed = true;
    if (waiter) waiter();
    resolve(true);
  }));
  let reportText = '';
  reportPipe.setEncoding('utf8');
  reportPipe.on('data', (d) => { reportText += d; });
  const reportDone = new Promise((resolve) => reportPipe.on('close', () => resolve(reportText)));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  toWorker.on('error', () => {}); // EPIPE after the worker died is expected in the kill cases
  return {
    child, logPath,
    send(...msgs) { for (const m of msgs) toWorker.write(netstring(m)); },
    closeCommands() { toWorker.end(); },
    // Resolves with the next reply (fd 4), or rejects after ms.
    async reply(ms = 5000) {
      const deadline = Date.now() + ms;
      while (replies.length === 0) {
        if (fd4IsClosed) throw new Error(`fd 4 closed before a reply (vatrun exit code ${child.exitCode})`);
        if (Date.now() > deadline) throw new Error('no reply on fd 4 within ' + ms + ' ms');
        await new Promise((resolve) => { waiter = resolve; setTimeout(resolve, 50); });
      }
      return replies.shift();
    },
    // Waits for vatrun's exit, the end of fd 4 and the report on fd 5.
    async finish(ms = 10000) {
      const timeout = new Promise((_, reject) => setTimeout(
        () => reject(new Error(`vatrun did not exit, close fd 4 and write its report within ${ms} ms`)), ms).unref());
      const [exit, fd4, text] = await Promise.race([Promise.all([exited, fd4Closed, reportDone]), timeout]);
      let report = null;
      try {
        report = JSON.parse(text);
      } catch (e) {
        throw new Error(`report on fd 5 is not one JSON object (${e.message}): ${JSON.stringify(text)}`);
      }
      return { ...exit, fd4Closed: fd4, report };
    },
  };
}

// Host pids of every descendant of pid (from /proc/*/stat).
function descendants(pid) {
  const parent = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(fields[1]));
    } catch { /* exited meanwhile */ }
  }
  const out = [];
  const walk = (p) => {
    for (const [c, pp] of parent) if (pp === p) { out.push(c); walk(c); }
  };
  walk(pid);
  return out;
}

// The worker is the descendant of vatrun whose argv[0] is the worker's path (vatrun's init stage
// sits in between).
function findWorker(vatrunPid) {
  for (const p of descendants(vatrunPid)) {
    try {
      const argv0 = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')[0];
      if (argv0 === worker) return p;
    } catch { /* exited meanwhile */ }
  }
  throw new Error(`no worker process (${worker}) under vatrun pid ${vatrunPid}: ${descendants(vatrunPid)}`);
}

function expect(res, want) {
  const problems = [];
  const r = res.report || {};
  // vatrun ends as the worker did: its exit code, or death by the same signal (as plain spawn).
  if (res.code !== (want.code ?? null)) problems.push(`exit code ${res.code}, want ${want.code ?? null}`);
  if (res.signal !== (want.exitSignal ?? null)) problems.push(`exit signal ${res.signal}, want ${want.exitSignal ?? null}`);
  if (!res.fd4Closed) problems.push('fd 4 did not close');
  if (r.cause !== want.cause) problems.push(`report cause ${r.cause}, want ${want.cause}`);
  if (r.class !== want.class) problems.push(`report class ${r.class}, want ${want.class}`);
  if ('exitCode' in want && r.exitCode !== want.exitCode) problems.push(`report exitCode ${r.exitCode}, want ${want.exitCode}`);
  if ('signal' in want && r.signal !== want.signal) problems.push(`report signal ${r.signal}, want ${want.signal}`);
  if ('killedBy' in want && r.killedBy !== want.killedBy) problems.push(`report killedBy ${r.killedBy}, want ${want.killedBy}`);
  if (!/^sha256:[0-9a-f]{64}$/.test(r.profileDigest || '')) problems.push(`report profileDigest ${r.profileDigest}`);
  // vatrun's wait status is what the report says the worker's status was.
  if (r.exitCode !== undefined && r.exitCode !== res.code) problems.push(`exit code ${res.code} but the report says ${r.exitCode}`);
  if (r.signalName !== undefined && r.signalName !== res.signal) problems.push(`exit signal ${res.signal} but the report says ${r.signalName}`);
  if (problems.length) throw new Error(problems.join('; ') + '\nreport: ' + JSON.stringify(r));
}

async function pingAndAdd(w) {
  w.send('ping', 'add:40', 'add:2');
  const got = [await w.reply(), await w.reply(), await w.reply()];
  if (got.join('|') !== 'pong|sum:40|sum:42') throw new Error(`replies ${JSON.stringify(got)}, want pong, sum:40, sum:42`);
}

const cases = [
  ['ping, add, clean EOF on fd 3', async (w) => {
    await pingAndAdd(w);
    w.closeCommands();
    expect(await w.finish(), { code: 0, cause: 'exited', class: 'clean', exitCode: 0, killedBy: 'nobody' });
  }],
  ['exit:17 is a metering fault', async (w) => {
    await pingAndAdd(w);
    w.send('exit:17'); // (exit 11 without a cgroup is metering-fault/unknown: docs/limits.md)
    expect(await w.finish(), { code: 17, cause: 'metering-fault', class: 'deterministic', exitCode: 17 });
  }],
  ['abort is death by SIGABRT', async (w) => {
    w.send('ping');
    await w.reply();
    w.send('abort');
    expect(await w.finish(), { exitSignal: 'SIGABRT', cause: 'abort', class: 'resource-exhaustion', signal: 6 });
  }],
  ['SIGTERM to vatrun is forwarded: stopped', async (w) => {
    w.send('ping');
    await w.reply();
    w.child.kill('SIGTERM');
    expect(await w.finish(), { exitSignal: 'SIGTERM', cause: 'stopped', class: 'external', signal: 15, killedBy: 'vatrun' });
  }],
  ['SIGKILL to the worker (found in the process tree) is killed', async (w) => {
    w.send('ping');
    await w.reply();
    const pid = findWorker(w.child.pid);
    process.kill(pid, 'SIGKILL');
    expect(await w.finish(), { exitSignal: 'SIGKILL', cause: 'killed', class: 'external', signal: 9, killedBy: 'nobody' });
  }],
];

let failed = 0;
console.log(`1..${cases.length}`);
for (const [i, [name, fn]] of cases.entries()) {
  const w = start(name);
  try {
    await fn(w);
    console.log(`ok ${i + 1} - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok ${i + 1} - ${name}`);
    for (const line of String(e.stack || e).split('\n')) console.log(`  # ${line}`);
    const log = fs.existsSync(w.logPath) ? fs.readFileSync(w.logPath, 'utf8') : '';
    for (const line of log.trimEnd().split('\n')) console.log(`  # vatrun: ${line}`);
    w.child.kill('SIGKILL');
  }
}
fs.rmSync(logDir, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
