// Package testutil holds helpers shared by paczfs's tests.
package testutil
