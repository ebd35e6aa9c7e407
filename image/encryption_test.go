package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/internal/testutil"
	"github.com/paczfs/paczfs/zfs"
)

func keyFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "home.key")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func encryptedConfig(t *testing.T) Config {
	c := ArchProfile()
	c.ImageFile = "/var/tmp/x.img"
	c.Manage.Tool = testutil.StaticTool(t)
	c.Encryption = Encryption{Datasets: []string{"data/home"}, KeyFile: keyFile(t, "correct horse battery\n")}
	return c
}

// Every wrong encryption setting is named, with its fix, before anything
// is written.
func TestEncryptionValidation(t *testing.T) {
	good := encryptedConfig(t)
	assert.Empty(t, good.validate())
	root := encryptedConfig(t)
	root.Encryption = Encryption{Root: true, KeyFile: root.Encryption.KeyFile}
	root.MinirootClone = ""
	assert.Empty(t, root.validate(), "the root alone")
	for name, tc := range map[string]struct {
		change func(*Config)
		field  string
		want   string
	}{
		"not in the layout":       {func(c *Config) { c.Encryption.Datasets = []string{"data/music"} }, "encryption.datasets[0]", "not in the layout"},
		"a boot environment":      {func(c *Config) { c.Encryption.Datasets = []string{"system/default"} }, "encryption.datasets[0]", "holds boot environments"},
		"all of them":             {func(c *Config) { c.Encryption.Datasets = []string{"system"} }, "encryption.datasets[0]", "holds boot environments"},
		"the miniroot's parent":   {func(c *Config) { c.Encryption.Datasets = []string{"data/machines"} }, "encryption.datasets[0]", "miniroot"},
		"nested":                  {func(c *Config) { c.MinirootClone = ""; c.Encryption.Datasets = []string{"data", "data/home"} }, "encryption.datasets[1]", `"data/home" is inside "data"`},
		"repeated":                {func(c *Config) { c.Encryption.Datasets = []string{"data/home", "data/home"} }, "encryption.datasets[1]", "repeated"},
		"no key file":             {func(c *Config) { c.Encryption.KeyFile = "" }, "encryption.key_file", "empty"},
		"a missing key file":      {func(c *Config) { c.Encryption.KeyFile = "/nonexistent/key" }, "encryption.key_file", "no such file"},
		"a short passphrase":      {func(c *Config) { c.Encryption.KeyFile = keyFile(t, "short\n") }, "encryption.key_file", "5 bytes, want 8 to 512"},
		"two lines":               {func(c *Config) { c.Encryption.KeyFile = keyFile(t, "first line\nsecond line\n") }, "encryption.key_file", "more than one line"},
		"a key for nothing":       {func(c *Config) { c.Encryption.Datasets = nil }, "encryption.datasets", "no dataset"},
		"the root and a miniroot": {func(c *Config) { c.Encryption.Root = true }, "miniroot_clone", "clone of the encrypted root"},
		"the root with no parent": {func(c *Config) {
			c.MinirootClone = ""
			c.Encryption.Root = true
			c.Datasets = slices.DeleteFunc(slices.Clone(c.Datasets), func(d zfs.DatasetSpec) bool { return d.Name == "system" })
		}, "encryption.root", `"system" is not in the layout`},
	} {
		c := encryptedConfig(t)
		tc.change(&c)
		probs := c.validate()
		require.Len(t, probs, 1, "%s: %v", name, probs)
		assert.Equal(t, tc.field, probs[0].Field, name)
		assert.Contains(t, probs[0].Error(), tc.want, name)
	}
}

// The encrypted dataset is created as an encryption root keyed by the
// build host's file, then pointed at the image's own key (or a prompt);
// the image gets the key (0400 in a 0700 directory), the script and the
// unit, which is enabled and required by the health check.
func TestEncryptedDatasetsAndTheirKey(t *testing.T) {
	for _, prompt := range []bool{false, true} {
		cfg := encryptedConfig(t)
		cfg.Encryption.Prompt = prompt
		cfg.Pacman.KeyringDir = t.TempDir()
		root := fakeTarget(t)
		fake := &hookstest.FakeRunner{}
		st := hostBuild(t, cfg, root, fake)
		st.state.Pool = "p"
		require.NoError(t, st.createDatasets(context.Background(), cfg.Datasets))
		calls := strings.Join(fake.Calls(), "\n")
		key, _ := filepath.Abs(cfg.Encryption.KeyFile)
		assert.Contains(t, calls, "zfs create -p -o encryption=aes-256-gcm -o keyformat=passphrase -o keylocation=file://"+key+" -o mountpoint=/home p/data/home\n")
		want := "zfs set keylocation=file:///etc/zfs/keys/paczfs.key p/data/home"
		if prompt {
			want = "zfs set keylocation=prompt p/data/home"
		}
		assert.Contains(t, calls, want)
		assert.Contains(t, calls, "zfs create -p -o mountpoint=/srv p/data/srv", "the others as they were")
		assert.Equal(t, 1, strings.Count(calls, "encryption="), "one encryption root")

		require.NoError(t, stageSystem(context.Background(), st))
		unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", LoadKeysUnit))
		require.NoError(t, err)
		assert.Contains(t, string(unit), "Before=zfs-mount.service")
		assert.Contains(t, string(unit), "After=zfs-import.target")
		fi, err := os.Stat(filepath.Join(root, LoadKeysScript))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
		health, err := os.ReadFile(filepath.Join(root, HealthUnits))
		require.NoError(t, err)
		assert.Contains(t, string(health), LoadKeysUnit+"\n", "a key that does not load makes the boot unhealthy")
		assert.Contains(t, strings.Join(fake.Calls(), "\n"), LoadKeysUnit)

		k, err := os.Stat(filepath.Join(root, KeyPath))
		if prompt {
			assert.True(t, os.IsNotExist(err), "with a prompt the passphrase stays out of the image")
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o400), k.Mode().Perm())
		d, err := os.Stat(filepath.Dir(filepath.Join(root, KeyPath)))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), d.Mode().Perm())
		data, _ := os.ReadFile(filepath.Join(root, KeyPath))
		assert.Equal(t, "correct horse battery\n", string(data))
	}
}

// paczfs-load-keys: file keys are loaded; a prompted passphrase is asked
// for until it is right, three times at most; a locked dataset fails the
// unit; loaded keys and children are left alone.
func TestLoadKeysScript(t *testing.T) {
	run := func(t *testing.T, list, answers string) (string, int) {
		dir := t.TempDir()
		writeTree(t, dir, map[string]string{
			"zfs": `#!/bin/sh
case "$1" in
list) printf "$LIST" ;;
load-key) echo "load-key $2" >> "$LOG"; [ "$2" = p/data/srv ] && exit 0; read -r pass; echo "got $pass" >> "$LOG"; [ "$pass" = right ] ;;
esac
`,
			"systemd-ask-password": "#!/bin/sh\nn=$(cat \"$ASKED\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$ASKED\"\necho \"$ANSWERS\" | cut -d, -f$n\n",
		}, 0o755)
		script := filepath.Join(dir, "paczfs-load-keys")
		require.NoError(t, os.WriteFile(script, []byte(loadKeysScript), 0o755))
		cmd := exec.Command(script)
		cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "LIST=" + list, "ANSWERS=" + answers, "LOG=" + filepath.Join(dir, "log"), "ASKED=" + filepath.Join(dir, "asked")}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err, "%s", out)
		}
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return string(log) + string(out), code
	}
	list := `p\t-\tnone\tnone\np/data/home\tp/data/home\tunavailable\tprompt\np/data/home/a\tp/data/home\tunavailable\tprompt\np/data/srv\tp/data/srv\tunavailable\tfile:///etc/zfs/keys/paczfs.key\np/data/root\tp/data/root\tavailable\tprompt\n`

	log, code := run(t, list, "wrong,right")
	assert.Equal(t, 0, code, log)
	assert.Equal(t, 2, strings.Count(log, "load-key p/data/home\n"), "asked again after a wrong passphrase: %s", log)
	assert.Contains(t, log, "wrong passphrase for p/data/home (1 of 3)")
	assert.Contains(t, log, "got right")
	assert.Contains(t, log, "load-key p/data/srv\n", "a file key is loaded")
	assert.NotContains(t, log, "p/data/home/a", "a child comes with its encryption root")
	assert.NotContains(t, log, "load-key p/data/root", "a loaded key is left alone")

	log, code = run(t, list, "a,b,c,right")
	assert.Equal(t, 1, code, "three wrong passphrases: %s", log)
	assert.Equal(t, 3, strings.Count(log, "load-key p/data/home\n"))
	assert.Contains(t, log, "load-key p/data/srv\n", "the other keys are still loaded")
}

func TestLoadKeysScriptIsValidShell(t *testing.T) {
	out, err := exec.Command("sh", "-n", "-c", loadKeysScript).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// With Encryption.Root the boot environments' parent is an encryption
// root whose passphrase the initramfs asks for; the data datasets' key
// lives in the root it unlocks.
func TestEncryptedRoot(t *testing.T) {
	cfg := encryptedConfig(t)
	cfg.Encryption.Root = true
	cfg.MinirootClone = ""
	cfg.Pacman.KeyringDir = t.TempDir()
	fake := &hookstest.FakeRunner{}
	st := hostBuild(t, cfg, fakeTarget(t), fake)
	st.state.Pool = "p"
	require.NoError(t, st.createDatasets(context.Background(), cfg.Datasets))
	calls := strings.Join(fake.Calls(), "\n")
	key, _ := filepath.Abs(cfg.Encryption.KeyFile)
	assert.Contains(t, calls, "zfs create -p -o canmount=off -o encryption=aes-256-gcm -o keyformat=passphrase -o keylocation=file://"+key+" -o mountpoint=none p/system\n")
	assert.Contains(t, calls, "zfs set keylocation=prompt p/system\n")
	assert.Contains(t, calls, "zfs set keylocation=file:///etc/zfs/keys/paczfs.key p/data/home")
	assert.Contains(t, calls, "zfs create -p -o canmount=noauto -o mountpoint=/ p/system/default\n", "the environments inherit")
	assert.Less(t, strings.Index(calls, "p/system\n"), strings.Index(calls, "p/system/default\n"))
}
