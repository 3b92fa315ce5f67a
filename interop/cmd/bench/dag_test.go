package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"

	"github.com/gobitswap/bitswap/dag"
)

// readCAR returns a CAR's roots and its blocks by CID.
func readCAR(t *testing.T, path string) ([]cid.Cid, map[cid.Cid]blocks.Block) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br, err := carv2.NewBlockReader(f)
	if err != nil {
		t.Fatal(err)
	}
	got := map[cid.Cid]blocks.Block{}
	for {
		b, err := br.Next()
		if err != nil {
			break
		}
		got[b.Cid()] = b
	}
	return br.Roots, got
}

// reachable walks the links from root over the blocks and counts what it
// reaches.
func reachable(t *testing.T, root cid.Cid, bl map[cid.Cid]blocks.Block) (int, int64) {
	t.Helper()
	seen := map[cid.Cid]bool{}
	var n int
	var size int64
	var visit func(c cid.Cid)
	visit = func(c cid.Cid) {
		if seen[c] {
			return
		}
		seen[c] = true
		b, ok := bl[c]
		if !ok {
			t.Fatalf("block %s linked but not in the CAR", c)
		}
		n++
		size += int64(len(b.RawData()))
		links, err := dag.Links(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			visit(l)
		}
	}
	visit(root)
	return n, size
}

// The builders write a CAR whose root is the DAG's root and whose blocks
// are exactly the DAG's, as they count them.
func TestDAGBuildersWriteTheWholeDAGUnderItsRoot(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		build func(string) (dagInfo, error)
		codec uint64
		want  int // blocks
	}{
		{"unixfs", func(p string) (dagInfo, error) { return buildUnixFS(p, 1, 200*1024+5, 1024) }, cid.DagProtobuf, 201 + 2 + 1},
		{"cbor", func(p string) (dagInfo, error) { return buildCBORTree(p, 2, 2) }, cid.DagCBOR, 1 + 2 + 32 + 512 + 512*cborLeaves},
	} {
		path := filepath.Join(dir, c.name+".car")
		info, err := c.build(path)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		roots, bl := readCAR(t, path)
		if len(roots) != 1 || !roots[0].Equals(info.root) || info.root.Prefix().Codec != c.codec {
			t.Fatalf("%s: CAR roots %v, built root %s", c.name, roots, info.root)
		}
		n, size := reachable(t, info.root, bl)
		if n != info.blocks || n != len(bl) || size != info.bytes || n != c.want {
			t.Errorf("%s: %d blocks (%d bytes) reachable, %d in the CAR, built %d (%d bytes), want %d", c.name, n, size, len(bl), info.blocks, info.bytes, c.want)
		}
	}
}

// The case labels carry what the targets look for, at any scale.
func TestDAGTargetsFindTheirRows(t *testing.T) {
	for _, scale := range []float64{0.01, 1} {
		var rows []Row
		for _, c := range dagCases(scale) {
			rows = append(rows, Row{Case: c.label + ": " + dE2E, Ours: Stat{Samples: []float64{300}}, Boxo: Stat{Samples: []float64{100}}})
		}
		rows = append(rows,
			Row{Case: "disk, x: " + dRepo, Ours: Stat{Samples: []float64{200}}},
			Row{Case: "disk, x: " + dNull, Ours: Stat{Samples: []float64{300}}})
		for i := range rows {
			rows[i].finish()
		}
		ts := targets([]SuiteResult{{Name: "dag", Rows: rows}}, scale < 1)
		var dagTargets []string
		for _, tg := range ts {
			if strings.HasPrefix(tg.Goal, "DAG fetch") {
				dagTargets = append(dagTargets, tg.Goal)
				if !tg.Met {
					t.Errorf("scale %g: %s: not met with %s", scale, tg.Goal, tg.Figure)
				}
			}
		}
		if len(dagTargets) != 4 {
			t.Errorf("scale %g: DAG targets %q, want 4", scale, dagTargets)
		}
	}
}
