package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTestCounterCountsTopLevelResultsOnly(t *testing.T) {
	var out strings.Builder
	c := &testCounter{w: &out}
	input := "=== RUN   TestA\n--- PASS: TestA (0.1s)\n    --- PASS: TestA/sub (0.0s)\n--- FAIL: TestB (1s)\r\nok  \tx\n--- PASS: TestC (0s)"
	// Write in odd-sized pieces, as a serial console delivers them.
	for i := 0; i < len(input); i += 7 {
		end := min(i+7, len(input))
		c.Write([]byte(input[i:end]))
	}
	c.flush()
	assert.Equal(t, 2, c.passed)
	assert.Equal(t, 1, c.failed)
	assert.Equal(t, input, out.String())
}
