//go:build !cgo

package pacman_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/pacman"
)

// Built with CGO_ENABLED=0 the package works, and says libalpm is missing.
func TestWithoutCgoInstallerReportsUnavailable(t *testing.T) {
	in, err := pacman.New(pacman.ArchConfig(false))
	require.NoError(t, err)
	_, err = in.Plan(t.Context(), []string{"base"})
	assert.ErrorIs(t, err, pacman.ErrUnavailable)
	_, err = in.Install(t.Context(), t.TempDir(), []string{"base"})
	assert.ErrorIs(t, err, pacman.ErrUnavailable)
	assert.Contains(t, err.Error(), "needs cgo and libalpm")
}
