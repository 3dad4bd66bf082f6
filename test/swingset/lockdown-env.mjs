// Imported before @endo/init: SES's default error trapping on Node calls process.exit() on any
// uncaught exception, which would end the whole test file at the first worker failure (e.g. a
// worker that cannot write its snapshot makes @agoric/xsnap throw from an event handler). With
// 'none', node:test's own handler reports the exception as a failure of the test that was running.
process.env.LOCKDOWN_ERROR_TRAPPING ??= 'none';
