package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// ExpandHome makes `~` and `~/x` mean $HOME and $HOME/x (SPEC §2), wherever
// a path is read: flag, env var or config.yml. Any other path is returned as
// is; `~user` is not expanded (no folder literally named `~` is ever made
// from it either: it stays relative, and the caller resolves it).
func ExpandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home := os.Getenv("HOME")
	if home == "" {
		return "", errors.New(p + ": $HOME is not set, so ~ means nothing: give an absolute path")
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}
