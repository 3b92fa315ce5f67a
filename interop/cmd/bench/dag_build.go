package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mh "github.com/multiformats/go-multihash"
)

// The DAGs of the dag suite, written straight to a CARv1 as they are built
// (memory stays small whatever their size): UnixFS files built by boxo's
// own importer, as Kubo's `ipfs add --raw-leaves --cid-version 1
// --chunker size-N` builds them, and a tree of dag-cbor nodes over raw
// leaves.

// dagInfo is what was written.
type dagInfo struct {
	root   cid.Cid
	blocks int
	bytes  int64 // block data, the sum of every block's length
}

// carSink writes blocks to a CARv1 and counts them.
type carSink struct {
	sc   storage.WritableCar
	info dagInfo
}

func (s *carSink) put(ctx context.Context, c cid.Cid, data []byte) error {
	s.info.blocks++
	s.info.bytes += int64(len(data))
	return s.sc.Put(ctx, c.KeyString(), data)
}

// writeDAGCAR creates path and calls build, which adds the blocks through
// put and returns the root; the CAR's root is rewritten in place at the end
// (placeholder has the real root's codec, so the header keeps its length).
func writeDAGCAR(path string, codec uint64, build func(s *carSink) (cid.Cid, error)) (dagInfo, error) {
	f, err := os.Create(path)
	if err != nil {
		return dagInfo{}, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	ph, err := cid.Prefix{Version: 1, Codec: codec, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte("placeholder root"))
	if err != nil {
		return dagInfo{}, err
	}
	sc, err := storage.NewWritable(struct{ io.Writer }{bw}, []cid.Cid{ph}, car.WriteAsCarV1(true), car.StoreIdentityCIDs(false))
	if err != nil {
		return dagInfo{}, err
	}
	s := &carSink{sc: sc}
	root, err := build(s)
	if err != nil {
		return dagInfo{}, err
	}
	if err := sc.Finalize(); err != nil {
		return dagInfo{}, err
	}
	if err := bw.Flush(); err != nil {
		return dagInfo{}, err
	}
	if err := f.Close(); err != nil {
		return dagInfo{}, err
	}
	if root.Prefix().Codec != codec {
		return dagInfo{}, fmt.Errorf("root %s is not of codec %x", root, codec)
	}
	if err := car.ReplaceRootsInFile(path, []cid.Cid{root}); err != nil {
		return dagInfo{}, fmt.Errorf("writing the root into %s: %w", path, err)
	}
	s.info.root = root
	return s.info, nil
}

// sinkDAG is the ipld.DAGService boxo's importer adds to: it only writes.
type sinkDAG struct{ s *carSink }

func (d sinkDAG) Add(ctx context.Context, n ipld.Node) error {
	return d.s.put(ctx, n.Cid(), n.RawData())
}

func (d sinkDAG) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		if err := d.Add(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (sinkDAG) Get(_ context.Context, c cid.Cid) (ipld.Node, error) {
	return nil, ipld.ErrNotFound{Cid: c}
}

func (sinkDAG) GetMany(_ context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	ch := make(chan *ipld.NodeOption, len(cs))
	for _, c := range cs {
		ch <- &ipld.NodeOption{Err: ipld.ErrNotFound{Cid: c}}
	}
	close(ch)
	return ch
}

func (sinkDAG) Remove(context.Context, cid.Cid) error       { return nil }
func (sinkDAG) RemoveMany(context.Context, []cid.Cid) error { return nil }

// buildUnixFS writes a UnixFS file of size pseudo-random bytes (seeded),
// built by boxo's importer: balanced layout, 174 links per node, raw
// leaves of chunk bytes, CIDv1.
func buildUnixFS(path string, seed uint64, size int64, chunk int) (dagInfo, error) {
	return writeDAGCAR(path, cid.DagProtobuf, func(s *carSink) (cid.Cid, error) {
		var key [32]byte
		binary.LittleEndian.PutUint64(key[:], seed)
		content := io.LimitReader(rand.NewChaCha8(key), size)
		params := helpers.DagBuilderParams{
			Maxlinks:   helpers.DefaultLinksPerBlock,
			Dagserv:    sinkDAG{s},
			RawLeaves:  true,
			CidBuilder: merkledag.V1CidPrefix(),
		}
		db, err := params.New(chunker.NewSizeSplitter(content, int64(chunk)))
		if err != nil {
			return cid.Undef, err
		}
		nd, err := balanced.Layout(db)
		if err != nil {
			return cid.Undef, err
		}
		return nd.Cid(), nil
	})
}

// The dag-cbor tree: cborDepth levels of dag-cbor nodes with cborFanout
// children each (the root: topKids), every bottom node linking
// cborLeaves raw leaves of 1–5 KiB. With topKids = 16: 4,369 dag-cbor
// nodes and 16,384 leaves, about 53 MB.
const (
	cborDepth  = 4
	cborFanout = 16
	cborLeaves = 4
)

func buildCBORTree(path string, seed uint64, topKids int) (dagInfo, error) {
	return writeDAGCAR(path, cid.DagCBOR, func(s *carSink) (cid.Cid, error) {
		var key [32]byte
		binary.LittleEndian.PutUint64(key[:], seed)
		rng := rand.New(rand.NewChaCha8(key))
		ctx := context.Background()
		rawP := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
		cborP := cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: mh.SHA2_256, MhLength: -1}
		var node func(level int, path string) (cid.Cid, error)
		node = func(level int, path string) (cid.Cid, error) {
			var kids []cid.Cid
			field := "children"
			if level == cborDepth-1 {
				field = "leaves"
				for range cborLeaves {
					data := make([]byte, 1<<10+rng.IntN(4<<10))
					for i := range data {
						data[i] = byte(rng.Uint32())
					}
					c, err := rawP.Sum(data)
					if err != nil {
						return cid.Undef, err
					}
					if err := s.put(ctx, c, data); err != nil {
						return cid.Undef, err
					}
					kids = append(kids, c)
				}
			} else {
				n := cborFanout
				if level == 0 {
					n = topKids
				}
				for i := range n {
					c, err := node(level+1, fmt.Sprintf("%s/%d", path, i))
					if err != nil {
						return cid.Undef, err
					}
					kids = append(kids, c)
				}
			}
			meta := make([]byte, 64)
			for i := range meta {
				meta[i] = byte(rng.Uint32())
			}
			nd, err := qp.BuildMap(basicnode.Prototype.Any, 4, func(ma datamodel.MapAssembler) {
				qp.MapEntry(ma, "path", qp.String(path))
				qp.MapEntry(ma, "level", qp.Int(int64(level)))
				qp.MapEntry(ma, "meta", qp.Bytes(meta))
				qp.MapEntry(ma, field, qp.List(int64(len(kids)), func(la datamodel.ListAssembler) {
					for _, k := range kids {
						qp.ListEntry(la, qp.Link(cidlink.Link{Cid: k}))
					}
				}))
			})
			if err != nil {
				return cid.Undef, err
			}
			var buf bytes.Buffer
			if err := dagcbor.Encode(nd, &buf); err != nil {
				return cid.Undef, err
			}
			c, err := cborP.Sum(buf.Bytes())
			if err != nil {
				return cid.Undef, err
			}
			return c, s.put(ctx, c, buf.Bytes())
		}
		return node(0, "")
	})
}
