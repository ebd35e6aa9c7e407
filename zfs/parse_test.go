package zfs

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// zfs prints a user property's value as it is, tabs and line breaks
// included: such output is an error, never a column shifted onto another
// property, a property forged on a line of its own, or a dataset that is
// not there.
func TestOutputAUserPropertyCouldForgeIsAnError(t *testing.T) {
	_, err := parseList([]byte("zroot/a\tfilesystem\t1\tgood\n"), []string{"org:version", "org:state"})
	require.NoError(t, err)
	for name, out := range map[string]string{
		"tab shifts columns":   "zroot/a\tfilesystem\t1\tx\tbad\n",
		"newline adds a row":   "zroot/a\tfilesystem\t1\tgood\nzroot/fake\tfilesystem\t9\tgood\textra\n",
		"newline leaves short": "zroot/a\tfilesystem\t1\tgo\nod\n",
	} {
		_, err := parseList([]byte(out), []string{"org:version", "org:state"})
		assert.ErrorIs(t, err, ErrOutput, name)
	}
	_, err = parseProperties([]byte("org:x\thello\tlocal\nmountpoint\t/evil\n"))
	assert.ErrorIs(t, err, ErrOutput, "a forged row lacks the source column")
	_, err = parseProperties([]byte("org:x\thello\tlocal\norg:x\tagain\tlocal\n"))
	assert.ErrorIs(t, err, ErrOutput, "a property twice")
	m, err := parseProperties([]byte("guid\t42\t-\n"))
	require.NoError(t, err)
	assert.Equal(t, Property{Value: "42", Source: "-"}, m["guid"])
}

// Names zfs would take for options, or read as a range or list, are
// refused before any command runs.
func TestNamesZFSWouldMisreadAreRefused(t *testing.T) {
	assert.ErrorIs(t, checkArgs("dataset", "-r"), ErrArgument)
	assert.ErrorIs(t, checkArgs("dataset", ""), ErrArgument)
	assert.ErrorIs(t, checkArgs("dataset", "zroot/a\nzroot/b"), ErrArgument)
	assert.NoError(t, checkArgs("dataset", "zroot/a b", "zroot/x@s"))
	assert.ErrorIs(t, checkDestroy("zroot/a@first%last"), ErrArgument)
	assert.ErrorIs(t, checkDestroy("zroot/a@x,y"), ErrArgument)
	assert.NoError(t, checkDestroy("zroot/a@x"))
	assert.ErrorIs(t, checkSend("zroot/a@x", "-i"), ErrArgument)
}
