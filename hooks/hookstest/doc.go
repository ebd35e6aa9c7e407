// Package hookstest provides test doubles for package hooks: a FakeRunner
// that records commands and answers them from a script. It is for unit tests
// of ordering, errors and rollback; it never runs anything.
package hookstest
