package image

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLocaleNeeds(t *testing.T) {
	for line, want := range map[string][2]string{
		"en_US.UTF-8 UTF-8":       {"usr/share/i18n/locales/en_US", "usr/share/i18n/charmaps/UTF-8"},
		"de_DE@euro ISO-8859-15":  {"usr/share/i18n/locales/de_DE@euro", "usr/share/i18n/charmaps/ISO-8859-15"},
		"sr_RS.UTF-8@latin UTF-8": {"usr/share/i18n/locales/sr_RS@latin", "usr/share/i18n/charmaps/UTF-8"},
		"C.UTF-8 UTF-8":           {"usr/share/i18n/locales/C", "usr/share/i18n/charmaps/UTF-8"},
	} {
		src, cm, ok := localeNeeds(line)
		require.True(t, ok, line)
		assert.Equal(t, want, [2]string{src, cm}, line)
	}
	_, _, ok := localeNeeds("en_US.UTF-8")
	assert.False(t, ok)
}

func TestMissingLocalesNamesTheFieldAndWhatIsMissing(t *testing.T) {
	shipped := map[string]bool{
		"usr/share/i18n/locales/en_US":     true,
		"usr/share/i18n/locales/de_DE":     true,
		"usr/share/i18n/charmaps/UTF-8.gz": true,
	}
	has := func(p string) bool { return shipped[p] }
	assert.Empty(t, missingLocales([]string{"en_US.UTF-8 UTF-8", "de_DE.UTF-8 UTF-8"}, has))
	p := missingLocales([]string{"en_US.UTF-8 UTF-8", "xx_YY.UTF-8 UTF-8", "de_DE KOI8-Z"}, has)
	require.Len(t, p, 2)
	assert.Equal(t, "system.locales[1]", p[0].Field)
	assert.Contains(t, p[0].Problem, "/usr/share/i18n/locales/xx_YY")
	assert.Contains(t, p[0].Fix, "SUPPORTED")
	assert.Equal(t, "system.locales[2]", p[1].Field)
	assert.Contains(t, p[1].Problem, "/usr/share/i18n/charmaps/KOI8-Z(.gz)")
}
