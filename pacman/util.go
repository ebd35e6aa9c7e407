package pacman

import "strings"

func splitLines(s string) []string { return strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") }

func splitColons(s string) []string { return strings.Split(s, ":") }
