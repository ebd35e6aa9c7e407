//go:build lab

package pacman_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/internal/labrepo"
	"github.com/paczfs/paczfs/internal/labtest"
	"github.com/paczfs/paczfs/pacman"
)

// Sync takes an installed root to a new set, as a release derived from
// the previous one does: what the set adds is installed, what it no
// longer names is removed with what nothing else needs, and a newer
// build of a package (from a second repository) is an upgrade. pacman
// itself then agrees (-Qq, -Qdtq, -Q).
func TestLabSyncReachesANewSet(t *testing.T) {
	labtest.Require(t)
	ctx := t.Context()
	repo := labRepo(t)
	url := serve(t, repo.Dir)
	cfg := repo.PacmanConfig(url)
	in := installer(t, cfg, &recorder{})
	root := t.TempDir()
	require.NoError(t, in.InitKeyring(ctx, root))
	_, err := in.Install(ctx, root, []string{"bash", "coreutils", "less"})
	require.NoError(t, err)
	conf := pacmanConf(t, url)

	res, err := in.Sync(ctx, root, []string{"bash", "coreutils", "tmux"})
	require.NoError(t, err)
	names := func(ps []pacman.PlannedPackage) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	assert.Contains(t, names(res.Installed), "tmux")
	assert.Contains(t, names(res.Removed), "less")
	t.Logf("sync: installed %v, removed %v in %s", names(res.Installed), names(res.Removed), res.Took)
	q, err := pacmanCmd(t, root, conf, "-Qq")
	require.NoError(t, err, q)
	assert.Contains(t, strings.Fields(q), "tmux")
	assert.NotContains(t, strings.Fields(q), "less")
	orphans, _ := pacmanCmd(t, root, conf, "-Qdtq")
	assert.Empty(t, strings.TrimSpace(orphans), "no orphans left")

	// The same set again: nothing to do.
	res, err = in.Sync(ctx, root, []string{"bash", "coreutils", "tmux"})
	require.NoError(t, err)
	assert.Empty(t, res.Installed)
	assert.Empty(t, res.Removed)

	// A newer tmux in a second repository: an upgrade.
	next := labtest.BumpedRepo(t, repo.Dir, labrepo.RepoName, "tmux", "99.0-1")
	cfg2 := cfg
	cfg2.Repos = append([]pacman.Repo{{Name: "next", Servers: []string{serve(t, next)}, SigLevel: "Never"}}, cfg.Repos...)
	in2 := installer(t, cfg2, &recorder{})
	res, err = in2.Sync(ctx, root, []string{"bash", "coreutils", "tmux"})
	require.NoError(t, err)
	require.Len(t, res.Installed, 1, "%v", names(res.Installed))
	assert.Equal(t, "99.0-1", res.Installed[0].Version)
	v, err := pacmanCmd(t, root, conf, "-Q", "tmux")
	require.NoError(t, err, v)
	assert.Equal(t, "tmux 99.0-1", strings.TrimSpace(v))
}

// A signature paczfs's check does not take (two in one file, as in
// TestLabSignatureLeftToLibalpmStillInstalls) goes to libalpm's own
// check in a Sync too, which passes it, and the Sync goes on.
func TestLabSyncSignatureLeftToLibalpmStillInstalls(t *testing.T) {
	labtest.Require(t)
	ctx := t.Context()
	repo := labRepo(t)
	dir := repoWithDoubledSignature(t, repo, "tmux")
	url := serve(t, dir)
	in := installer(t, repo.PacmanConfig(url), &recorder{})
	root := t.TempDir()
	require.NoError(t, in.InitKeyring(ctx, root))
	_, err := in.Install(ctx, root, []string{"bash"})
	require.NoError(t, err)

	rec := &recorder{}
	res, err := installer(t, repo.PacmanConfig(url), rec).Sync(ctx, root, []string{"bash", "tmux"})
	require.NoError(t, err)
	var names []string
	for _, p := range res.Installed {
		names = append(names, p.Name)
	}
	assert.Contains(t, names, "tmux")
	check := rec.lastCheck("checking package signatures")
	assert.Positive(t, check.Count, "paczfs's check ran first")
	assert.Less(t, check.Current, len(res.Installed), "and did not pass every package")
	qi, err := pacmanCmd(t, root, pacmanConf(t, url), "-Qi", "tmux")
	require.NoError(t, err)
	assert.Contains(t, qi, "Signature", "libalpm checked the signature")
}
