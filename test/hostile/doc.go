// Package hostile holds host tests of vatrun under hostile input and faults: launch storms,
// vatrun SIGKILLed at every stage, report channel faults, setup faults that must fail closed, a
// consensus profile that must refuse to degrade, and a worker that must not escape or observe.
// Everything is in the _test files; see docs/cli.md "Exit codes" for what each fault must produce.
package hostile
