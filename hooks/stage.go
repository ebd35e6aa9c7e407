package hooks

import "fmt"

// Stage names one step of an image build. The image builder runs them in
// the order of Stages; a hook can run code before or after any of them, or
// replace one.
type Stage string

// The stages, in build order. The table in doc.go says what each does and
// which of the original paczfs hook points it covers.
const (
	StageChecks      Stage = "checks"
	StageTarget      Stage = "target"
	StagePartition   Stage = "partition"
	StageESP         Stage = "esp"
	StagePool        Stage = "pool"
	StageDatasets    Stage = "datasets"
	StagePacman      Stage = "pacman"
	StageBase        Stage = "base"
	StageBootable    Stage = "bootable"
	StageSystem      Stage = "system"
	StageInitramfs   Stage = "initramfs"
	StageBootloader  Stage = "bootloader"
	StageWorkstation Stage = "workstation"
	StageFinalize    Stage = "finalize"
	StageConvert     Stage = "convert"
)

// Stages returns every stage in build order (a new slice each call: the
// order is paczfs's, not a setting).
func Stages() []Stage {
	return []Stage{StageChecks, StageTarget, StagePartition, StageESP, StagePool, StageDatasets,
		StagePacman, StageBase, StageBootable, StageSystem, StageInitramfs, StageBootloader,
		StageWorkstation, StageFinalize, StageConvert}
}

// ParseStage reads a stage name, or names the choices.
func ParseStage(s string) (Stage, error) {
	for _, st := range Stages() {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown stage %q: use one of %v", s, Stages())
}

// OriginalHooks returns, as a new map, each of the original paczfs's 29
// hook points with the stage that covers it now.
func OriginalHooks() map[string]Stage {
	return map[string]Stage{
		"prepare-cache":        StagePacman,
		"init-system":          StageChecks,
		"prepare-env":          StageChecks,
		"prepare-loop-dev":     StageTarget,
		"prepare-partitions":   StagePartition,
		"prepare-zfs-pool":     StagePool,
		"prepare-directories":  StageDatasets,
		"prepare-pacman":       StagePacman,
		"prepare-pacman-keys":  StagePacman,
		"install-miniroot":     StageBase,
		"set-locale":           StageSystem,
		"copy-ssh-keys":        StageSystem,
		"prepare-users":        StageSystem,
		"populate-mirrorlist":  StagePacman,
		"snapshot-miniroot":    StageBase,
		"prepare-efi-volume":   StageESP,
		"prepare-swap":         StagePartition,
		"install-bootable":     StageBootable,
		"prepare-initramfs":    StageInitramfs,
		"install-grub":         StageBootloader,
		"snapshot-bootable":    StageBootloader,
		"install-workstation":  StageWorkstation,
		"snapshot-workstation": StageWorkstation,
		"finalize-image":       StageFinalize,
		"clean-up":             StageFinalize,
		"save-image-file":      StageConvert,
		"save-vdi-file":        StageConvert,
		"save-qcow-file":       StageConvert,
		"save-qcow2-file":      StageConvert,
	}
}
