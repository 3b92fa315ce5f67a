package main

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

// Fetcher is what the walk needs from Bitswap: a session, a *bitswap.Bitswap,
// or anything else that turns CIDs into blocks.
type Fetcher interface {
	GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error)
}

// Links returns the CIDs that blk links to, decoding it with the codec its
// CID names (dag-pb, raw, dag-cbor, dag-json, or any codec registered with
// go-ipld-prime's multicodec registry).
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

// MissingError reports the blocks a walk wanted and did not get.
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

// Walk fetches the DAG under root through f and calls visit once for every
// distinct block, in arrival order. It is pipelined: every link known so far
// is asked for at once (one GetBlocks call per batch of newly discovered
// links, issued while earlier batches are still arriving), so a DAG of depth
// d costs about d round trips, not one per block.
//
// When ctx ends before the DAG is complete, Walk returns a *MissingError
// naming the blocks still missing. An error from visit or from decoding a
// block stops the walk and is returned.
func Walk(ctx context.Context, f Fetcher, root cid.Cid, visit func(blocks.Block) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type batchDone struct{}
	arrived := make(chan blocks.Block, 64)
	done := make(chan batchDone, 16)
	running := 0

	seen := map[cid.Cid]struct{}{root: {}}
	pending := map[cid.Cid]struct{}{root: {}}
	next := []cid.Cid{root}

	flush := func() error {
		if len(next) == 0 {
			return nil
		}
		ch, err := f.GetBlocks(ctx, next)
		if err != nil {
			return err
		}
		next = nil
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
		links, err := Links(blk)
		if err != nil {
			return err
		}
		for _, l := range links {
			if _, ok := seen[l]; ok {
				continue
			}
			seen[l] = struct{}{}
			pending[l] = struct{}{}
			next = append(next, l)
		}
		return nil
	}

	if err := flush(); err != nil {
		return err
	}
	for len(pending) > 0 {
		if running == 0 && len(arrived) == 0 {
			// Every request has ended and the DAG is incomplete: the
			// context ended (or the fetcher gave up).
			cause := context.Cause(ctx)
			if cause == nil {
				cause = errors.New("fetcher stopped")
			}
			return missing(pending, cause)
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
		case <-ctx.Done():
			return missing(pending, context.Cause(ctx))
		}
	}
	return nil
}

func missing(pending map[cid.Cid]struct{}, cause error) error {
	m := make([]cid.Cid, 0, len(pending))
	for c := range pending {
		m = append(m, c)
	}
	slices.SortFunc(m, func(a, b cid.Cid) int { return strings.Compare(a.KeyString(), b.KeyString()) })
	return &MissingError{Missing: m, Cause: cause}
}
