package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/ipfs/go-unixfsnode/data"
	"github.com/ipfs/go-unixfsnode/file"
	dagpb "github.com/ipld/go-codec-dagpb"
	"github.com/ipld/go-ipld-prime"
	_ "github.com/ipld/go-ipld-prime/codec/raw" // registers raw, for the file's leaves
	"github.com/ipld/go-ipld-prime/datamodel"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mc "github.com/multiformats/go-multicodec"

	"github.com/gobitswap/bitswap/blockstore"
)

// unixfsInfo is what one block says about the UnixFS file it belongs to.
type unixfsInfo struct {
	file     bool   // a UnixFS file node (File or Raw), or a raw block
	fileSize int64  // the file's size under this node, -1 if the node does not say
	data     int    // file bytes in the block itself
	what     string // what the block is, when it is not a file ("a UnixFS directory")
}

// decodeUnixFS reads blk as a UnixFS node. A raw block is a whole file
// (a leaf). A dag-pb node is a file when its Data is a UnixFS File or Raw.
// Anything else is not a file, and what says what it is; err is for a
// dag-pb node that does not decode.
func decodeUnixFS(blk blocks.Block) (unixfsInfo, error) {
	codec := blk.Cid().Prefix().Codec
	switch codec {
	case cid.Raw:
		n := len(blk.RawData())
		return unixfsInfo{file: true, fileSize: int64(n), data: n}, nil
	case cid.DagProtobuf:
	default:
		return unixfsInfo{what: codecName(codec)}, nil
	}
	nb := dagpb.Type.PBNode.NewBuilder()
	if err := dagpb.DecodeBytes(nb, blk.RawData()); err != nil {
		return unixfsInfo{}, fmt.Errorf("block %s: decoding dag-pb: %w", blk.Cid(), err)
	}
	pn := nb.Build().(dagpb.PBNode)
	if !pn.FieldData().Exists() {
		return unixfsInfo{what: "a dag-pb node without UnixFS data"}, nil
	}
	ud, err := data.DecodeUnixFSData(pn.FieldData().Must().Bytes())
	if err != nil {
		return unixfsInfo{}, fmt.Errorf("block %s: decoding its UnixFS data: %w", blk.Cid(), err)
	}
	switch t := ud.FieldDataType().Int(); t {
	case data.Data_File, data.Data_Raw:
		info := unixfsInfo{file: true, fileSize: -1}
		if d := ud.FieldData(); d.Exists() {
			info.data = len(d.Must().Bytes())
		}
		if fs := ud.FieldFileSize(); fs.Exists() && fs.Must().Int() >= 0 {
			info.fileSize = fs.Must().Int()
		} else if pn.FieldLinks().Length() == 0 {
			info.fileSize = int64(info.data) // a leaf: its data is the file
		}
		return info, nil
	case data.Data_Directory:
		return unixfsInfo{what: "a UnixFS directory"}, nil
	case data.Data_HAMTShard:
		return unixfsInfo{what: "a UnixFS sharded (HAMT) directory"}, nil
	case data.Data_Symlink:
		return unixfsInfo{what: "a UnixFS symlink"}, nil
	case data.Data_Metadata:
		return unixfsInfo{what: "a UnixFS metadata node"}, nil
	default:
		return unixfsInfo{what: fmt.Sprintf("a dag-pb node of unknown UnixFS type %d", t)}, nil
	}
}

// codecName names a codec for a person: "dag-cbor", or its number.
func codecName(code uint64) string {
	if name := mc.Code(code).String(); name != "" && name != "<unknown>" {
		return name
	}
	return fmt.Sprintf("of codec 0x%x", code)
}

// notAFile is the error for a root that --unixfs-out cannot write.
func notAFile(root cid.Cid, what string) error {
	return inputErrorf("root %s is %s, not a UnixFS file (--unixfs-out wants a file)", root, what)
}

// rootCodecIsFile says, from the CID alone, whether root can be a UnixFS
// file: dag-pb (to be decoded when it arrives) or raw.
func rootCodecIsFile(root cid.Cid) error {
	switch c := root.Prefix().Codec; c {
	case cid.DagProtobuf, cid.Raw:
		return nil
	default:
		return notAFile(root, codecName(c))
	}
}

// linkSystem reads blocks from bs, checking each against its CID.
func linkSystem(bs blockstore.Blockstore) ipld.LinkSystem {
	lsys := cidlink.DefaultLinkSystem()
	lsys.StorageReadOpener = func(lc ipld.LinkContext, l datamodel.Link) (io.Reader, error) {
		cl, ok := l.(cidlink.Link)
		if !ok {
			return nil, fmt.Errorf("link %v is not a CID", l)
		}
		blk, err := bs.Get(lc.Ctx, cl.Cid)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", cl.Cid, err)
		}
		return bytes.NewReader(blk.RawData()), nil
	}
	return lsys
}

// writeUnixFSFile writes the UnixFS file under root, read from bs, to w, in
// order, holding one block per level of the file's DAG at a time. It
// returns the bytes written. A write error is returned as *writeError.
func writeUnixFSFile(ctx context.Context, bs blockstore.Blockstore, root cid.Cid, w io.Writer) (int64, error) {
	lsys := linkSystem(bs)
	var proto datamodel.NodePrototype = basicnode.Prototype.Bytes
	if root.Prefix().Codec == cid.DagProtobuf {
		proto = dagpb.Type.PBNode
	}
	nd, err := lsys.Load(ipld.LinkContext{Ctx: ctx}, cidlink.Link{Cid: root}, proto)
	if err != nil {
		return 0, fmt.Errorf("loading root: %w", err)
	}
	f, err := file.NewUnixFSFile(ctx, nd, &lsys)
	if err != nil {
		return 0, fmt.Errorf("root %s: %w", root, err)
	}
	r, err := f.AsLargeBytes()
	if err != nil {
		return 0, fmt.Errorf("root %s: %w", root, err)
	}
	bw := bufio.NewWriterSize(writeErrors{w}, 1<<20)
	n, err := io.Copy(bw, r)
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// writeError marks an error of the writer, as opposed to one of reading
// the file.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

type writeErrors struct{ w io.Writer }

func (w writeErrors) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}
