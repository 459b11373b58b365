//go:build tools

// Package tools pins the versions of the binaries hack/ builds for tests and
// local runs. They live in their own module so their large dependency graphs
// never leak into the product's go.mod.
package tools
