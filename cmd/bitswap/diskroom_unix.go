//go:build linux || darwin || freebsd

package main

import "syscall"

// diskFree returns the bytes free to this user on the disk holding path.
func diskFree(path string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
