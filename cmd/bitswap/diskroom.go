package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	blocks "github.com/ipfs/go-block-format"

	logging "github.com/ipfs/go-log/v2"
)

// repoReserve is the room a get leaves free on the disk of the repo it
// stores into, beyond what its memtables hold (repoUnflushed), for the
// repo to close cleanly, and the logs it replays when it opens. On a full
// disk pebble panics or fails fatally, or (opening) retries its flush
// forever.
const repoReserve = 16 << 20

// repoUnflushed bounds what the repo holds in memory and writes on its
// next flush (at Close, at the latest): its two memtables.
const repoUnflushed = 2 * repoMemTableSize

// checkRepoRoom fails when the disk that holds the repo dir (or would hold
// it) has less room than opening the repo needs: its logs, which pebble
// replays, and repoReserve. Where free space cannot be known, it does not
// fail.
func checkRepoRoom(dir string) error {
	at := dir
	for {
		if _, err := os.Stat(at); err == nil {
			break
		}
		parent := filepath.Dir(at)
		if parent == at {
			return nil
		}
		at = parent
	}
	free, ok := diskFree(at)
	if !ok {
		return nil
	}
	need := uint64(repoReserve)
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		if st, err := os.Stat(l); err == nil {
			need += uint64(st.Size())
		}
	}
	if free < need {
		return fmt.Errorf("its disk is full: %d bytes free, opening the repo and keeping it usable needs %d: make room", free, need)
	}
	return nil
}

// checkRoom fails, as a full disk, when storing bs in the repo in dir
// would leave less than repoReserve free on its disk once pending bytes,
// stored but perhaps not yet flushed, are written too.
func checkRoom(dir string, bs []blocks.Block, pending uint64) error {
	free, ok := diskFree(dir)
	if !ok {
		return nil
	}
	n := uint64(0)
	for _, b := range bs {
		n += uint64(len(b.RawData()))
	}
	if free < n+pending+repoReserve {
		return fmt.Errorf("%w: %d bytes free, and the repo keeps %d to close cleanly", syscall.ENOSPC, free, repoReserve)
	}
	return nil
}

// quietPebble silences the repo's own logging (go-log's "pebble") at the
// default log level: on a full disk it logs a line per retry of its
// background flush, hundreds a second, and get reports the disk full
// itself, in one line.
func quietPebble(c *common) {
	if c.level != nil && c.level.Level() >= slog.LevelWarn {
		_ = logging.SetLogLevel("pebble", "fatal")
	}
}
