//go:build lavavisor_mutants

package mutant

import "os"

// On reports whether LAVAVISOR_MUTANT names this bug.
func On(name string) bool { return os.Getenv("LAVAVISOR_MUTANT") == name }
