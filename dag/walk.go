// Package dag fetches whole DAGs through Bitswap: a pipelined walk from a
// root that asks for every link known so far at once, so that a DAG of
// depth d costs about d round trips, and hands each block to the caller as
// it arrives.
//
// It owns only what a walk must remember: the CIDs seen (to ask for each
// once) and those asked for and not yet delivered (to name what is
// missing). It holds no blocks: each one goes to the caller's visit
// function and is forgotten, and a caller slower than the network slows the
// walk, down to the requests of the Fetcher, instead of piling blocks up.
// It never stores blocks and knows nothing of peers; the Fetcher (a
// session.Session, or *bitswap.Bitswap) does that.
package dag

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	_ "github.com/ipld/go-codec-dagpb"              // registers dag-pb with the multicodec registry
	_ "github.com/ipld/go-ipld-prime/codec/dagcbor" // registers dag-cbor
	_ "github.com/ipld/go-ipld-prime/codec/dagjson" // registers dag-json
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/multicodec"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/ipld/go-ipld-prime/traversal"
	mc "github.com/multiformats/go-multicodec"
)

// Fetcher is what the walk needs from Bitswap: a session.Session, a
// *bitswap.Bitswap, or anything else that turns CIDs into blocks. Its
// channel must close when the request ends, however it ends.
type Fetcher interface {
	GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error)
}

// LinksFunc returns the CIDs a block links to.
type LinksFunc func(blocks.Block) ([]cid.Cid, error)

// Links is the default LinksFunc: it decodes blk with the codec its CID
// names (dag-pb, raw, dag-cbor, dag-json, or any codec registered with
// go-ipld-prime's multicodec registry) and returns every link in it.
func Links(blk blocks.Block) ([]cid.Cid, error) {
	code := blk.Cid().Prefix().Codec
	if code == uint64(mc.Raw) {
		return nil, nil
	}
	dec, err := multicodec.LookupDecoder(code)
	if err != nil {
		return nil, fmt.Errorf("block %s: no decoder for codec %s", blk.Cid(), mc.Code(code))
	}
	nb := basicnode.Prototype.Any.NewBuilder()
	if err := dec(nb, bytes.NewReader(blk.RawData())); err != nil {
		return nil, fmt.Errorf("block %s: decoding %s: %w", blk.Cid(), mc.Code(code), err)
	}
	lnks, err := traversal.SelectLinks(nb.Build())
	if err != nil {
		return nil, fmt.Errorf("block %s: links: %w", blk.Cid(), err)
	}
	out := make([]cid.Cid, 0, len(lnks))
	for _, l := range lnks {
		cl, ok := l.(cidlink.Link)
		if !ok {
			return nil, fmt.Errorf("block %s: link %v is not a CID", blk.Cid(), l)
		}
		out = append(out, cl.Cid)
	}
	return out, nil
}

// MissingError reports the blocks a walk wanted and did not get: those
// asked for, and the links found but not yet asked for, sorted.
type MissingError struct {
	Missing []cid.Cid
	Cause   error
}

func (e *MissingError) Error() string {
	names := make([]string, 0, 5)
	for i, c := range e.Missing {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(e.Missing)-5))
			break
		}
		names = append(names, c.String())
	}
	return fmt.Sprintf("%d blocks missing (%v): %s", len(e.Missing), e.Cause, strings.Join(names, ", "))
}

func (e *MissingError) Unwrap() error { return e.Cause }

// Option configures Walk.
type Option func(*config)

type config struct {
	links    LinksFunc
	inFlight int
}

// DefaultMaxInFlight is how many CIDs a walk asks for before their blocks
// have been visited, unless WithMaxInFlight says otherwise.
const DefaultMaxInFlight = 4096

// WithLinks sets how links are found in a block (default Links). A links
// function that skips some links prunes the walk there.
func WithLinks(f LinksFunc) Option { return func(c *config) { c.links = f } }

// WithMaxInFlight bounds the CIDs asked for and not yet visited (default
// DefaultMaxInFlight; 0 keeps it, negative means no bound). Links found
// beyond it wait, as CIDs, until blocks are visited. With the Fetcher's own
// bound per request (session.Config.RequestBuffer), it bounds what a walk
// makes the node hold.
func WithMaxInFlight(n int) Option {
	return func(c *config) {
		switch {
		case n < 0:
			c.inFlight = 0
		case n > 0:
			c.inFlight = n
		}
	}
}

// Walk fetches the DAG under root through f and calls visit once for every
// distinct block, in arrival order, on the caller's goroutine. It is
// pipelined: the links found in the blocks that have arrived are asked for
// together (one GetBlocks call per batch, issued while earlier batches are
// still arriving), so a DAG of depth d costs about d round trips, not one
// per block. While visit runs, no further block is taken from f.
//
// When ctx ends before the DAG is complete, Walk returns a *MissingError
// naming the blocks still missing. An error from visit or from decoding a
// block stops the walk and is returned.
func Walk(ctx context.Context, f Fetcher, root cid.Cid, visit func(blocks.Block) error, opts ...Option) error {
	cfg := config{links: Links, inFlight: DefaultMaxInFlight}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type batchDone struct{}
	arrived := make(chan blocks.Block)
	done := make(chan batchDone)
	running := 0

	// seen: every CID found; pending: asked for, not yet visited; next:
	// found, not yet asked for (a queue, oldest first).
	seen := map[cid.Cid]struct{}{root: {}}
	pending := map[cid.Cid]struct{}{}
	next := []cid.Cid{root}

	flush := func() error {
		n := len(next)
		if cfg.inFlight > 0 {
			n = min(n, cfg.inFlight-len(pending))
		}
		if n <= 0 {
			return nil
		}
		batch := next[:n:n]
		ch, err := f.GetBlocks(ctx, batch)
		if err != nil {
			return err
		}
		for _, c := range batch {
			pending[c] = struct{}{}
		}
		next = next[n:]
		if len(next) == 0 {
			next = nil // let the backing array go
		}
		running++
		go func() {
			for blk := range ch {
				select {
				case arrived <- blk:
				case <-ctx.Done():
				}
			}
			select {
			case done <- batchDone{}:
			case <-ctx.Done():
			}
		}()
		return nil
	}

	handle := func(blk blocks.Block) error {
		c := blk.Cid()
		if _, ok := pending[c]; !ok {
			return nil // a block some other batch also asked for
		}
		delete(pending, c)
		if err := visit(blk); err != nil {
			return err
		}
		links, err := cfg.links(blk)
		if err != nil {
			return err
		}
		for _, l := range links {
			if _, ok := seen[l]; ok {
				continue
			}
			seen[l] = struct{}{}
			next = append(next, l)
		}
		return nil
	}

	if err := flush(); err != nil {
		return err
	}
	for len(pending) > 0 || len(next) > 0 {
		if running == 0 {
			// Every request has ended and the DAG is incomplete: the
			// context ended (or the fetcher gave up).
			cause := context.Cause(ctx)
			if cause == nil {
				cause = errors.New("fetcher stopped")
			}
			return missing(pending, next, cause)
		}
		select {
		case blk := <-arrived:
			if err := handle(blk); err != nil {
				return err
			}
			// Take whatever else has already arrived, then ask for all the
			// links found, in one request.
		drain:
			for {
				select {
				case blk := <-arrived:
					if err := handle(blk); err != nil {
						return err
					}
				default:
					break drain
				}
			}
			if err := flush(); err != nil {
				return err
			}
		case <-done:
			running--
			// A request ended with blocks missing (cancelled, or the
			// fetcher gave up): retrying would not help, but room in the
			// bound may let waiting links go.
			if err := flush(); err != nil {
				return err
			}
		case <-ctx.Done():
			return missing(pending, next, context.Cause(ctx))
		}
	}
	return nil
}

func missing(pending map[cid.Cid]struct{}, next []cid.Cid, cause error) error {
	m := make([]cid.Cid, 0, len(pending)+len(next))
	for c := range pending {
		m = append(m, c)
	}
	m = append(m, next...)
	slices.SortFunc(m, func(a, b cid.Cid) int { return strings.Compare(a.KeyString(), b.KeyString()) })
	return &MissingError{Missing: m, Cause: cause}
}
