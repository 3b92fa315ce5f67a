// Package boxocompat adapts gobitswap to boxo's interfaces, for
// applications that move from boxo's bitswap (or use boxo's blockservice,
// merkledag and the rest over gobitswap). It is a module of its own, so
// that the library itself never depends on boxo.
//
// What needs no adapter: a boxo blockstore.Blockstore is a
// gobitswap blockstore.Blockstore and the other way round, a
// *bitswap.Bitswap is a boxo exchange.Interface and a *session.Session an
// exchange.Fetcher. Exchange adds exchange.SessionExchange, which boxo's
// blockservice looks for to fetch a DAG through one Session. Tracer and
// BlockReceivedNotifier take boxo's tracer.Tracer and
// client.BlockReceivedNotifier as they are. docs/migrating-from-boxo.md
// maps boxo's bitswap options and calls to ours, one by one.
package boxocompat

import (
	"context"

	"github.com/ipfs/boxo/bitswap/client"
	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	"github.com/ipfs/boxo/bitswap/tracer"
	"github.com/ipfs/boxo/exchange"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/message"
)

// Exchange returns b as boxo's exchange.SessionExchange, for
// blockservice.New(bs, boxocompat.Exchange(b)). GetBlock, GetBlocks,
// NotifyNewBlocks and Close are b's own (each GetBlock or GetBlocks call
// runs a Session of its own); NewSession returns one of b's Sessions
// (b.NewSession) as an exchange.Fetcher, so that a blockservice.Session, and
// the merkledag walks over one, fetch a whole DAG through a single Session
// that asks first the peers that served the DAG so far. The Session ends
// when NewSession's context does, or when b closes. Close closes b: a
// blockservice owns its exchange and closes it with itself.
//
// Exchange(nil) is nil, which boxo's blockservice takes as offline.
func Exchange(b *bitswap.Bitswap) exchange.SessionExchange {
	if b == nil {
		return nil
	}
	return sessionExchange{b}
}

type sessionExchange struct{ *bitswap.Bitswap }

func (e sessionExchange) NewSession(ctx context.Context) exchange.Fetcher {
	return e.Bitswap.NewSession(ctx)
}

// BlockReceivedNotifier returns the option that tells n of the blocks each
// message brought that some Session wanted, as boxo's
// client.WithBlockReceivedNotifier does (a boxo server is one; ours needs
// none, its Ledger is told already). n runs in the sending peer's delivery
// goroutine and must not block for long. The delay each block was waited
// for, which n cannot be told, is in bitswap.WithBlockReceivedNotifier.
// nil n: none.
func BlockReceivedNotifier(n client.BlockReceivedNotifier) bitswap.Option {
	if n == nil {
		return bitswap.WithBlockReceivedNotifier(nil)
	}
	return bitswap.WithBlockReceivedNotifier(func(from peer.ID, blks []bitswap.ReceivedBlock) {
		out := make([]blocks.Block, len(blks))
		for i, b := range blks {
			out[i] = b.Block
		}
		n.ReceivedBlocks(from, out)
	})
}

// Tracer returns the option that shows t every message the node sends and
// receives (bitswap.WithTracer), each converted to boxo's
// bsmsg.BitSwapMessage: a copy of the wantlist, blocks, presences and
// pending bytes. Unlike boxo's, the messages sent include the client's
// wantlists, not only the server's answers. The copy costs an allocation
// per message and entry; a bitswap.Tracer sees our messages without it.
// nil t: none.
func Tracer(t tracer.Tracer) bitswap.Option {
	if t == nil {
		return bitswap.WithTracer(nil)
	}
	return bitswap.WithTracer(boxoTracer{t})
}

type boxoTracer struct{ t tracer.Tracer }

func (b boxoTracer) MessageReceived(from peer.ID, msg *message.Message) {
	b.t.MessageReceived(from, toBoxoMessage(msg))
}

func (b boxoTracer) MessageSent(to peer.ID, msg *message.Message) {
	b.t.MessageSent(to, toBoxoMessage(msg))
}

// toBoxoMessage copies m into a boxo message, entry by entry: what boxo's
// network would have decoded from the wire. boxo keys its wantlist by CID,
// so of two entries for one CID the later one wins, as on boxo's receiving
// side.
func toBoxoMessage(m *message.Message) bsmsg.BitSwapMessage {
	out := bsmsg.New(m.Full)
	for _, e := range m.Wantlist {
		if e.Cancel {
			out.Cancel(e.Cid)
			continue
		}
		wt := pb.Message_Wantlist_Block
		if e.WantType == message.WantHave {
			wt = pb.Message_Wantlist_Have
		}
		out.AddEntry(e.Cid, e.Priority, wt, e.SendDontHave)
	}
	for _, b := range m.Blocks {
		out.AddBlock(b)
	}
	for _, p := range m.BlockPresences {
		if p.Type == message.Have {
			out.AddHave(p.Cid)
		} else {
			out.AddDontHave(p.Cid)
		}
	}
	out.SetPendingBytes(m.PendingBytes)
	return out
}
