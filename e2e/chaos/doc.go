// Package chaos repeats the fault experiments of issue 12 against the built
// coder binary: a real `coder server` on its embedded PostgreSQL, a separate
// `coder provisioner start` process running real terraform with the Coder
// provider, the local example template with its real agent, and real
// `coder ssh` and OpenSSH sessions. Each iteration creates, uses, stops,
// starts and deletes a workspace while one fault is injected at a
// seeded-random point: kill -9 of coderd, of the embedded PostgreSQL, of the
// provisioner daemon or of the agent. After each iteration it checks that the
// workspace converged, that no process or directory leaked and that no build
// log line was lost.
//
// The tests are behind the build tag "chaos": run them with `make chaos`
// (CHAOS_ITERATIONS, CHAOS_SEED). See docs/reliability.md.
package chaos
