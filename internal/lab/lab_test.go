package lab

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRecipeIsStableAndShort(t *testing.T) {
	assert.Equal(t, Recipe(), Recipe())
	assert.Len(t, Recipe(), 16)
}

func TestParseMirror(t *testing.T) {
	deb822 := "Types: deb\nURIs: http://archive.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n" +
		"Types: deb\n# comment: x\nURIs: http://archive.example/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\n"
	assert.Equal(t, "http://archive.example/debian", parseMirror([]string{deb822}, ""))
	list := "deb http://archive.example/debian-security bookworm-security main\ndeb http://mirror.example/debian bookworm main\n"
	assert.Equal(t, "http://mirror.example/debian", parseMirror(nil, list))
	assert.Equal(t, "", parseMirror([]string{"Types: deb\nURIs: http://x/y\nComponents: non-free\n"}, ""))
}
