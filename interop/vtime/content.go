package vtime

import (
	"context"
	"fmt"

	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"

	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/testutil"
)

// content is what a scenario's seeds hold and its leeches fetch.
type content struct {
	s     Scenario
	all   []blocks.Block // every block a leech needs
	leafs []blocks.Block // the payload blocks, in order (DAG: the leaves)
	bytes uint64         // bytes of all
	root  cid.Cid        // DAG only
}

func newContent(s Scenario) *content {
	c := &content{s: s}
	c.leafs = testutil.RandomBlocks(int64(len(s.Name)), s.leafCount(), s.Params.BlockSize)
	if s.DAGDepth > 0 {
		c.buildDAG()
	} else {
		c.all = c.leafs
	}
	for _, b := range c.all {
		c.bytes += uint64(len(b.RawData()))
	}
	return c
}

// buildDAG builds a dag-pb tree of depth s.DAGDepth over the leaves (raw
// blocks), fanout s.dagFanout(), and adds its internal nodes to all.
func (c *content) buildDAG() {
	f := c.s.dagFanout()
	level := make([]blocks.Block, len(c.leafs))
	copy(level, c.leafs)
	c.all = append(c.all, c.leafs...)
	for len(level) > 1 {
		var next []blocks.Block
		for i := 0; i < len(level); i += f {
			nd := merkledag.NodeWithData(nil)
			for j, child := range level[i:min(i+f, len(level))] {
				var err error
				if child.Cid().Type() == cid.Raw {
					err = nd.AddNodeLink(fmt.Sprint(j), &merkledag.RawNode{Block: child})
				} else {
					var pn *merkledag.ProtoNode
					pn, err = merkledag.DecodeProtobuf(child.RawData())
					if err == nil {
						err = nd.AddNodeLink(fmt.Sprint(j), pn)
					}
				}
				if err != nil {
					panic(err) // cannot happen with nodes built here
				}
			}
			next = append(next, nd)
			c.all = append(c.all, nd)
		}
		level = next
	}
	c.root = level[0].Cid()
}

// seedBlocks is what seed i holds.
func (c *content) seedBlocks(i int) []blocks.Block {
	if !c.s.Disjoint {
		return c.all
	}
	lo, hi := c.s.part(i, len(c.all))
	return c.all[lo:hi]
}

// fetch gets every block with n, as a scenario's leech does, and checks that
// each one arrived.
func (c *content) fetch(ctx context.Context, n node) error {
	if c.s.DAGDepth > 0 {
		got, err := walk(ctx, n.newSession(ctx), c.root)
		if err != nil {
			return err
		}
		if got != len(c.all) {
			return fmt.Errorf("walked %d of %d blocks", got, len(c.all))
		}
		return nil
	}
	keys := make([]cid.Cid, len(c.all))
	for i, b := range c.all {
		keys[i] = b.Cid()
	}
	ch, err := n.GetBlocks(ctx, keys)
	if err != nil {
		return err
	}
	seen := cid.NewSet()
	for b := range ch {
		seen.Add(b.Cid())
	}
	if seen.Len() != len(keys) {
		return fmt.Errorf("got %d of %d blocks (%v)", seen.Len(), len(keys), ctx.Err())
	}
	return nil
}

// walk fetches the DAG under root through f with the library's pipelined
// walk (dag.Walk, as `bitswap get` does), for either implementation: each
// node's children are asked for, in one GetBlocks call on the same
// session, as soon as the node arrives. It returns how many blocks it got.
func walk(ctx context.Context, f fetcher, root cid.Cid) (int, error) {
	got := 0
	err := dag.Walk(ctx, f, root, func(blocks.Block) error { got++; return nil })
	return got, err
}
