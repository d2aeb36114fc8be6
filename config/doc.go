// Package config reads, checks and completes LavaVisor's config.yml (SPEC §3).
//
// Decoding is strict and reports every problem at once, each as
// "<file>:<line>: <key path>: <what is wrong>". To get exact lines for every key
// without giving up strictness, the file is parsed into a yaml.Node tree and walked
// by hand instead of decoded with custom UnmarshalYAML methods: a custom unmarshaler
// that calls node.Decode would silently turn KnownFields off for its subtree.
//
// Defaults live in one place: Default, and DefaultHealth for a service's health
// check (SPEC §7), which pod's --health-* flags (HealthFlags) start from too. Values given as flags or environment
// variables (Overrides) win over the file, and the file wins over the defaults; a
// flag that was not given never overrides the file.
package config
