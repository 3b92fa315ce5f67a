package main

import (
	"context"
	"sync"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// keyStore is the blockstore of a `get` that writes a CAR and keeps no
// repo: it remembers which blocks arrived (so that late copies count as
// duplicates, not as blocks nobody asked for) and drops their data, which
// has gone to the CAR. It costs a multihash per block, not the block.
// Reads find nothing, so the node serves nothing.
type keyStore struct {
	mu   sync.Mutex
	keys map[string]struct{} // multihash
}

func newKeyStore() *keyStore { return &keyStore{keys: make(map[string]struct{})} }

func (s *keyStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[string(c.Hash())]
	return ok, nil
}

func (s *keyStore) Put(ctx context.Context, b blocks.Block) error {
	return s.PutMany(ctx, []blocks.Block{b})
}

func (s *keyStore) PutMany(_ context.Context, bs []blocks.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range bs {
		s.keys[string(b.Cid().Hash())] = struct{}{}
	}
	return nil
}

func (s *keyStore) DeleteBlock(_ context.Context, c cid.Cid) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, string(c.Hash()))
	return nil
}

func (s *keyStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	return nil, ipld.ErrNotFound{Cid: c}
}

func (s *keyStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	return 0, ipld.ErrNotFound{Cid: c}
}

// AllKeysChan lists nothing: no block can be read back.
func (s *keyStore) AllKeysChan(context.Context) (<-chan cid.Cid, error) {
	ch := make(chan cid.Cid)
	close(ch)
	return ch, nil
}
