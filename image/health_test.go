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
	*"-p Id -p NRestarts"*) for s in $SERVICES; do printf 'Id=%s\nNRestarts=%s\n\n' "${s%%:*}" "${s##*:}"; done;;
	*ActiveState,SubState*) printf 'activating\nauto-restart\n';;
	*ActiveState*) u=$(eval echo \${$#}); for a in $ACTIVE; do [ "${a%%=*}" = "$u" ] && echo "${a#*=}"; done;;
	esac;;
esac
`

func runHealth(t *testing.T, env map[string]string) (string, int) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "systemctl"), []byte(fakeSystemctl), 0o755))
	script := filepath.Join(dir, "paczfs-health")
	require.NoError(t, os.WriteFile(script, []byte(healthScript), 0o755))
	units := filepath.Join(dir, "units")
	require.NoError(t, os.WriteFile(units, healthUnits([]string{"ssh.service", "zfs.target"}), 0o644))
	cmd := exec.Command(script)
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "PACZFS_HEALTH_UNITS=" + units, "PACZFS_HEALTH_TIMEOUT=5"}
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
		"ACTIVE": "ssh.service=active zfs.target=active"}
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

	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"a failed unit": {with("FAILED", "foo.service"), "problem: foo.service failed"},
		// A unit that exits 1 with Restart=always: between restarts it
		// is neither failed nor active, and systemctl --failed is empty.
		"a unit in a restart loop":  {with("ACTIVATING", "flap.service"), "problem: flap.service is still activating auto-restart"},
		"a restarted service":       {with("SERVICES", "ssh.service:0 flap.service:4"), "problem: flap.service restarted 4 times"},
		"an enabled unit down":      {with("ACTIVE", "ssh.service=inactive zfs.target=active"), "problem: ssh.service is inactive, want active"},
		"a boot that never settles": {with("STATE", "starting"), "problem: system is starting"},
		"a degraded system":         {with("STATE", "degraded"), "problem: system is degraded"},
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
