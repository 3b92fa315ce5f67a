//go:build !linux

package repo

import (
	"io/fs"
	"os"
	"path/filepath"
)

// syncFS syncs every file under dir, where there is no syncfs(2).
func syncFS(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		serr := f.Sync()
		if err := f.Close(); serr == nil {
			serr = err
		}
		return serr
	})
}

// backgroundSync is off without syncfs(2): syncing would mean every file.
const backgroundSync = false
