// @vatrun/spawn: a drop-in for child_process.spawn that runs the command under `vatrun run`
// and hands back vatrun's JSON death report. Node.js standard library only.
import * as childProcess from 'node:child_process';

/** Highest number of caller stdio entries accepted (fds 0..63). */
const MAX_STDIO = 64;
/** The report fd is never below 5: 3 and 4 are the worker protocol pipes. */
const MIN_REPORT_FD = 5;
const STDIO_STRINGS = new Set(['pipe', 'ignore', 'inherit', 'overlapped']);

/**
 * Normalises a child_process `stdio` option to an array, keeping every caller entry at its index.
 * @param {unknown} stdio
 * @returns {unknown[]}
 */
function normaliseStdio(stdio) {
  if (stdio === undefined || stdio === null) return ['pipe', 'pipe', 'pipe'];
  if (typeof stdio === 'string') {
    if (!STDIO_STRINGS.has(stdio)) {
      throw new TypeError(`vatrun spawn: options.stdio ${JSON.stringify(stdio)} is not one of pipe, ignore, inherit, overlapped`);
    }
    return [stdio, stdio, stdio];
  }
  if (!Array.isArray(stdio)) {
    throw new TypeError('vatrun spawn: options.stdio must be a string or an array');
  }
  if (stdio.length > MAX_STDIO) {
    throw new RangeError(`vatrun spawn: options.stdio has ${stdio.length} entries; at most ${MAX_STDIO} are supported`);
  }
  return Array.from(stdio); // holes become undefined, which child_process treats as its default
}

/**
 * Builds the stdio array handed to child_process.spawn for vatrun: the caller's entries at their
 * indexes, 'ignore' up to the report fd (Node's default for 0..2 is kept), and 'pipe' at the report fd.
 * @param {unknown} stdio the caller's options.stdio
 * @returns {{ stdio: unknown[], reportFd: number }}
 */
export function vatrunStdio(stdio) {
  const out = normaliseStdio(stdio);
  const reportFd = Math.max(MIN_REPORT_FD, out.length);
  while (out.length < reportFd) out.push(out.length < 3 ? undefined : 'ignore');
  out[reportFd] = 'pipe';
  return { stdio: out, reportFd };
}

/**
 * Incremental netstring reader: calls onStart(length, firstByte) when a netstring's payload
 * begins (firstByte is '' for an empty payload). After bytes that are not netstrings it stops and
 * `broken` turns true.
 * @param {(length: number, first: string) => void} onStart
 */
function makeNetstringReader(onStart) {
  // State: 'len' (digits), 'first' (first payload byte), 'skip' (rest), 'comma'.
  let state = 'len';
  let len = 0;
  let digits = 0;
  let remaining = 0;
  let broken = false;
  /** @param {Uint8Array} bytes */
  const feed = bytes => {
    for (let i = 0; i < bytes.length && !broken; i += 1) {
      const b = bytes[i];
      switch (state) {
        case 'len':
          if (b >= 0x30 && b <= 0x39) {
            len = len * 10 + (b - 0x30);
            digits += 1;
            if (digits > 15) broken = true;
          } else if (b === 0x3a && digits > 0) {
            if (len === 0) {
              onStart(0, '');
              state = 'comma';
            } else {
              remaining = len;
              state = 'first';
            }
          } else {
            broken = true;
          }
          break;
        case 'first':
          onStart(len, String.fromCharCode(b));
          remaining -= 1;
          state = remaining > 0 ? 'skip' : 'comma';
          break;
        case 'skip': {
          const n = Math.min(remaining, bytes.length - i);
          remaining -= n;
          i += n - 1;
          if (remaining === 0) state = 'comma';
          break;
        }
        case 'comma':
          if (b !== 0x2c) broken = true;
          state = 'len';
          len = 0;
          digits = 0;
          break;
        default:
          broken = true;
      }
    }
  };
  return {
    feed,
    get broken() {
      return broken;
    },
  };
}

/**
 * @param {unknown} chunk
 * @param {unknown} encoding
 * @returns {Uint8Array|undefined}
 */
function chunkBytes(chunk, encoding) {
  if (typeof chunk === 'string') {
    return Buffer.from(chunk, typeof encoding === 'string' ? /** @type {BufferEncoding} */ (encoding) : 'utf8');
  }
  if (chunk instanceof Uint8Array) return chunk;
  return undefined;
}

/**
 * Passive tracker of the xsnap protocol phase: 'startup' until the worker's first complete reply
 * on fd 4 (the kernel's first commands are its start-up), then 'in-delivery' when a command
 * starts on fd 3 and 'idle' after a complete reply netstring whose payload does not start with
 * '?' (xsnap: '.' result, '!' error; '?' is a query from the worker, the delivery goes on).
 * xsnap's quit command (the one-byte payload 'q', sent by close()) is no delivery: the phase
 * stays what it was, so a worker that dies after it is reported in the phase it was in (idle
 * after a clean run). When fd 3 carries something other than netstrings, any write counts as a
 * delivery, as before.
 * It only observes: the caller's streams see exactly the data and calls they would see without it.
 */
function makePhaseTracker() {
  let phase = 'startup';
  const replies = makeNetstringReader((_len, first) => {
    if (first !== '?') phase = 'idle';
  });
  const commands = makeNetstringReader((len, first) => {
    // The kernel's first commands (xsnap: the lockdown bundle, isReady) are the worker's
    // start-up: it is 'startup' until the first reply.
    if (phase === 'startup') return;
    if (len === 1 && first === 'q') return; // xsnap's quit: not a delivery
    phase = 'in-delivery';
  });
  let failed = false; // never let tracking disturb the stream

  return {
    get phase() {
      return phase;
    },
    /** @param {unknown} chunk @param {unknown} encoding */
    wrote(chunk, encoding) {
      try {
        const bytes = failed ? undefined : chunkBytes(chunk, encoding);
        if (bytes) commands.feed(bytes);
        if (!bytes || commands.broken) {
          if (phase !== 'startup') phase = 'in-delivery';
        }
      } catch {
        failed = true;
        if (phase !== 'startup') phase = 'in-delivery';
      }
    },
    /** @param {unknown} chunk @param {unknown} encoding */
    received(chunk, encoding) {
      try {
        if (failed || chunk === null || chunk === undefined) return;
        const bytes = chunkBytes(chunk, encoding);
        if (bytes) replies.feed(bytes);
      } catch {
        failed = true;
      }
    },
  };
}

/**
 * Wraps the instance methods that carry protocol traffic, observing and delegating.
 * @param {import('node:child_process').ChildProcess} child
 * @param {ReturnType<typeof makePhaseTracker>} tracker
 * @returns {boolean} whether the phase can be tracked (fd 3 and fd 4 are both pipes)
 */
function trackPhase(child, tracker) {
  const toWorker = child.stdio?.[3];
  const fromWorker = child.stdio?.[4];
  if (!toWorker || !fromWorker || typeof toWorker.write !== 'function' || typeof fromWorker.push !== 'function') {
    return false;
  }
  const origWrite = toWorker.write;
  /** @type {any} */ (toWorker).write = function write(...args) {
    tracker.wrote(args[0], typeof args[1] === 'string' ? args[1] : undefined);
    return origWrite.apply(this, args);
  };
  const origEnd = toWorker.end;
  /** @type {any} */ (toWorker).end = function end(...args) {
    if (args.length > 0 && typeof args[0] !== 'function' && args[0] !== null && args[0] !== undefined) {
      tracker.wrote(args[0], typeof args[1] === 'string' ? args[1] : undefined);
    }
    return origEnd.apply(this, args);
  };
  const origPush = fromWorker.push;
  /** @type {any} */ (fromWorker).push = function push(chunk, encoding) {
    tracker.received(chunk, encoding);
    return origPush.call(this, chunk, encoding);
  };
  return true;
}

/**
 * @typedef {object} VatrunReport
 * vatrun's death report (see `vatrun report`); the fields used most:
 * @property {string} cause       e.g. 'exited', 'metering-fault', 'exit-code', 'oom-limit', 'abort', 'killed', 'stopped', 'setup-failed'
 * @property {string} class       'clean', 'deterministic', 'resource-exhaustion', 'external', 'sandbox-violation', 'launcher-error' or 'unknown'
 * @property {number} [exitCode]
 * @property {number} [signal]
 * @property {string} [signalName]
 * @property {string} [phase]     when vatrun did not record one: the adapter's view of the phase
 *                                ('startup', 'in-delivery' or 'idle'), tracked from fds 3 and 4
 * @property {string} [signalSource] who sent the fatal signal ('kernel: …', 'vatrun', 'outside the sandbox', …)
 * @property {Record<string, string>} [limitsEnforced] what held each limit (cgroup, rlimit, seccomp, none)
 * @property {string} profile
 * @property {string} profileDigest
 * @property {string} [workerDigest]    sha256 of the worker executable and what it loads
 * @property {string} [hostFactsDigest] sha256 of the host facts that can change an outcome
 */

/**
 * @typedef {import('node:child_process').ChildProcess & { vatrunReport: Promise<VatrunReport|null> }} VatrunChildProcess
 */

/**
 * @callback VatrunSpawn
 * Same signature as child_process.spawn; the command runs under `vatrun run`.
 * @param {string} command
 * @param {readonly string[]|import('node:child_process').SpawnOptions} [args]
 * @param {import('node:child_process').SpawnOptions} [options]
 * @returns {VatrunChildProcess}
 */

/**
 * Makes a child_process.spawn look-alike that runs every command inside vatrun's sandbox.
 *
 * @param {object} opts
 * @param {string} opts.vatrun                 path of the vatrun binary (required)
 * @param {string} opts.profile                profile name or file, e.g. 'xsnap' (required)
 * @param {readonly string[]} [opts.args]      extra `vatrun run` flags, e.g. ['--log-level', 'info']
 * @param {string|((command: string, args: readonly string[]) => string|undefined)} [opts.name]
 *   worker identity, passed as --name (a function is called per spawn; a falsy result omits the flag)
 * @param {(report: VatrunReport, child: VatrunChildProcess) => void} [opts.onReport]
 *   called once per worker death with the parsed report (never with null)
 * @param {typeof childProcess.spawn} [opts.spawn]   injectable base spawn (default child_process.spawn)
 * @returns {VatrunSpawn}
 */
export function makeVatrunSpawn(opts) {
  if (!opts || typeof opts !== 'object') {
    throw new TypeError('makeVatrunSpawn: an options object { vatrun, profile } is required');
  }
  const { vatrun, profile, args: extraArgs = [], name, onReport, spawn: baseSpawn = childProcess.spawn } = opts;
  if (typeof vatrun !== 'string' || vatrun === '') {
    throw new TypeError('makeVatrunSpawn: `vatrun` (the path of the vatrun binary) is required');
  }
  if (typeof profile !== 'string' || profile === '') {
    throw new TypeError("makeVatrunSpawn: `profile` (a profile name or file, e.g. 'xsnap') is required");
  }
  if (!Array.isArray(extraArgs) || !extraArgs.every(a => typeof a === 'string')) {
    throw new TypeError('makeVatrunSpawn: `args` must be an array of strings');
  }
  if (name !== undefined && typeof name !== 'string' && typeof name !== 'function') {
    throw new TypeError('makeVatrunSpawn: `name` must be a string or a function');
  }
  if (onReport !== undefined && typeof onReport !== 'function') {
    throw new TypeError('makeVatrunSpawn: `onReport` must be a function');
  }
  if (typeof baseSpawn !== 'function') {
    throw new TypeError('makeVatrunSpawn: `spawn` must be a function');
  }
  const fixedArgs = [...extraArgs];

  /** @type {VatrunSpawn} */
  function vatrunSpawn(command, args, options) {
    if (typeof command !== 'string' || command === '') {
      throw new TypeError('vatrun spawn: the command must be a non-empty string');
    }
    /** @type {readonly string[]} */
    let cmdArgs = [];
    if (Array.isArray(args)) {
      cmdArgs = args;
    } else if (args !== undefined && args !== null) {
      if (options !== undefined) throw new TypeError('vatrun spawn: args must be an array');
      options = /** @type {any} */ (args);
    }
    if (options !== undefined && options !== null && typeof options !== 'object') {
      throw new TypeError('vatrun spawn: options must be an object');
    }
    const callerOptions = options ?? {};
    if (callerOptions.shell) {
      throw new TypeError('vatrun spawn: options.shell is not supported (vatrun execs the worker directly)');
    }
    const { stdio, reportFd } = vatrunStdio(callerOptions.stdio);

    const nameValue = typeof name === 'function' ? name(command, cmdArgs) : name;
    const nameFlag = nameValue ? ['--name', String(nameValue)] : [];
    const argv = ['run', '--profile', profile, '--report-fd', String(reportFd), ...nameFlag, ...fixedArgs,
      '--', command, ...cmdArgs.map(String)];

    const child = /** @type {VatrunChildProcess} */ (baseSpawn(vatrun, argv, { ...callerOptions, stdio }));

    const tracker = makePhaseTracker();
    const tracking = trackPhase(child, tracker);

    let settled = false;
    /** @type {(r: VatrunReport|null) => void} */
    let resolveReport = () => {};
    child.vatrunReport = new Promise(resolve => {
      resolveReport = resolve;
    });

    /** @param {string|null} text */
    const settle = text => {
      if (settled) return;
      settled = true;
      /** @type {VatrunReport|null} */
      let report = null;
      if (text !== null && text.trim() !== '') {
        try {
          const parsed = JSON.parse(text);
          if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) report = parsed;
        } catch {
          report = null;
        }
      }
      if (report && tracking && !report.phase) report.phase = tracker.phase;
      resolveReport(report);
      if (report && onReport) onReport(report, child); // a throw here surfaces like a listener's throw
    };

    const reportStream = child.stdio?.[reportFd];
    if (reportStream && typeof reportStream.on === 'function') {
      let text = '';
      reportStream.setEncoding?.('utf8');
      reportStream.on('data', chunk => {
        text += chunk;
      });
      reportStream.on('end', () => settle(text));
      reportStream.on('close', () => settle(text));
      reportStream.on('error', () => settle(null));
    }
    // Fallback: vatrun could not be spawned (Node still emits 'close' after 'error'), or the stream
    // never ended on its own. No 'error' listener on the child: an unhandled spawn error must stay
    // unhandled, exactly as with child_process.spawn.
    child.once('close', () => settle(null));
    if (!reportStream) queueMicrotask(() => settle(null));

    return child;
  }
  return vatrunSpawn;
}

export default makeVatrunSpawn;
