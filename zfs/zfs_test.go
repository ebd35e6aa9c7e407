package zfs_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/zfs"
)

func TestCreatePoolArgsDefaultsSortedOptionsBeforeName(t *testing.T) {
	args, err := zfs.CreatePoolArgs(zfs.PoolSpec{
		Name: "zroot", TempName: "paczfs-1234", AltRoot: "/mnt/build", Vdevs: []string{"/dev/loop0p2"},
		Properties:   map[string]string{"compatibility": "", "autotrim": "off"},
		FSProperties: map[string]string{"compression": "zstd", "com.example:tag": "x"},
	})
	require.NoError(t, err)
	assert.Equal(t, "zpool create -t paczfs-1234 -R /mnt/build "+
		"-o ashift=12 -o autoexpand=on -o autotrim=off -o cachefile=none "+
		"-O acltype=posixacl -O canmount=off -O com.example:tag=x -O compression=zstd -O dnodesize=auto "+
		"-O mountpoint=none -O normalization=formD -O relatime=on -O xattr=sa "+
		"zroot /dev/loop0p2", strings.Join(args, " "))
}

func TestCreatePoolArgsIsDeterministic(t *testing.T) {
	spec := zfs.PoolSpec{Name: "zroot", Vdevs: []string{"/dev/vdb"}, Force: true}
	first, err := zfs.CreatePoolArgs(spec)
	require.NoError(t, err)
	for i := 0; i < 50; i++ {
		again, _ := zfs.CreatePoolArgs(spec)
		require.Equal(t, first, again)
	}
	assert.Equal(t, []string{"zpool", "create", "-f"}, first[:3])
	assert.Contains(t, first, "compatibility=openzfs-2.2-linux")
}

func TestPoolSpecRejections(t *testing.T) {
	cases := map[string]zfs.PoolSpec{
		"must start with a letter":   {Name: "1pool", Vdevs: []string{"/dev/x"}},
		"reserved word":              {Name: "mirrorpool", Vdevs: []string{"/dev/x"}},
		"may contain only":           {Name: "my/pool", Vdevs: []string{"/dev/x"}},
		"empty":                      {Name: "", Vdevs: []string{"/dev/x"}},
		"Solaris device name":        {Name: "c0t0d0", Vdevs: []string{"/dev/x"}},
		"vdevs: none given":          {Name: "zroot"},
		"must be an absolute path":   {Name: "zroot", Vdevs: []string{"/dev/x"}, AltRoot: "mnt"},
		"temporary name: \"9\" must": {Name: "zroot", TempName: "9", Vdevs: []string{"/dev/x"}},
	}
	for want, spec := range cases {
		_, err := zfs.CreatePoolArgs(spec)
		if assert.Error(t, err, want) {
			assert.Contains(t, err.Error(), want)
		}
	}
}

func TestImportPoolArgs(t *testing.T) {
	args, err := zfs.ImportPoolArgs(zfs.ImportSpec{Pool: "1234567890", NewName: "paczfs-x", Temporary: true,
		Dirs: []string{"/dev/disk/by-partuuid", "/dev"}, AltRoot: "/mnt", Force: true})
	require.NoError(t, err)
	assert.Equal(t, "zpool import -d /dev/disk/by-partuuid -d /dev -N -R /mnt -f -t 1234567890 paczfs-x", strings.Join(args, " "))
	_, err = zfs.ImportPoolArgs(zfs.ImportSpec{Pool: "zroot", Temporary: true})
	assert.ErrorContains(t, err, "temporary import needs a new name")
	_, err = zfs.ImportPoolArgs(zfs.ImportSpec{})
	assert.ErrorContains(t, err, "no pool name")
}

func TestSendReceiveArgs(t *testing.T) {
	a, err := zfs.SendArgs("zroot/system/default@b", zfs.SendOptions{From: "zroot/system/default@a", Raw: true, Props: true})
	require.NoError(t, err)
	assert.Equal(t, "zfs send -w -p -i zroot/system/default@a zroot/system/default@b", strings.Join(a, " "))
	a, err = zfs.SendArgs("zroot@b", zfs.SendOptions{From: "@a", Intermediary: true, Replicate: true})
	require.NoError(t, err)
	assert.Equal(t, "zfs send -R -I @a zroot@b", strings.Join(a, " "))
	_, err = zfs.SendArgs("zroot/system/default", zfs.SendOptions{})
	assert.ErrorContains(t, err, "name a snapshot")

	r, err := zfs.ReceiveArgs("backup/os", zfs.ReceiveOptions{Force: true, Props: map[string]string{"mountpoint": "none", "canmount": "off"}, Exclude: []string{"org.zfsbootmenu:commandline"}})
	require.NoError(t, err)
	assert.Equal(t, "zfs receive -u -F -o canmount=off -o mountpoint=none -x org.zfsbootmenu:commandline backup/os", strings.Join(r, " "))
	r, _ = zfs.ReceiveArgs("backup/os", zfs.ReceiveOptions{Mount: true})
	assert.Equal(t, "zfs receive backup/os", strings.Join(r, " "))
}

func TestListArgsAndParse(t *testing.T) {
	assert.Equal(t, "zfs list -H -p -o name,type,origin,mountpoint -t filesystem,snapshot -r -d 2 zroot",
		strings.Join(zfs.ListArgs("zroot", zfs.ListOptions{Types: []string{"filesystem", "snapshot"}, Recursive: true, Depth: 2, Props: []string{"origin", "mountpoint"}}), " "))
	fake := new(hookstest.FakeRunner)
	fake.On("zfs list", hookstest.Response{Stdout: "zroot\tfilesystem\t-\tnone\nzroot/system/default\tfilesystem\t-\t/\nzroot/system/bootable\tfilesystem\tzroot/system/default@bootable\t/\n"})
	ds, err := zfs.New(zfs.WithRunner(fake)).List(context.Background(), "zroot", zfs.ListOptions{Recursive: true, Props: []string{"origin", "mountpoint"}})
	require.NoError(t, err)
	require.Len(t, ds, 3)
	assert.Equal(t, "zroot/system/default@bootable", ds[2].Props["origin"])
	assert.Equal(t, "/", ds[1].Props["mountpoint"])
}

func TestDatasetNames(t *testing.T) {
	for _, ok := range []string{"zroot", "zroot/system/default", "zroot/a@snap-1", "zroot/a#bm", "z.r:o_o-t/x y"} {
		assert.NoError(t, zfs.ValidateDatasetName(ok), ok)
	}
	for bad, want := range map[string]string{
		"zroot//a": "must not be empty", "zroot/a@": "the part after @", "zroot/a@b@c": "the part after @",
		"zroot/a%b": "may contain only", "/zroot": "pool", "zroot/" + strings.Repeat("a", 300): "longer than",
	} {
		err := zfs.ValidateDatasetName(bad)
		if assert.Error(t, err, bad) {
			assert.Contains(t, err.Error(), want, bad)
		}
	}
}

func TestDefaultDatasetsValid(t *testing.T) {
	require.NoError(t, zfs.ValidateDatasets("zroot", zfs.DefaultDatasets()))
	assert.ErrorContains(t, zfs.ValidateDatasets("zroot", []zfs.DatasetSpec{{Name: "a"}, {Name: "a"}}), "declared twice")
	assert.ErrorContains(t, zfs.ValidateDatasets("zroot", []zfs.DatasetSpec{{Name: "/home"}}), "relative to the pool")
}

func TestCreateDatasetsTranscript(t *testing.T) {
	fake := new(hookstest.FakeRunner)
	require.NoError(t, zfs.New(zfs.WithRunner(fake)).CreateDatasets(context.Background(), "zroot", zfs.DefaultDatasets()[:3]))
	assert.Equal(t, []string{
		"zfs create -p -o canmount=off -o mountpoint=none zroot/system",
		"zfs create -p -o canmount=noauto -o mountpoint=/ zroot/system/default",
		"zfs mount zroot/system/default",
		"zfs create -p -o canmount=off -o mountpoint=none zroot/data",
	}, fake.Calls())
}

// Messages as OpenZFS 2.3.9 prints them, captured in the lab by
// TestLabErrorClassification (which checks the same classification live).
var realMessages = []struct {
	stderr string
	want   error
}{
	{"cannot open 'zroot/nope': dataset does not exist\n", zfs.ErrNotFound},
	{"cannot open 'nopool': no such pool\n", zfs.ErrNotFound},
	{"cannot import 'nopool': no such pool available\n", zfs.ErrNotFound},
	{"Cannot get properties of nopool: no such pool available.\n", zfs.ErrNotFound},
	{"could not find any snapshots to destroy; check snapshot names.\n", zfs.ErrNotFound},
	{"cannot release hold from snapshot 'zroot/a@s': no such tag on this dataset\n", zfs.ErrNotFound},
	{"cannot create 'zroot/a': dataset already exists\n", zfs.ErrExists},
	{"cannot create snapshot 'zroot/a@s': dataset already exists\n", zfs.ErrExists},
	{"cannot hold snapshot 'zroot/a@s': tag already exists on this dataset\n", zfs.ErrExists},
	{"cannot import 'zroot': a pool with that name already exists\nuse the form 'zpool import <pool | id> <newpool>' to give it a new name\n", zfs.ErrExists},
	{"cannot destroy 'zroot/a@s': dataset is busy\n", zfs.ErrBusy},
	{"cannot destroy snapshot zroot/system/default@base: it's being held. Run 'zfs holds -r zroot/system/default@base' to see holders.\n", zfs.ErrBusy},
	{"cannot export 'zroot': pool is busy\n", zfs.ErrBusy},
	{"cannot unmount '/mnt/a/b': pool or dataset is busy\n", zfs.ErrBusy},
	{"cannot destroy 'zroot/a': filesystem has children\nuse '-r' to destroy the following datasets:\nzroot/a/b\n", zfs.ErrHasDependents},
	{"cannot destroy 'zroot/a@s': snapshot has dependent clones\nuse '-R' to destroy the following datasets:\nzroot/c\n", zfs.ErrHasDependents},
	{"cannot trim: no devices in pool support trim operations\n", zfs.ErrNotSupported},
	{"cannot create 'zroot/a': permission denied\n", nil},
}

func TestClassify(t *testing.T) {
	for _, m := range realMessages {
		assert.Equal(t, m.want, zfs.Classify(m.stderr), m.stderr)
	}
}

func TestErrorsAreClassifiedAndKeepTheCommand(t *testing.T) {
	fake := new(hookstest.FakeRunner)
	fake.On("zfs create", hookstest.Response{ExitCode: 1, Stderr: "cannot create 'zroot/a': dataset already exists\n"})
	err := zfs.New(zfs.WithRunner(fake)).CreateDataset(context.Background(), "zroot/a", nil, zfs.CreateOptions{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, zfs.ErrExists))
	assert.Contains(t, err.Error(), "zfs create zroot/a")
	assert.Contains(t, err.Error(), "exit status 1")
}

func TestExportAndImportAreIdempotent(t *testing.T) {
	fake := new(hookstest.FakeRunner)
	fake.On("zpool export", hookstest.Response{ExitCode: 1, Stderr: "cannot open 'zroot': no such pool\n"})
	c := zfs.New(zfs.WithRunner(fake))
	require.NoError(t, c.ExportPool(context.Background(), "zroot", zfs.ExportOptions{}))

	fake.On("zpool list -H -o name zroot", hookstest.Response{Stdout: "zroot\n"})
	require.NoError(t, c.ImportPool(context.Background(), zfs.ImportSpec{Pool: "zroot"}))
	for _, call := range fake.Calls() {
		assert.NotContains(t, call, "zpool import", "an imported pool is not imported again")
	}

	fake.On("zpool export", hookstest.Response{ExitCode: 1, Stderr: "cannot export 'zroot': pool is busy\n"})
	assert.True(t, errors.Is(c.ExportPool(context.Background(), "zroot", zfs.ExportOptions{}), zfs.ErrBusy))
}

func TestSendStreamsToWriter(t *testing.T) {
	fake := new(hookstest.FakeRunner)
	fake.On("zfs send", hookstest.Response{Stdout: "STREAM"})
	var sb strings.Builder
	require.NoError(t, zfs.New(zfs.WithRunner(fake)).Send(context.Background(), &sb, "zroot@a", zfs.SendOptions{}))
	assert.Equal(t, "STREAM", sb.String())
	require.NoError(t, zfs.New(zfs.WithRunner(fake)).Receive(context.Background(), strings.NewReader("IN"), "zroot/b", zfs.ReceiveOptions{}))
	assert.Equal(t, "IN", fake.Stdin()[1])
}

// The client refuses such names itself: no zfs command runs.
func TestClientRunsNothingForANameZFSWouldMisread(t *testing.T) {
	f := &hookstest.FakeRunner{}
	c := zfs.New(zfs.WithRunner(f))
	ctx := context.Background()
	_, err := c.Exists(ctx, "-r")
	assert.ErrorIs(t, err, zfs.ErrArgument)
	assert.ErrorIs(t, c.Destroy(ctx, "zroot/a@first%last", zfs.DestroyOptions{}), zfs.ErrArgument)
	assert.ErrorIs(t, c.SetProperties(ctx, "zroot/a", map[string]string{"-u": "x"}), zfs.ErrArgument)
	assert.ErrorIs(t, c.Inherit(ctx, "zroot/a", "-r", zfs.InheritOptions{}), zfs.ErrArgument)
	assert.ErrorIs(t, c.Hold(ctx, "-r", "zroot/a@s", zfs.HoldOptions{}), zfs.ErrArgument)
	assert.ErrorIs(t, c.ExportPool(ctx, "-f", zfs.ExportOptions{}), zfs.ErrArgument)
	assert.Empty(t, f.Calls())
}
