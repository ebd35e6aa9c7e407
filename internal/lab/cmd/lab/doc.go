// Command lab builds the paczfs lab VM and runs commands and tests in it.
//
//	lab build                      build the lab image (once; cached under ~/.cache/paczfs)
//	lab repo                       build the signed lab package repository (once; cached)
//	lab run [-keep] -- CMD ARGS... boot a fresh VM, run CMD as root in /src, exit with its status
//	lab test [-run RE] PKG...      build the packages' tests (tag lab) and run them in one VM
//
// See internal/lab's package documentation for what the lab contains.
package main
