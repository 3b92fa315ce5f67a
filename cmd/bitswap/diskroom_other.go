//go:build !(linux || darwin || freebsd)

package main

// diskFree does not know the free space here.
func diskFree(string) (uint64, bool) { return 0, false }
