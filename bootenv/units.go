package bootenv

import (
	"encoding/json"
	"fmt"
	"time"
)

// Where the device-side pieces live in an image.
const (
	ToolPath     = "/usr/local/sbin/paczfs-bootenv"
	DeviceConfig = "/etc/paczfs/bootenv.json"
	ChecksDir    = "/etc/paczfs/health.d"
)

// Device is the device-side tool's configuration (DeviceConfig).
type Device struct {
	ESP      string `json:"esp"`       // where the ESP is mounted
	KeepGood int    `json:"keep_good"` // @good- snapshots kept per environment
	// Watchdog bounds a trial boot: boot-complete.target must be reached
	// within it (a duration, e.g. "15m").
	Watchdog string `json:"watchdog"`
	Health   string `json:"health"` // the health script
}

// DefaultDevice is what images get unless told otherwise.
func DefaultDevice() Device {
	return Device{ESP: "/efi", KeepGood: 5, Watchdog: "15m", Health: "/usr/local/sbin/paczfs-health"}
}

// Validate checks a Device configuration.
func (d Device) Validate() error {
	if d.KeepGood < 1 {
		return fmt.Errorf("keep_good: %d, want at least 1", d.KeepGood)
	}
	w, err := time.ParseDuration(d.Watchdog)
	if err != nil || w < time.Minute {
		return fmt.Errorf("watchdog: %q, want a duration of a minute or more, like 15m", d.Watchdog)
	}
	if d.ESP == "" || d.ESP[0] != '/' {
		return fmt.Errorf("esp: %q, want an absolute path", d.ESP)
	}
	return nil
}

// WatchdogTimeout is Watchdog parsed (Validate first).
func (d Device) WatchdogTimeout() time.Duration {
	w, _ := time.ParseDuration(d.Watchdog)
	return w
}

// Units are the systemd units an image needs for boot assessment: path
// in the root to content. Enable them with EnableUnits.
func Units() map[string]string {
	return map[string]string{
		"/etc/systemd/system/paczfs-boot-check.service": `[Unit]
Description=paczfs: check this boot before it counts as good
Documentation=file:///usr/local/sbin/paczfs-health
# As systemd's own systemd-boot-check-no-failures.service: after the
# boot's targets, before boot-complete.target, no default dependencies
# (so no target waits for it and no ordering cycle forms).
Before=boot-complete.target
After=default.target graphical.target multi-user.target
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + ToolPath + ` check --reboot-trial

[Install]
RequiredBy=boot-complete.target
`,
		"/etc/systemd/system/paczfs-boot-good.service": `[Unit]
Description=paczfs: record a good boot (bless, default, snapshot)
Requires=boot-complete.target
After=boot-complete.target systemd-bless-boot.service local-fs.target zfs-mount.service
RequiresMountsFor=/efi
# Wanted by multi-user.target but not waited for: with default
# dependencies the target would order itself after this unit, which is
# after the check, which is after the target.
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + ToolPath + ` good

[Install]
WantedBy=multi-user.target
`,
		"/etc/systemd/system/paczfs-bootfs-sync.service": `[Unit]
Description=paczfs: at shutdown, make the loader boot what bootfs names
After=zfs-mount.service local-fs.target
RequiresMountsFor=/efi

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=` + ToolPath + ` sync

[Install]
WantedBy=multi-user.target
`,
		"/etc/systemd/system/paczfs-trial-watchdog.service": `[Unit]
Description=paczfs: reboot a trial boot that does not complete
ConditionKernelCommandLine=paczfs.trial
DefaultDependencies=no
After=local-fs.target

[Service]
Type=simple
ExecStart=` + ToolPath + ` watchdog

[Install]
WantedBy=sysinit.target
`,
	}
}

// EnableUnits are the units to enable (systemctl enable).
func EnableUnits() []string {
	return []string{"paczfs-boot-check.service", "paczfs-boot-good.service", "paczfs-bootfs-sync.service", "paczfs-trial-watchdog.service"}
}

// Marshal renders DeviceConfig's content.
func (d Device) Marshal() ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	return append(b, '\n'), err
}
