package alpm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSigLevel(t *testing.T) {
	cases := map[string]int{
		"Required DatabaseOptional":     SigPackage | SigDatabase | SigDatabaseOptional,
		"Never":                         SigPackageOptional | SigDatabaseOptional, // as pacman: the optional bits left mean nothing without the check bit
		"Optional TrustAll":             SigPackage | SigPackageOptional | SigPackageMarginalOK | SigPackageUnknownOK | SigDatabase | SigDatabaseOptional | SigDatabaseMarginalOK | SigDatabaseUnknownOK,
		"PackageRequired DatabaseNever": SigPackage | SigDatabaseOptional,
		"Required TrustedOnly":          SigPackage | SigDatabase,
		"":                              DefaultSigLevel,
	}
	for in, want := range cases {
		got, err := ParseSigLevel(in, DefaultSigLevel)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := ParseSigLevel("Required Sometimes", DefaultSigLevel)
	assert.ErrorContains(t, err, `unknown word "Sometimes"`)
}
