package main

import (
	"fmt"
	"time"
)

// A configuration file in the original's format, with the environment
// below it: the file wins, ${NAME} uses an earlier variable, and an empty
// list disables the workstation layer.
func Example_configFile() {
	file := `# my image
SUFFIX='build-${EPOCHSECONDS}'
QCOW2_FILE='./vm-${SUFFIX}.qcow2'   # ${NAME}: a variable set before this one
POOL_NAME='tank'
HOSTNAME='${POOL_NAME}-builder'
LOCALES=( 'en_US.UTF-8 UTF-8' 'de_DE.UTF-8 UTF-8' )
WORKSTATION_PKGS=()
`
	environment := map[string]string{"POOL_NAME": "ignored", "TIMEZONE": "Europe/Berlin", "VDI_FILE": "./vm.vdi"}

	assignments, err := parseConfig("my.conf", []byte(file))
	if err != nil {
		fmt.Println(err)
		return
	}
	l := loader{File: assignments, Now: time.Unix(1700000000, 0), Lookup: func(k string) (string, bool) {
		v, ok := environment[k]
		return v, ok
	}}
	s, err := l.load()
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg, err := s.config(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("image:", cfg.ImageFile, cfg.Size)
	for _, o := range cfg.Outputs {
		fmt.Println("output:", o.Format, o.Path)
	}
	fmt.Println("pool:", cfg.PoolName, "from", s.from("POOL_NAME"))
	fmt.Println("hostname:", cfg.System.Hostname)
	fmt.Println("timezone:", cfg.System.Timezone, "from", s.from("TIMEZONE"))
	fmt.Printf("locales: %q\n", cfg.System.Locales)
	fmt.Println("workstation:", cfg.Packages.Workstation, "boot environments:", cfg.BootEnvironments)

	// Output:
	// image: ./paczfs-build-1700000000.img 20G
	// output: vdi ./vm.vdi
	// output: qcow2 ./vm-build-1700000000.qcow2
	// pool: tank from my.conf:4
	// hostname: tank-builder
	// timezone: Europe/Berlin from environment
	// locales: ["en_US.UTF-8 UTF-8" "de_DE.UTF-8 UTF-8"]
	// workstation: [] boot environments: [bootable]
}
