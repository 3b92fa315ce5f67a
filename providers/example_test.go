package providers_test

import (
	"context"
	"fmt"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/providers"
	"github.com/gobitswap/bitswap/testutil"
)

// table is content routing that knows, for each CID, who provides it, and
// answers once answer is closed (a router takes time to answer).
type table struct {
	provs  map[cid.Cid][]peer.ID
	answer <-chan struct{}
}

func (t table) FindProvidersAsync(ctx context.Context, c cid.Cid, _ int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, len(t.provs[c]))
	go func() {
		defer close(out)
		select {
		case <-t.answer:
		case <-ctx.Done():
			return
		}
		for _, p := range t.provs[c] {
			out <- peer.AddrInfo{ID: p}
		}
	}()
	return out
}

// network connects to anyone but a peer that is down.
type network struct{ self, down peer.ID }

func (n network) Self() peer.ID { return n.self }
func (n network) Connect(_ context.Context, ai peer.AddrInfo) error {
	if ai.ID == n.down {
		return fmt.Errorf("%s is down", ai.ID)
	}
	return nil
}

// Two Sessions ask for the providers of one block: one query runs, the
// other ask joins it. Content routing names four peers: this node, which
// is skipped, one on the ignore list, one that is down, and one that is
// connected and handed on, for the Sessions to hear of (in the library,
// through the PeerRouter).
func Example() {
	me, ignored, down, good := testutil.PeerID(1), testutil.PeerID(2), testutil.PeerID(3), testutil.PeerID(4)
	c := testutil.RandomBlocks(1, 1, 100)[0].Cid()
	names := map[peer.ID]string{good: "good"}

	handed := make(chan peer.ID, 4)
	answer := make(chan struct{})
	f := providers.New(table{map[cid.Cid][]peer.ID{c: {me, ignored, down, good}}, answer}, network{self: me, down: down},
		func(p peer.ID, _ cid.Cid) { handed <- p },
		providers.Config{Ignore: []peer.ID{ignored}})
	defer f.Close()

	session1, session2 := context.Background(), context.Background()
	fmt.Println("first ask:", f.Find(session1, c))
	fmt.Println("second ask:", f.Find(session2, c))
	close(answer) // the router answers the one query both asks wait on
	fmt.Println("handed on:", names[<-handed])
	f.Close() // ends the query, and waits for it
	st := f.Stat()
	fmt.Printf("queries %d, joined %d; records %d, ignored %d, connected %d\n",
		st.Started, st.Joined, st.Records, st.Ignored, st.Connected)
	// Output:
	// first ask: started
	// second ask: joined
	// handed on: good
	// queries 1, joined 1; records 4, ignored 2, connected 1
}
