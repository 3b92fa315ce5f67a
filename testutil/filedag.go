package testutil

import (
	"bytes"
	"fmt"
	"io"
	mrand "math/rand"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	dagpb "github.com/ipld/go-codec-dagpb"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/codec/dagjson"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/gobitswap/bitswap/dag"
)

var (
	rawPrefix   = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	dagpbPrefix = cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}
)

// FileDAG is a UnixFS-like file: raw leaves under dag-pb nodes.
type FileDAG struct {
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

// BuildFileDAG reads r to the end and builds a balanced UnixFS-style file
// DAG over it: raw leaves of leafSize bytes, dag-pb nodes of at most fanout
// links each (carrying a UnixFS File Data field, so Kubo reads the file), up
// to a single root. An empty input gives a single empty raw leaf.
func BuildFileDAG(r io.Reader, leafSize, fanout int) (*FileDAG, error) {
	d := &FileDAG{Depth: 1}
	var level []dagLink
	buf := make([]byte, leafSize)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 || (len(level) == 0 && err == io.EOF) {
			data := bytes.Clone(buf[:n])
			blk, berr := newDAGBlock(rawPrefix, data)
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
	blk, err := newDAGBlock(dagpbPrefix, out.Bytes())
	if err != nil {
		return nil, dagLink{}, err
	}
	for _, k := range kids {
		tsize += k.tsize
	}
	return blk, dagLink{c: blk.Cid(), fileSize: fileSize, tsize: tsize + uint64(out.Len())}, nil
}

func newDAGBlock(p cid.Prefix, data []byte) (blocks.Block, error) {
	c, err := p.Sum(data)
	if err != nil {
		return nil, err
	}
	return blocks.NewBlockWithCid(data, c)
}

// ReadFile reassembles the bytes of a file DAG built by BuildFileDAG (raw
// leaves under dag-pb nodes) from get, depth first.
func ReadFile(root cid.Cid, get func(cid.Cid) (blocks.Block, bool), w io.Writer) error {
	blk, ok := get(root)
	if !ok {
		return fmt.Errorf("block %s missing", root)
	}
	if root.Prefix().Codec == cid.Raw {
		_, err := w.Write(blk.RawData())
		return err
	}
	links, err := dag.Links(blk)
	if err != nil {
		return err
	}
	for _, l := range links {
		if err := ReadFile(l, get, w); err != nil {
			return err
		}
	}
	return nil
}

// MixedDAG builds a DAG of every codec a walk must read: a dag-cbor root
// linking, in a map and a list, to a dag-json node, a raw block and a
// file DAG of fileSize random bytes (BuildFileDAG, 16 KiB leaves, fanout
// 4), which the dag-json node links to as well. It returns the root and
// the blocks, root first and the file's blocks last (its leaves first).
func MixedDAG(seed int64, fileSize int) (cid.Cid, []blocks.Block, error) {
	data := make([]byte, fileSize)
	_, _ = mrand.New(mrand.NewSource(seed)).Read(data)
	file, err := BuildFileDAG(bytes.NewReader(data), 16<<10, 4)
	if err != nil {
		return cid.Undef, nil, err
	}
	raw, err := newDAGBlock(rawPrefix, []byte(fmt.Sprintf("a raw block, seed %d", seed)))
	if err != nil {
		return cid.Undef, nil, err
	}
	jn, err := qp.BuildMap(basicnode.Prototype.Any, 2, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "note", qp.String("dag-json"))
		qp.MapEntry(ma, "file", qp.Link(cidlink.Link{Cid: file.Root}))
	})
	if err != nil {
		return cid.Undef, nil, err
	}
	js, err := encodeNode(cid.DagJSON, jn)
	if err != nil {
		return cid.Undef, nil, err
	}
	cn, err := qp.BuildMap(basicnode.Prototype.Any, 2, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "json", qp.Link(cidlink.Link{Cid: js.Cid()}))
		qp.MapEntry(ma, "list", qp.List(2, func(la datamodel.ListAssembler) {
			qp.ListEntry(la, qp.Link(cidlink.Link{Cid: raw.Cid()}))
			qp.ListEntry(la, qp.Link(cidlink.Link{Cid: file.Root}))
		}))
	})
	if err != nil {
		return cid.Undef, nil, err
	}
	root, err := encodeNode(cid.DagCBOR, cn)
	if err != nil {
		return cid.Undef, nil, err
	}
	return root.Cid(), append([]blocks.Block{root, js, raw}, file.Blocks...), nil
}

func encodeNode(codec uint64, n datamodel.Node) (blocks.Block, error) {
	var buf bytes.Buffer
	var err error
	switch codec {
	case cid.DagCBOR:
		err = dagcbor.Encode(n, &buf)
	case cid.DagJSON:
		err = dagjson.Encode(n, &buf)
	default:
		err = fmt.Errorf("codec %d: not dag-cbor or dag-json", codec)
	}
	if err != nil {
		return nil, err
	}
	return newDAGBlock(cid.Prefix{Version: 1, Codec: codec, MhType: mh.SHA2_256, MhLength: -1}, buf.Bytes())
}
