package httpnet_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/httpnet"
	"github.com/gobitswap/bitswap/testutil"
)

// One Bitswap seed and one gateway, each holding the whole data set over
// a link of the same latency and bandwidth: one Session using both
// (through a Router) finishes within 1.1x the two-source bound (the time
// to move the bytes over both links at once, plus a round trip) with no
// duplicate (measured: 1.00x, 128 blocks from each). Both are connected
// before the fetch starts: a peer that connects while a Session has every
// want queued at another gets none of them (a Policy matter).
func TestSeedPlusGatewayVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			oneWay    = 20 * time.Millisecond
			bandwidth = 8 << 20 // bytes/s, each source
			n, size   = 256, 64 << 10
		)
		blks := testutil.RandomBlocks(9, n, size)
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		defer vn.Close()
		seedNet, leechNet := vn.NewPeer(), vn.NewPeer()
		seedStore := blockstore.NewMemory()
		if err := seedStore.PutMany(context.Background(), blks); err != nil {
			t.Fatal(err)
		}
		seed := bitswap.New(context.Background(), seedNet, seedStore)
		defer seed.Close()

		ep := testutil.NewHTTPEndpoint(newGateway(false, blks...), oneWay, bandwidth)
		hn := httpnet.New(httpnet.WithSelf(leechNet.Self()), httpnet.WithTransport(ep))
		router := httpnet.NewRouter(leechNet, hn)
		leech := bitswap.New(context.Background(), router, blockstore.NewMemory(), bitswap.WithServerEnabled(false))
		defer leech.Close()
		if _, err := hn.ConnectURL(context.Background(), "https://gw.example"); err != nil {
			t.Fatal(err)
		}
		vn.ConnectAll()
		synctest.Wait() // both connections reported before the fetch starts
		if st, _ := leech.Stat(); len(st.Peers) != 2 {
			t.Fatalf("peers %v", st.Peers)
		}

		start := time.Now()
		fetchAll(t, leech, blks)
		took := time.Since(start)
		st, _ := leech.Stat()
		hs := hn.HTTPStats()
		total := time.Duration(int64(n*size) * int64(time.Second) / (2 * bandwidth))
		bound := total + 2*oneWay
		t.Logf("%v for %d × %d KiB (two-source bound %v: %.2fx); %d over HTTP, %d over Bitswap, %d duplicates",
			took, n, size>>10, bound, float64(took)/float64(bound), hs.Blocks, st.BlocksReceived-hs.Blocks, st.DupBlksReceived)
		if st.DupBlksReceived != 0 || took > bound*11/10 {
			t.Fatalf("took %v (bound %v), %d duplicates", took, bound, st.DupBlksReceived)
		}
	})
}

// A throttling gateway (429 with Retry-After: 1 for its first requests)
// delays only its own requests: the fetch completes, the cooldown is
// waited out in virtual time.
func TestThrottlingEndpointVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		blks := testutil.RandomBlocks(10, 20, 4<<10)
		ep := testutil.NewHTTPEndpoint(newGateway(false, blks...), 10*time.Millisecond, 0)
		throttled := 0
		ep.Throttle = func(r *http.Request) (time.Duration, bool) {
			if r.URL.Path == "/ipfs/bafkqaaa" || throttled >= 1 {
				return 0, false
			}
			throttled++
			return time.Second, true
		}
		hn := httpnet.New(httpnet.WithTransport(ep))
		bsw := bitswap.New(context.Background(), hn, blockstore.NewMemory(), bitswap.WithServerEnabled(false))
		defer bsw.Close()
		if _, err := hn.ConnectURL(context.Background(), "https://gw.example"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		fetchAll(t, bsw, blks)
		took := time.Since(start)
		hs := hn.HTTPStats()
		t.Logf("%v; %+v", took, hs)
		if hs.Throttled != 1 || hs.Blocks != 20 || took < time.Second {
			t.Fatalf("took %v; %+v", took, hs)
		}
	})
}
