// Command storage builds the storage layer of a paczfs image and shows
// it: a sparse image with a GPT (ESP and ZFS), files written into the ESP
// without mounting, a pool with paczfs's dataset layout, a recursive
// snapshot, bootfs, then export and detach. It is what custom builders
// compose from the disk and zfs packages.
//
// Run it as root on a host with OpenZFS, or in the lab with `make demo`.
package main
