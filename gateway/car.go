package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net/http"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/ipfs/go-unixfsnode/data"
	dagpb "github.com/ipld/go-codec-dagpb"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mc "github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"

	"github.com/gobitswap/bitswap/dag"
)

// dagScope is the dag-scope of a CAR request.
type dagScope int

const (
	scopeAll dagScope = iota
	scopeEntity
	scopeBlock
)

func (s dagScope) String() string {
	switch s {
	case scopeEntity:
		return "entity"
	case scopeBlock:
		return "block"
	}
	return "all"
}

// follow says which links of a block the walk descends into.
type follow int

const (
	followNone   follow = iota
	followAll           // every link (dag-scope=all; a UnixFS file's chunks)
	followEntity        // decide by the block: the root of dag-scope=entity
	followShards        // a HAMT directory's shards, not its entries
)

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}

// frame is one level of the depth-first walk: a block's links still to
// visit. The walk holds CIDs, never blocks.
type frame struct {
	links []cid.Cid
	next  int
	how   follow
}

func (h *Handler) serveCAR(w http.ResponseWriter, r *http.Request, root cid.Cid, f format, scope dagScope, onlyCached bool) {
	ctx := r.Context()
	hd := w.Header()
	dups := "n"
	if f.dups {
		dups = "y"
	}
	hd.Set("Content-Type", MediaCAR+"; version=1; order=dfs; dups="+dups)
	hd.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", root.String()+".car"))

	// The root must be here before the status is sent.
	if root.Prefix().MhType != mh.IDENTITY {
		if ok, err := h.bs.Has(ctx, root); err != nil {
			h.serverError(w, root, err)
			return
		} else if !ok {
			h.notFoundError(w, root, onlyCached)
			return
		}
	}
	if r.Method == http.MethodHead {
		return
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	how := followAll
	switch scope {
	case scopeBlock:
		how = followNone
	case scopeEntity:
		how = followEntity
	}
	wk := walker{h: h, w: w, rc: rc, dups: f.dups, seed: maphash.MakeSeed()}
	if !f.dups {
		wk.seen = make(map[uint64]struct{})
	}
	err := writeCARHeader(w, rc, h.opts.WriteTimeout, root)
	if err == nil {
		err = wk.walk(ctx, root, how)
	}
	if err != nil {
		h.cut.Add(1)
		h.opts.Logger.Debug("gateway: CAR stream cut", "root", root, "err", err)
		// The status is sent: the only way to tell the client is to end
		// the stream before the CAR does (the spec's truncated CAR).
		panic(http.ErrAbortHandler)
	}
}

type walker struct {
	h       *Handler
	w       http.ResponseWriter
	rc      *http.ResponseController
	dups    bool
	seed    maphash.Seed
	seen    map[uint64]struct{} // dups=n: keyed hashes of the CIDs written
	written int
	pending int // CIDs on the stack
	stack   []frame
}

func (wk *walker) walk(ctx context.Context, root cid.Cid, how follow) error {
	if err := wk.visit(ctx, root, how); err != nil {
		return err
	}
	for len(wk.stack) > 0 {
		top := &wk.stack[len(wk.stack)-1]
		if top.next == len(top.links) {
			wk.stack = wk.stack[:len(wk.stack)-1]
			continue
		}
		c := top.links[top.next]
		top.next++
		wk.pending--
		if err := wk.visit(ctx, c, top.how); err != nil {
			return err
		}
	}
	return nil
}

// visit writes c's block (unless it is an identity CID, or already written
// with dups=n) and pushes the links to follow from it.
func (wk *walker) visit(ctx context.Context, c cid.Cid, how follow) error {
	limit := wk.h.opts.MaxCARBlocks
	if !wk.dups {
		k := maphash.String(wk.seed, c.KeyString())
		if _, ok := wk.seen[k]; ok {
			return nil
		}
		wk.seen[k] = struct{}{}
	}
	var blk blocks.Block
	var reserved int64
	if c.Prefix().MhType == mh.IDENTITY {
		b, err := blocks.NewBlockWithCid(identityData(c), c)
		if err != nil {
			return err
		}
		blk = b
	} else {
		if wk.written >= limit {
			return fmt.Errorf("more than %d blocks", limit)
		}
		size, err := wk.h.bs.GetSize(ctx, c)
		if err != nil {
			return missing(c, err)
		}
		if reserved, err = wk.h.budget.reserve(ctx, int64(size)); err != nil {
			return err
		}
		defer func() { wk.h.budget.give(reserved) }()
		if blk, err = wk.h.bs.Get(ctx, c); err != nil {
			return missing(c, err)
		}
		if err := wk.write(blk); err != nil {
			return err
		}
	}
	if how == followNone {
		return nil
	}
	links, next, err := linksOf(blk, how)
	if err != nil {
		return err
	}
	if len(links) == 0 {
		return nil
	}
	if p := wk.h.opts.MaxCARPending; wk.pending+len(links) > p {
		return fmt.Errorf("more than %d links pending", p)
	}
	wk.pending += len(links)
	wk.stack = append(wk.stack, frame{links: links, how: next})
	return nil
}

func missing(c cid.Cid, err error) error {
	if ipld.IsNotFound(err) {
		return fmt.Errorf("block %s missing", c)
	}
	return fmt.Errorf("block %s: %w", c, err)
}

// write writes one CAR section: varint(len(cid)+len(data)), cid, data,
// within the write deadline.
func (wk *walker) write(blk blocks.Block) error {
	_ = wk.rc.SetWriteDeadline(time.Now().Add(wk.h.opts.WriteTimeout))
	cb := blk.Cid().Bytes()
	d := blk.RawData()
	var pre [binary.MaxVarintLen64 + 128]byte
	n := binary.PutUvarint(pre[:], uint64(len(cb)+len(d)))
	buf := append(pre[:n], cb...)
	if len(d) <= 4096 {
		buf = append(buf, d...)
		if _, err := wk.w.Write(buf); err != nil {
			return err
		}
	} else {
		if _, err := wk.w.Write(buf); err != nil {
			return err
		}
		if _, err := wk.w.Write(d); err != nil {
			return err
		}
	}
	wk.written++
	wk.h.blocks.Add(1)
	wk.h.bytes.Add(int64(len(d)))
	return nil
}

// linksOf returns the links of blk the walk follows, and how to follow
// theirs.
func linksOf(blk blocks.Block, how follow) ([]cid.Cid, follow, error) {
	if how == followAll {
		l, err := dag.Links(blk)
		return l, followAll, err
	}
	// dag-scope=entity: only UnixFS (dag-pb) has entities larger than a
	// block; for anything else the entity is the block.
	if blk.Cid().Prefix().Codec != uint64(mc.DagPb) {
		return nil, followNone, nil
	}
	nb := dagpb.Type.PBNode.NewBuilder()
	if err := dagpb.DecodeBytes(nb, blk.RawData()); err != nil {
		return nil, followNone, fmt.Errorf("block %s: decoding dag-pb: %w", blk.Cid(), err)
	}
	pn := nb.Build().(dagpb.PBNode)
	if !pn.FieldData().Exists() {
		return nil, followNone, nil // not UnixFS
	}
	ud, err := data.DecodeUnixFSData(pn.FieldData().Must().Bytes())
	if err != nil {
		return nil, followNone, nil // not UnixFS: a plain dag-pb block
	}
	var out []cid.Cid
	switch ud.FieldDataType().Int() {
	case data.Data_File, data.Data_Raw:
		// The whole file: every block under it.
		for it := pn.FieldLinks().Iterator(); !it.Done(); {
			_, l := it.Next()
			out = append(out, l.FieldHash().Link().(cidlink.Link).Cid)
		}
		return out, followAll, nil
	case data.Data_HAMTShard:
		// Enumerating a sharded directory needs its shards; a link named
		// by the hex prefix alone is a shard, longer names are entries.
		if !ud.FieldFanout().Exists() {
			return nil, followNone, nil
		}
		fanout := ud.FieldFanout().Must().Int()
		padLen := len(fmt.Sprintf("%X", fanout-1))
		for it := pn.FieldLinks().Iterator(); !it.Done(); {
			_, l := it.Next()
			if l.FieldName().Exists() && len(l.FieldName().Must().String()) == padLen {
				out = append(out, l.FieldHash().Link().(cidlink.Link).Cid)
			}
		}
		return out, followShards, nil
	}
	// A plain directory (its block lists it), a symlink, metadata.
	return nil, followNone, nil
}

// writeCARHeader writes a CARv1 header naming root: varint length, then
// the dag-cbor map {roots: [root], version: 1}.
func writeCARHeader(w http.ResponseWriter, rc *http.ResponseController, timeout time.Duration, root cid.Cid) error {
	_ = rc.SetWriteDeadline(time.Now().Add(timeout))
	n, err := qp.BuildMap(basicnode.Prototype.Any, 2, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "roots", qp.List(1, func(la datamodel.ListAssembler) {
			qp.ListEntry(la, qp.Link(cidlink.Link{Cid: root}))
		}))
		qp.MapEntry(ma, "version", qp.Int(1))
	})
	if err != nil {
		return err
	}
	var body bytes.Buffer
	if err := dagcbor.Encode(n, &body); err != nil {
		return err
	}
	var pre [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(pre[:], uint64(body.Len()))
	if _, err := w.Write(append(pre[:k], body.Bytes()...)); err != nil {
		return err
	}
	return nil
}
