package image

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/internal/testutil"
)

// With boot.initramfs_uncompressed the generator is asked for an
// uncompressed image, which the stage compresses itself: zstd, or gzip
// for a kernel configured without zstd; the device's command is the
// generator's own, and the cache keeps the two apart.
func TestInitramfsCompressedByTheBuild(t *testing.T) {
	cacheDir := filepath.Join(t.TempDir(), "cache")
	image := "boot/initramfs-linux-lts.img"
	built := testutil.Newc("bin", "etc/", "etc/hostid", "hooks/zfs", "init")
	run := func(edit func(st *build)) (*build, *transcriptRunner) {
		t.Helper()
		return initramfsRun(t, cacheDir, func(st *build) {
			st.cfg.Boot.InitramfsUncompressed = []string{"-z", "cat"}
			if edit != nil {
				edit(st)
			}
		}, stageBootloader)
	}
	generator := func(r *transcriptRunner) string {
		for _, l := range r.lines {
			if strings.HasPrefix(l, "chroot ") && strings.Contains(l, " mkinitcpio ") {
				return l
			}
		}
		return ""
	}

	st, r := run(nil)
	assert.Contains(t, generator(r), " mkinitcpio -z cat -k 6.12.1 ", "the arguments go after the command's name")
	data, err := os.ReadFile(filepath.Join(st.state.Root, image))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}), "zstd: no kernel configuration says otherwise")
	missing, err := boot.InitramfsMissing(bytes.NewReader(data), []string{"init", "etc/hostid"})
	require.NoError(t, err)
	assert.Empty(t, missing)
	fi, err := os.Stat(filepath.Join(st.state.Root, image))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "the generator's mode is kept")
	assert.NoFileExists(t, filepath.Join(st.state.Root, image+".paczfs-new"))
	env, err := os.ReadFile(filepath.Join(st.state.Root, "etc/paczfs/boot.env"))
	require.NoError(t, err)
	assert.NotContains(t, string(env), "-z cat", "the device builds with the generator's own compression")
	esp, err := st.state.ESP.ReadFile("/env/default/initramfs-linux-lts.img")
	require.NoError(t, err)
	assert.Equal(t, data, esp, "the ESP gets the compressed image")

	// A kernel configured without zstd gets gzip, and another cache entry.
	st, r = run(func(st *build) {
		writeTree(t, st.state.Root, map[string]string{"boot/config-6.12.1": "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n"}, 0o644)
		require.NoError(t, os.WriteFile(filepath.Join(st.state.Root, image), built, 0o600))
	})
	assert.NotEmpty(t, generator(r), "not the zstd entry from the cache")
	data, err = os.ReadFile(filepath.Join(st.state.Root, image))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(data, []byte{0x1f, 0x8b}), "gzip")
	entries, err := filepath.Glob(filepath.Join(cacheDir, "initramfs", "[0-9a-f]*"))
	require.NoError(t, err)
	assert.Len(t, entries, 2)

	// CONFIG_RD_ZSTD=y: zstd again, and the first entry is reused.
	st, r = run(func(st *build) {
		writeTree(t, st.state.Root, map[string]string{"boot/config-6.12.1": "CONFIG_RD_ZSTD=y\n"}, 0o644)
	})
	assert.Empty(t, generator(r))
	assert.True(t, st.res.InitramfsReused)
	data, err = os.ReadFile(filepath.Join(st.state.Root, image))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}))
}

func TestInitramfsUncompressedIsChecked(t *testing.T) {
	c := ArchDracutProfile()
	c.Boot.InitramfsUncompressed = []string{"--no-compress", ""}
	var fields []string
	for _, pr := range c.validate() {
		fields = append(fields, pr.Field)
	}
	assert.Contains(t, fields, "boot.initramfs_uncompressed[1]")
}
