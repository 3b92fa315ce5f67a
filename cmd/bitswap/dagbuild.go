package main

import (
	"bytes"
	"fmt"
	"io"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	dagpb "github.com/ipld/go-codec-dagpb"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/encoding/protowire"
)

var (
	rawPrefix   = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	dagpbPrefix = cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}
)

// builtDAG is a UnixFS-like file: raw leaves under dag-pb nodes.
type builtDAG struct {
	Root   cid.Cid
	Blocks []blocks.Block // leaves first, root last
	Size   int            // file bytes
	Depth  int            // levels, leaves included
}

type dagLink struct {
	c        cid.Cid
	fileSize uint64 // file bytes under the link
	tsize    uint64 // block bytes under the link, itself included
}

// buildFileDAG reads r to the end and builds a balanced UnixFS-style file
// DAG over it: raw leaves of leafSize bytes, dag-pb nodes of at most fanout
// links each (carrying a UnixFS File Data field, so Kubo reads the file), up
// to a single root. An empty input gives a single empty raw leaf.
func buildFileDAG(r io.Reader, leafSize, fanout int) (*builtDAG, error) {
	d := &builtDAG{Depth: 1}
	var level []dagLink
	buf := make([]byte, leafSize)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 || (len(level) == 0 && err == io.EOF) {
			data := bytes.Clone(buf[:n])
			blk, berr := newBlock(rawPrefix, data)
			if berr != nil {
				return nil, berr
			}
			d.Blocks = append(d.Blocks, blk)
			d.Size += n
			level = append(level, dagLink{c: blk.Cid(), fileSize: uint64(n), tsize: uint64(n)})
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	for len(level) > 1 {
		d.Depth++
		var up []dagLink
		for i := 0; i < len(level); i += fanout {
			kids := level[i:min(i+fanout, len(level))]
			blk, l, err := fileNode(kids)
			if err != nil {
				return nil, err
			}
			d.Blocks = append(d.Blocks, blk)
			up = append(up, l)
		}
		level = up
	}
	d.Root = level[0].c
	return d, nil
}

// fileNode builds a dag-pb node whose Data is a UnixFS File over kids.
func fileNode(kids []dagLink) (blocks.Block, dagLink, error) {
	var fileSize, tsize uint64
	// UnixFS Data message: Type (1) = File (2), filesize (3), blocksizes (4).
	var ufs []byte
	ufs = protowire.AppendTag(ufs, 1, protowire.VarintType)
	ufs = protowire.AppendVarint(ufs, 2)
	for _, k := range kids {
		fileSize += k.fileSize
	}
	ufs = protowire.AppendTag(ufs, 3, protowire.VarintType)
	ufs = protowire.AppendVarint(ufs, fileSize)
	for _, k := range kids {
		ufs = protowire.AppendTag(ufs, 4, protowire.VarintType)
		ufs = protowire.AppendVarint(ufs, k.fileSize)
	}
	n, err := qp.BuildMap(dagpb.Type.PBNode, 2, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "Links", qp.List(int64(len(kids)), func(la datamodel.ListAssembler) {
			for _, k := range kids {
				qp.ListEntry(la, qp.Map(3, func(ma datamodel.MapAssembler) {
					qp.MapEntry(ma, "Hash", qp.Link(cidlink.Link{Cid: k.c}))
					qp.MapEntry(ma, "Name", qp.String(""))
					qp.MapEntry(ma, "Tsize", qp.Int(int64(k.tsize)))
				}))
			}
		}))
		qp.MapEntry(ma, "Data", qp.Bytes(ufs))
	})
	if err != nil {
		return nil, dagLink{}, fmt.Errorf("building dag-pb node: %w", err)
	}
	var out bytes.Buffer
	if err := dagpb.Encode(n, &out); err != nil {
		return nil, dagLink{}, fmt.Errorf("encoding dag-pb node: %w", err)
	}
	blk, err := newBlock(dagpbPrefix, out.Bytes())
	if err != nil {
		return nil, dagLink{}, err
	}
	for _, k := range kids {
		tsize += k.tsize
	}
	return blk, dagLink{c: blk.Cid(), fileSize: fileSize, tsize: tsize + uint64(out.Len())}, nil
}

func newBlock(p cid.Prefix, data []byte) (blocks.Block, error) {
	c, err := p.Sum(data)
	if err != nil {
		return nil, err
	}
	return blocks.NewBlockWithCid(data, c)
}

// readFile reassembles the bytes of a file DAG built by buildFileDAG (raw
// leaves under dag-pb nodes) from get, depth first.
func readFile(root cid.Cid, get func(cid.Cid) (blocks.Block, bool), w io.Writer) error {
	blk, ok := get(root)
	if !ok {
		return fmt.Errorf("block %s missing", root)
	}
	if root.Prefix().Codec == cid.Raw {
		_, err := w.Write(blk.RawData())
		return err
	}
	links, err := Links(blk)
	if err != nil {
		return err
	}
	for _, l := range links {
		if err := readFile(l, get, w); err != nil {
			return err
		}
	}
	return nil
}
