//go:build linux

package repo

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS writes every dirty page of the filesystem that holds dir.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// backgroundSync: syncfs(2) writes one filesystem's dirty pages cheaply, so
// the repo can start writeback while a fetch goes on.
const backgroundSync = true
