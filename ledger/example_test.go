package ledger_test

import (
	"fmt"

	"github.com/gobitswap/bitswap/ledger"
)

func Example() {
	l := ledger.New(ledger.WithMaxPeers(1024))
	p := testPeer(1)

	// The engine records each block it sends; the block router each block
	// it receives.
	l.SentBlock(p, 3000)
	l.ReceivedBlock(p, 999)
	l.ReceivedBlock(p, 500)

	r := l.Receipt(p)
	fmt.Printf("sent %d bytes in %d blocks, received %d bytes in %d blocks\n",
		r.Sent, r.BlocksSent, r.Recv, r.BlocksReceived)
	fmt.Printf("exchanged %d blocks, debt ratio %.2f\n", r.Exchanged, r.Value)
	// Output:
	// sent 3000 bytes in 1 blocks, received 1499 bytes in 2 blocks
	// exchanged 3 blocks, debt ratio 2.00
}
