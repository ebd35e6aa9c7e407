package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/release"
)

// printSummary writes what a build did: the time per stage with the hooks
// that ran in it, the total, the files written and the boot environments.
func printSummary(w io.Writer, res *image.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stage\tseconds\treplaced by / hooks")
	for _, st := range res.Stages {
		var notes []string
		if st.Replaced != "" {
			notes = append(notes, "replaced by "+st.Replaced)
		}
		if len(st.Hooks) > 0 {
			notes = append(notes, "hooks: "+strings.Join(st.Hooks, ", "))
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\n", st.Stage, st.Took.Seconds(), strings.Join(notes, "; "))
	}
	fmt.Fprintf(tw, "total\t%.1f\t\n", res.Took.Seconds())
	tw.Flush()
	fmt.Fprintf(w, "\ndisk: %s\n", res.Disk)
	for _, o := range res.Outputs {
		fmt.Fprintf(w, "output (%s): %s\n", o.Format, o.Path)
	}
	fmt.Fprintln(w, "boot environments:")
	for _, e := range res.Environments {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintf(w, "kernel %s, hostid %s, %d packages\n", res.Kernel, res.HostID, len(res.Packages))
	for _, m := range res.Warnings {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
}

// printPlan writes what a build would do, from Builder.Plan.
func printPlan(w io.Writer, s *settings, cfg image.Config, plan *image.BuildPlan, scripts []hooks.Script) {
	fmt.Fprintf(w, "profile %s\n", cfg.Profile)
	if cfg.BlockDevice != "" {
		fmt.Fprintf(w, "target: block device %s (written in place)\n", cfg.BlockDevice)
	} else {
		fmt.Fprintf(w, "target: image file %s (%s, sparse)\n", cfg.ImageFile, cfg.Size)
	}
	fmt.Fprintln(w, "\npartition table:")
	fmt.Fprint(w, indent(plan.Disk.String()))
	fmt.Fprintln(w, "\npool (DISK and ALTROOT are chosen at build time):")
	fmt.Fprintf(w, "  %s\n", hooks.QuoteArgs(plan.PoolCommand))
	fmt.Fprintln(w, "\ndatasets:")
	for _, d := range plan.DatasetCommands {
		fmt.Fprintf(w, "  %s\n", hooks.QuoteArgs(d))
	}
	if r := cfg.Release; r.Dir != "" {
		fmt.Fprintf(w, "\nrelease %s, signed, written to %s\n", r.Version, r.Dir)
		if f := plan.From; f != nil {
			full, _ := f.Stream(release.Full)
			fmt.Fprintf(w, "  derived from release %s (%s): the root receives %s, the packages are synced to the sets below, the incremental stream %s -> %s is written too\n",
				f.Version, r.From, full.File, f.Version, r.Version)
		}
	}
	if len(plan.Modules) > 0 {
		fmt.Fprintln(w, "\nkernel modules:")
		for _, m := range plan.Modules {
			chose := m.Pair.Module
			if m.Fallback {
				chose = strings.Join(m.Pair.Fallback, " ")
			}
			fmt.Fprintf(w, "  %s: %s\n", chose, m.Why)
		}
	}
	if p := plan.Packages; p != nil {
		fmt.Fprintf(w, "\npackages (%d):\n", len(p.Packages))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  name\tversion\trepo\tdownload\tinstalled")
		for _, q := range p.Packages {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", q.Name, q.Version, q.Repo, human(q.DownloadSize), human(q.InstalledSize))
		}
		tw.Flush()
		fmt.Fprintf(w, "  total: download %s (what the caches hold counts 0), installed %s\n", human(p.DownloadSize), human(p.InstalledSize))
	}
	fmt.Fprintln(w, "\nboot environments:")
	for _, e := range plan.Environments {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintln(w, "\noutputs:")
	if cfg.ImageFile != "" {
		fmt.Fprintf(w, "  raw %s (the image itself)\n", cfg.ImageFile)
	}
	for _, o := range cfg.Outputs {
		fmt.Fprintf(w, "  %s %s\n", o.Format, o.Path)
	}
	if len(scripts) > 0 {
		fmt.Fprintln(w, "\nhooks:")
		for _, h := range scripts {
			where := "on the host"
			if h.InTarget {
				where = "in the target"
			}
			fmt.Fprintf(w, "  %s-%s: %s (%s)\n", h.Position, h.AtStage, h.Path, where)
		}
	}
	var set []string
	for _, v := range variables {
		if from := s.from(v.Name); from != "default" {
			set = append(set, fmt.Sprintf("  %s from %s", v.Name, from))
		}
	}
	if len(set) > 0 {
		fmt.Fprintln(w, "\nsettings not from the profile:")
		fmt.Fprintln(w, strings.Join(set, "\n"))
	}
	fmt.Fprintln(w, "\ndry run: nothing was written")
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "  " + strings.Join(lines, "\n  ") + "\n"
}

// printProblems lists a configuration's problems, one per line, in this
// command's words: the library names its Config fields, the command its
// variables (image_file is IMAGE_FILE here).
func printProblems(w io.Writer, ce *image.ConfigError) {
	fmt.Fprintf(w, "paczfs: invalid configuration, %d problem(s):\n", len(ce.Problems))
	words := fieldWords()
	for _, p := range ce.Problems {
		line := "  " + words.Replace(p.Field) + ": " + p.Problem
		if p.Fix != "" {
			line += "; fix: " + words.Replace(p.Fix)
		}
		fmt.Fprintln(w, line)
	}
}

// fieldVariables maps image.Config fields (as ConfigError names them) to
// the variables that set them. Longest first, so that pacman.cache_dirs
// is replaced before a shorter name inside it.
var fieldVariables = [][2]string{
	{"system.root_password_hash", "ROOT_PASSWORD_HASH"}, {"system.authorized_keys", "AUTHORIZED_KEYS_FILE"},
	{"pacman.trusted_keys", "TRUSTED_KEYS"}, {"packages.workstation", "WORKSTATION_PKGS"},
	{"pacman.cache_dirs", "CACHE_PATH"}, {"packages.bootable", "BOOTABLE_PKGS"}, {"system.hostname", "HOSTNAME"},
	{"system.timezone", "TIMEZONE"}, {"system.locales", "LOCALES"}, {"packages.base", "BASE_PKGS"},
	{"system.keymap", "KEYMAP"}, {"system.hostid", "HOSTID"}, {"block_device", "BLOCK_DEV"},
	{"image_file", "IMAGE_FILE"}, {"swap_size", "SWAP_SIZE"}, {"pool_name", "POOL_NAME"}, {"esp_size", "ESP_SIZE"},
	{"manage.release_keys", "RELEASE_KEYS"}, {"release.signing_key", "RELEASE_SIGNING_KEY"}, {"release.version", "RELEASE_VERSION"},
	{"release.from", "RELEASE_FROM"}, {"release.name", "RELEASE_NAME"}, {"release.dir", "RELEASE_DIR"}, {"manage.tool", "BOOTENV_TOOL"}, {"manage.keep_good", "KEEP_GOOD"}, {"manage.off", "MANAGE=no"}, {"guid_seed", "GUID_SEED"}, {"work_dir", "CHROOT_PATH"}, {"cache_dir", "BUILD_CACHE"}, {"cache_max", "BUILD_CACHE_MAX"}, {"size", "IMAGE_SIZE"},
}

func fieldWords() *strings.Replacer {
	var pairs []string
	for _, fv := range fieldVariables {
		pairs = append(pairs, fv[0], fv[1])
	}
	return strings.NewReplacer(pairs...)
}
