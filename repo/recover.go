package repo

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	base32 "github.com/multiformats/go-base32"
	mh "github.com/multiformats/go-multihash"
)

// Block files are written without a sync each (that halved the rate a
// fetch stores at). Instead the repository keeps a marker while it is
// open: Close syncs the filesystem and removes it. A marker found by Open
// means the last session ended without Close (a crash, SIGKILL, a machine
// that stopped), and a file written since it was set may be partial after
// a machine crash, so every such file is hashed and removed if it does
// not match its name.
const unsyncedMarker = "UNSYNCED"

// markUnsynced sets the marker, durably, before anything is written.
func markUnsynced(dir string) error {
	p := filepath.Join(dir, unsyncedMarker)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	now := time.Now() // the check's start, even if the file existed
	if err := os.Chtimes(p, now, now); err != nil {
		return err
	}
	return syncDir(dir)
}

// markSynced syncs every file written and removes the marker.
func markSynced(dir string) error {
	if err := syncFS(dir); err != nil {
		return fmt.Errorf("syncing the block files: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, unsyncedMarker)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recoverFiles checks the files of an unclean shutdown, if the marker says
// there was one, and returns how many it removed.
func recoverFiles(dir string) (int, error) {
	st, err := os.Stat(filepath.Join(dir, unsyncedMarker))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// Coarse file times: a file written in the marker's second is checked.
	since := st.ModTime().Add(-2 * time.Second)
	dropped := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".data") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().Before(since) {
			return nil
		}
		ok, err := fileMatchesName(path, strings.TrimSuffix(d.Name(), ".data"))
		if err != nil {
			return err
		}
		if !ok {
			dropped++
			return os.Remove(path)
		}
		return nil
	})
	return dropped, err
}

// fileMatchesName reports whether the file at path hashes to the
// multihash its name encodes. A name that is not one does not match.
func fileMatchesName(path, name string) (bool, error) {
	want, err := base32.RawStdEncoding.DecodeString(name)
	if err != nil {
		return false, nil
	}
	dec, err := mh.Decode(want)
	if err != nil {
		return false, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	got, err := mh.Sum(data, dec.Code, dec.Length)
	if err != nil {
		return false, nil
	}
	return bytes.Equal(got, want), nil
}
