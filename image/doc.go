// Package image turns a configuration into a bootable disk image. So far
// it holds the output conversion (qemu-img); the Builder that runs the
// stages comes next (issue 4).
package image
