package routinghttp_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	blocks "github.com/ipfs/go-block-format"

	"github.com/gobitswap/bitswap/routinghttp"
)

// A Client finds providers; give it to bitswap.WithContentRouting to let
// Sessions find peers through the endpoint.
func Example() {
	// A stand-in for a Routing V1 endpoint such as https://delegated-ipfs.dev.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"Providers":[{"Schema":"peer","ID":"12D3KooWSWYE2m7nDgvvkyzaDcHWbY6bf5Tf5MnHTZT1K9u7j6pC","Addrs":["/ip4/127.0.0.1/tcp/4001"],"Protocols":["transport-bitswap"]}]}`)
	}))
	defer srv.Close()

	c, err := routinghttp.New(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	k := blocks.NewBlock([]byte("hello")).Cid()
	provs, err := c.FindProviders(context.Background(), k)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range provs {
		fmt.Println(p.ID, p.Addrs)
	}
	// Output: 12D3KooWSWYE2m7nDgvvkyzaDcHWbY6bf5Tf5MnHTZT1K9u7j6pC [/ip4/127.0.0.1/tcp/4001]
}
