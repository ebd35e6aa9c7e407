package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSystemctl answers the queries paczfs-health makes from variables:
// STATE (is-system-running), FAILED and ACTIVATING (unit lists),
// SERVICES ("unit:restarts ..."), ACTIVE ("unit=state ...").
const fakeSystemctl = `#!/bin/sh
case "$1" in
is-system-running) echo "$STATE"; [ "$STATE" = running ];;
list-units)
	case "$*" in
	*--state=failed*) for u in $FAILED; do echo "$u loaded failed failed x"; done;;
	*--state=activating*) for u in $ACTIVATING; do echo "$u loaded activating auto-restart x"; done;;
	*--type=service*) for s in $SERVICES; do echo "${s%%:*} loaded active running x"; done;;
	esac;;
show)
	case "$*" in
	*"-p Id -p NRestarts"*) for s in $SERVICES; do printf 'NRestarts=%s\nId=%s\n\n' "${s##*:}" "${s%%:*}"; done;; # systemd's order
	*InitRDTimestampMonotonic*) echo "${INITRD:-0}";;
	*ActiveState,SubState*) printf 'activating\nauto-restart\n';;
	*ActiveState*) u=$(eval echo \${$#}); for a in $ACTIVE; do [ "${a%%=*}" = "$u" ] && echo "${a#*=}"; done;;
	esac;;
list-jobs) for j in $JOBS; do echo "1 ${j%%:*} start ${j##*:}"; done;;
esac
`

// fakeZpool and fakeFindmnt answer from POOLS ("name:health ...") and ROOT.
const (
	fakeZpool   = "#!/bin/sh\n[ \"$1 $6\" = \"get ${ROOT%%/*}\" ] && { echo \"$BOOTFS\"; exit; }\nfor p in $POOLS; do printf '%s\\t%s\\n' \"${p%%:*}\" \"${p##*:}\"; done\n"
	fakeFindmnt = "#!/bin/sh\necho \"$ROOT\"\n"
)

func runHealth(t *testing.T, env map[string]string) (string, int) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "systemctl"), []byte(fakeSystemctl), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "zpool"), []byte(fakeZpool), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "findmnt"), []byte(fakeFindmnt), 0o755))
	cmdline := filepath.Join(dir, "cmdline")
	root := "root=ZFS=" + env["WANT"]
	if r, ok := env["CMDLINE_ROOT"]; ok {
		root = r
	}
	require.NoError(t, os.WriteFile(cmdline, []byte("BOOT_IMAGE=/env/b/vmlinuz "+root+" rw quiet\n"), 0o644))
	script := filepath.Join(dir, "paczfs-health")
	require.NoError(t, os.WriteFile(script, []byte(healthScript), 0o755))
	units := filepath.Join(dir, "units")
	require.NoError(t, os.WriteFile(units, healthUnits([]string{"ssh.service", "zfs.target"}), 0o644))
	var args []string
	if env["IN_BOOT"] != "" {
		args = append(args, "--in-boot")
	}
	cmd := exec.Command(script, args...)
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "PACZFS_HEALTH_UNITS=" + units, "PACZFS_HEALTH_TIMEOUT=2",
		"PACZFS_HEALTH_CMDLINE=" + cmdline, "PACZFS_HEALTH_SETTLE=0"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

func TestHealthVerdict(t *testing.T) {
	good := map[string]string{"STATE": "running", "SERVICES": "ssh.service:0 systemd-journald.service:0",
		"ACTIVE": "ssh.service=active zfs.target=active", "POOLS": "zroot:ONLINE", "ROOT": "zroot/system/b", "WANT": "zroot/system/b"}
	with2 := func(base map[string]string, k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range base {
			m[a] = b
		}
		m[k] = v
		return m
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	out, code := runHealth(t, good)
	assert.Equal(t, 0, code, out)
	assert.Equal(t, "healthy\n", out)
	// A systemd initramfs (dracut's) restarts journald once at the switch
	// to the root.
	out, code = runHealth(t, with2(with("SERVICES", "ssh.service:0 systemd-journald.service:1"), "INITRD", "26354097"))
	assert.Equal(t, 0, code, out)
	// Every way an entry can name its root: dracut's root=zfs:, Arch's
	// zfs=, and the pool's bootfs.
	for _, root := range []string{"root=zfs:zroot/system/b", "zfs=zroot/system/b", "root=zfs:AUTO", "zfs=bootfs"} {
		out, code = runHealth(t, with2(with2(good, "CMDLINE_ROOT", root), "BOOTFS", "zroot/system/b"))
		assert.Equal(t, 0, code, "%s: %s", root, out)
	}
	// In boot: the state is starting, only waiting jobs are left.
	out, code = runHealth(t, with2(with("STATE", "starting"), "IN_BOOT", "1"))
	assert.Equal(t, 0, code, out)
	assert.Equal(t, "healthy\n", out)

	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"a failed unit": {with("FAILED", "foo.service"), "problem: foo.service failed"},
		// A unit that exits 1 with Restart=always: between restarts it
		// is neither failed nor active, and systemctl --failed is empty.
		"a unit in a restart loop":                 {with("ACTIVATING", "flap.service"), "problem: flap.service is still activating auto-restart"},
		"a restarted service":                      {with("SERVICES", "ssh.service:0 flap.service:4"), "problem: flap.service restarted 4 times"},
		"journald restarted, no systemd initramfs": {with("SERVICES", "systemd-journald.service:1"), "problem: systemd-journald.service restarted 1 times"},
		"journald restarted twice":                 {with2(with("SERVICES", "systemd-journald.service:2"), "INITRD", "26354097"), "problem: systemd-journald.service restarted 1 times"},
		"an enabled unit down":                     {with("ACTIVE", "ssh.service=inactive zfs.target=active"), "problem: ssh.service is inactive, want active"},
		"a boot that never settles":                {with("STATE", "starting"), "problem: system is starting"},
		"a degraded system":                        {with("STATE", "degraded"), "problem: system is degraded"},
		"another root than named":                  {with("ROOT", "zroot/system/a"), "problem: / is zroot/system/a, the boot entry names zroot/system/b"},
		"another root than dracut's":               {with2(with("ROOT", "zroot/system/a"), "CMDLINE_ROOT", "root=zfs:zroot/system/b"), "problem: / is zroot/system/a, the boot entry names zroot/system/b"},
		"another root than Arch's":                 {with2(with("ROOT", "zroot/system/a"), "CMDLINE_ROOT", "zfs=zroot/system/b"), "problem: / is zroot/system/a, the boot entry names zroot/system/b"},
		"not the bootfs (AUTO)":                    {with2(with2(with("ROOT", "zroot/system/a"), "CMDLINE_ROOT", "root=zfs:AUTO"), "BOOTFS", "zroot/system/b"), "problem: / is zroot/system/a, the pool's bootfs (root=AUTO) is zroot/system/b"},
		"a degraded pool":                          {with("POOLS", "zroot:DEGRADED"), "problem: pool zroot is DEGRADED"},
		// Before boot-complete.target the state is "starting": --in-boot
		// waits for the running jobs instead, and gives up after the limit.
		"in boot, a job never ends": {with2(with("IN_BOOT", "1"), "JOBS", "slow.service:running boot-complete.target:waiting"), "problem: still starting after 2s: slow.service"},
	} {
		out, code := runHealth(t, c.env)
		assert.Equal(t, 1, code, "%s: %s", name, out)
		assert.Contains(t, out, c.want, name)
		assert.True(t, strings.HasSuffix(out, "problems)\n"), "%s: %s", name, out)
	}
}

func TestHealthScriptIsValidShell(t *testing.T) {
	out, err := exec.Command("sh", "-n", "-c", healthScript).CombinedOutput()
	require.NoError(t, err, "%s", out)
}
