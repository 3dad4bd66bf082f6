// Unit tests of the adapter with an injected spawn: no vatrun binary needed.
import test from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { makeVatrunSpawn, vatrunStdio } from '../index.js';

/** A fake ChildProcess: stdio[i] is a PassThrough/Readable where the stdio entry is 'pipe'. */
function makeFake() {
  const calls = [];
  const children = [];
  const spawn = (file, args, options) => {
    calls.push({ file, args, options });
    const child = new EventEmitter();
    child.pid = 4242;
    child.stdio = options.stdio.map((s, i) => {
      if (s !== 'pipe') return null;
      if (i === 3) return new PassThrough();
      return new Readable({ read() {} });
    });
    children.push(child);
    return child;
  };
  return { spawn, calls, children };
}

/** Simulates vatrun writing the report and exiting. */
function finish(child, reportText, code = 0) {
  const fd = child.stdio.length - 1;
  if (reportText !== undefined) child.stdio[fd].push(reportText);
  child.stdio[fd].push(null);
  child.stdio[fd].resume();
  setImmediate(() => {
    child.emit('exit', code, null);
    child.emit('close', code, null);
  });
}

test('7. argument errors throw synchronously with a clear message', () => {
  assert.throws(() => makeVatrunSpawn({ profile: 'xsnap' }), /`vatrun` \(the path of the vatrun binary\) is required/);
  assert.throws(() => makeVatrunSpawn({ vatrun: '', profile: 'xsnap' }), /`vatrun`.*is required/);
  assert.throws(() => makeVatrunSpawn({ vatrun: '/bin/vatrun' }), /`profile`.*is required/);
  assert.throws(() => makeVatrunSpawn({ vatrun: '/bin/vatrun', profile: '' }), /`profile`.*is required/);
  assert.throws(() => makeVatrunSpawn(), /options object/);
  assert.throws(() => makeVatrunSpawn({ vatrun: '/bin/vatrun', profile: 'xsnap', args: '--no-cgroup' }), /`args` must be an array/);
  const { spawn, calls } = makeFake();
  const vspawn = makeVatrunSpawn({ vatrun: '/bin/vatrun', profile: 'xsnap', spawn });
  assert.throws(() => vspawn('w', [], { stdio: new Array(65).fill('ignore') }), /65 entries; at most 64/);
  assert.throws(() => vspawn('w', [], { stdio: 'bogus' }), /not one of pipe, ignore, inherit, overlapped/);
  assert.throws(() => vspawn('w', [], { shell: true }), /options\.shell is not supported/);
  assert.equal(calls.length, 0, 'nothing is spawned when the arguments are refused');
  const child = vspawn('w', [], { stdio: new Array(64).fill('ignore') });
  assert.equal(calls[0].args[calls[0].args.indexOf('--report-fd') + 1], '64');
  assert.equal(calls[0].options.stdio.length, 65);
  finish(child, '');
});

test('8. the report pipe is at max(5, stdio.length) and the caller entries keep their indexes', async () => {
  const { spawn, calls, children } = makeFake();
  const vspawn = makeVatrunSpawn({
    vatrun: '/opt/vatrun', profile: 'xsnap', args: ['--no-cgroup', '--log-level', 'info'], name: (cmd, args) => `v1:${cmd}:${args.length}`, spawn,
  });

  // stdio of length 3 -> report fd 5; 3 and 4 are 'ignore'
  vspawn('/w', ['a', 'b'], { stdio: ['ignore', 'inherit', 'pipe'], env: { X: '1' }, cwd: '/tmp' });
  assert.equal(calls[0].file, '/opt/vatrun');
  assert.deepEqual(calls[0].args, ['run', '--profile', 'xsnap', '--report-fd', '5', '--name', 'v1:/w:2',
    '--no-cgroup', '--log-level', 'info', '--', '/w', 'a', 'b']);
  assert.deepEqual(calls[0].options.stdio, ['ignore', 'inherit', 'pipe', 'ignore', 'ignore', 'pipe']);
  assert.deepEqual(calls[0].options.env, { X: '1' });
  assert.equal(calls[0].options.cwd, '/tmp');

  // xsnap's 9 entries -> report fd 9, entries 0..8 untouched
  const xsnapStdio = ['ignore', 7, 8, 'pipe', 'pipe', 'ignore', 'ignore', 'pipe', 'pipe'];
  vspawn('/w', [], { stdio: xsnapStdio });
  assert.equal(calls[1].args[4], '9');
  assert.deepEqual(calls[1].options.stdio, [...xsnapStdio, 'pipe']);
  assert.deepEqual(xsnapStdio, ['ignore', 7, 8, 'pipe', 'pipe', 'ignore', 'ignore', 'pipe', 'pipe'], 'the caller array is not mutated');

  // the string and default forms
  assert.deepEqual(vatrunStdio('inherit'), { stdio: ['inherit', 'inherit', 'inherit', 'ignore', 'ignore', 'pipe'], reportFd: 5 });
  assert.deepEqual(vatrunStdio(undefined), { stdio: ['pipe', 'pipe', 'pipe', 'ignore', 'ignore', 'pipe'], reportFd: 5 });
  assert.deepEqual(vatrunStdio(['ignore']), { stdio: ['ignore', undefined, undefined, 'ignore', 'ignore', 'pipe'], reportFd: 5 });
  assert.deepEqual(vatrunStdio(['ignore', 'ignore', 'ignore', 'pipe', 'pipe', 'pipe']).reportFd, 6);

  // spawn(command, options) form, and no --name when none is configured
  const plain = makeVatrunSpawn({ vatrun: '/opt/vatrun', profile: 'p.json', spawn });
  plain('/w', { stdio: 'ignore' });
  assert.deepEqual(calls[2].args, ['run', '--profile', 'p.json', '--report-fd', '5', '--', '/w']);
  for (const c of children) finish(c, '');
});

test('the phase follows fd 3 writes and fd 4 replies, split netstrings and queries included', async () => {
  const { spawn, children } = makeFake();
  const seen = [];
  const vspawn = makeVatrunSpawn({ vatrun: '/v', profile: 'xsnap', spawn, onReport: (r, c) => seen.push([r, c]) });
  const child = vspawn('/w', [], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
  assert.equal(child, children[0], 'the base ChildProcess itself is returned');
  const data = [];
  child.stdio[4].on('data', d => data.push(String(d)));
  child.stdio[3].resume();

  child.stdio[3].write('4:ping,');
  child.stdio[4].push(Buffer.from('3:.ok,')); // the first reply ends start-up
  child.stdio[3].write('4:ping,');
  // reply "?query" split across chunks: stays in-delivery; then ".ok" split inside the length
  child.stdio[4].push(Buffer.from('1'));
  child.stdio[4].push(Buffer.from('0:?quer'));
  child.stdio[4].push(Buffer.from('y1234,'));
  child.stdio[4].push(Buffer.from('1'));
  await new Promise(setImmediate);
  assert.deepEqual(data.join(''), '3:.ok,10:?query1234,1', 'the data flow is untouched');

  const report = JSON.stringify({ cause: 'exited', class: 'clean', exitCode: 0 });
  finish(child, report);
  const r = await child.vatrunReport;
  assert.equal(r.phase, 'in-delivery');
  assert.equal(seen.length, 1);
  assert.equal(seen[0][0], r);
  assert.equal(seen[0][1], child);

  // a complete '.' reply -> idle; '!' -> idle as well
  for (const [reply, want] of [['3:.ok,', 'idle'], ['4:!err,', 'idle'], ['2:?q,', 'in-delivery'], ['0:,', 'idle']]) {
    const c = vspawn('/w', [], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
    c.stdio[3].resume();
    c.stdio[3].write('4:ping,');
    c.stdio[4].push(Buffer.from('3:.ok,'));
    c.stdio[3].write('4:ping,');
    for (const ch of reply) c.stdio[4].push(Buffer.from(ch)); // one byte at a time
    c.stdio[4].resume();
    finish(c, report);
    assert.equal((await c.vatrunReport).phase, want, `reply ${reply}`);
  }

  // before any write: startup; after writes but before the first reply: still startup (xsnap's
  // kernel writes the lockdown bundle and isReady at once); a query does not end it either
  const c0 = vspawn('/w', [], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
  finish(c0, report);
  assert.equal((await c0.vatrunReport).phase, 'startup');
  const c1 = vspawn('/w', [], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
  c1.stdio[3].resume();
  c1.stdio[3].write('10:lockdown..,');
  c1.stdio[3].write('7:isReady,');
  c1.stdio[4].push(Buffer.from('2:?q,'));
  c1.stdio[4].resume();
  finish(c1, report);
  assert.equal((await c1.vatrunReport).phase, 'startup');
});

test("xsnap's quit command is no delivery: a worker that dies after it keeps the phase it was in", async () => {
  const { spawn } = makeFake();
  const vspawn = makeVatrunSpawn({ vatrun: '/v', profile: 'xsnap', spawn });
  const report = JSON.stringify({ cause: 'exited', class: 'clean', exitCode: 0 });
  const started = () => {
    const c = vspawn('/w', [], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
    c.stdio[3].resume();
    c.stdio[3].write('4:ping,');
    c.stdio[4].push(Buffer.from('3:.ok,')); // start-up done: idle
    c.stdio[4].resume();
    return c;
  };
  // A clean close: the kernel writes "1:q," (in one chunk, in pieces, or as Uint8Array).
  for (const chunks of [['1:q,'], ['1:', 'q', ','], ['1', ':q', ','], [new Uint8Array([0x31, 0x3a, 0x71, 0x2c])]]) {
    const c = started();
    for (const ch of chunks) c.stdio[3].write(ch);
    finish(c, report);
    assert.equal((await c.vatrunReport).phase, 'idle', `quit written as ${JSON.stringify(chunks)}`);
  }
  // end('1:q,') counts the same
  const e = started();
  e.stdio[3].end('1:q,');
  finish(e, report);
  assert.equal((await e.vatrunReport).phase, 'idle');
  // A delivery in flight when the quit is written stays in-delivery; so does a one-byte command
  // other than 'q', and a command starting with 'q' that is longer.
  for (const cmds of [['4:ping,', '1:q,'], ['1:x,'], ['2:qq,']]) {
    const c = started();
    for (const cmd of cmds) c.stdio[3].write(cmd);
    finish(c, report);
    assert.equal((await c.vatrunReport).phase, 'in-delivery', `commands ${cmds}`);
  }
  // A delivery after the quit (not xsnap, but possible) is a delivery again.
  const d = started();
  d.stdio[3].write('1:q,');
  d.stdio[3].write('4:ping,');
  finish(d, report);
  assert.equal((await d.vatrunReport).phase, 'in-delivery');
  // fd 3 that is not netstrings: any write is a delivery, as before.
  const b = started();
  b.stdio[3].write('hello');
  finish(b, report);
  assert.equal((await b.vatrunReport).phase, 'in-delivery');
});

test('a phase recorded by vatrun wins; no phase is invented when fds 3/4 are not pipes', async () => {
  const { spawn } = makeFake();
  const vspawn = makeVatrunSpawn({ vatrun: '/v', profile: 'xsnap', spawn });
  const a = vspawn('/w', [], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
  finish(a, JSON.stringify({ cause: 'exited', phase: 'idle' }));
  assert.equal((await a.vatrunReport).phase, 'idle');
  const b = vspawn('/w', [], { stdio: ['ignore', 'ignore', 'ignore', 'ignore', 'ignore'] });
  finish(b, JSON.stringify({ cause: 'exited' }));
  assert.equal('phase' in (await b.vatrunReport), false);
});

test('no report, a broken report or a failing pipe resolves null and calls no onReport', async () => {
  const { spawn } = makeFake();
  let calls = 0;
  const vspawn = makeVatrunSpawn({ vatrun: '/v', profile: 'xsnap', spawn, onReport: () => { calls += 1; } });
  const none = vspawn('/w');
  finish(none, undefined, 137);
  assert.equal(await none.vatrunReport, null);
  const partial = vspawn('/w');
  finish(partial, '{"cause":"exi');
  assert.equal(await partial.vatrunReport, null);
  const notObject = vspawn('/w');
  finish(notObject, '[1,2]');
  assert.equal(await notObject.vatrunReport, null);
  const failing = vspawn('/w');
  failing.stdio[5].destroy(new Error('EPIPE-ish'));
  assert.equal(await failing.vatrunReport, null);
  // the report arrives in pieces
  const pieces = vspawn('/w');
  const json = JSON.stringify({ cause: 'oom', class: 'resource', detail: 'é'.repeat(10) }) + '\n';
  const buf = Buffer.from(json);
  for (let i = 0; i < buf.length; i += 3) pieces.stdio[5].push(buf.subarray(i, i + 3)); // splits 'é' too
  finish(pieces);
  const r = await pieces.vatrunReport;
  assert.equal(r.cause, 'oom');
  assert.equal(r.detail, 'é'.repeat(10));
  assert.equal(calls, 1);
});
