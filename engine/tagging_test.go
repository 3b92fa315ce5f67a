package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/ledger"
)

// fakeTagger records tag calls and the tags they leave.
type fakeTagger struct {
	mu    sync.Mutex
	tags  map[peer.ID]int
	calls []string
}

func newFakeTagger() *fakeTagger { return &fakeTagger{tags: make(map[peer.ID]int)} }

func (f *fakeTagger) TagPeer(p peer.ID, tag string, v int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("tag %s %s %d", string(p), tag, v))
	f.tags[p] = v
}

func (f *fakeTagger) UntagPeer(p peer.ID, tag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("untag %s %s", string(p), tag))
	delete(f.tags, p)
}

func (f *fakeTagger) value(p peer.ID) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.tags[p]
	return v, ok
}

func (f *fakeTagger) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func TestEngineTagsPeersWhileServingThemAndAWhileAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec, tg := newFakeStore(), newRecorder(), newFakeTagger()
		rec.gate = make(chan struct{})
		e := New(store, rec, ledger.New(), WithPeerTagger(tg, 3))
		e.Start()
		defer e.Close()
		ctx := context.Background()

		// A want for a block we lack: tagged only while we look, untagged
		// at once once it is parked (we sent nothing).
		e.MessageReceived(ctx, "idle", wantBlocks([]cid.Cid{testCid(t, 900)}))
		synctest.Wait()
		if _, ok := tg.value("idle"); ok {
			t.Fatal("a peer whose wants are all parked is still tagged")
		}

		e.MessageReceived(ctx, "a", wantBlocks(storeBlocks(t, store, 0, 4, 1024)))
		synctest.Wait()
		if v, ok := tg.value("a"); !ok || v != 3 {
			t.Fatalf("while its blocks wait to be sent: tag %d (%v), want 3", v, ok)
		}
		close(rec.gate)
		rec.waitFor(t, "4 blocks", func(s []sent) bool { return countBlocks(s, "a") == 4 })
		if _, ok := tg.value("a"); !ok {
			t.Fatal("untagged as soon as its work ran out")
		}
		// New work while the tag lingers keeps the tag, without a new call.
		e.MessageReceived(ctx, "a", wantBlocks(storeBlocks(t, store, 10, 1, 1024)))
		rec.waitFor(t, "the 5th block", func(s []sent) bool { return countBlocks(s, "a") == 5 })
		time.Sleep(DefaultTagLinger - time.Millisecond)
		if _, ok := tg.value("a"); !ok {
			t.Fatal("untagged before the linger since its last work")
		}
		time.Sleep(2 * time.Millisecond)
		if _, ok := tg.value("a"); ok {
			t.Fatal("still tagged after the linger")
		}
		want := []string{"tag idle bs-engine-queued 3", "untag idle bs-engine-queued",
			"tag a bs-engine-queued 3", "untag a bs-engine-queued"}
		if got := tg.log(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("calls %q, want %q", got, want)
		}
	})
}

func TestEngineUntagsAtOnceOnDisconnectAndOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec, tg := newFakeStore(), newRecorder(), newFakeTagger()
		rec.gate = make(chan struct{})
		e := New(store, rec, ledger.New(), WithPeerTagger(tg, 3))
		e.Start()
		ctx := context.Background()
		e.MessageReceived(ctx, "a", wantBlocks(storeBlocks(t, store, 0, 4, 1024)))
		e.MessageReceived(ctx, "b", wantBlocks(storeBlocks(t, store, 10, 4, 1024)))
		synctest.Wait()
		e.PeerDisconnected("a")
		if _, ok := tg.value("a"); ok {
			t.Fatal("a disconnected peer is still tagged")
		}
		if _, ok := tg.value("b"); !ok {
			t.Fatal("b is not tagged")
		}
		e.Close()
		if _, ok := tg.value("b"); ok {
			t.Fatal("still tagged after Close")
		}
		close(rec.gate)
		synctest.Wait()
		// Sends cut short by Close, and their outcome, tag nobody again.
		tg.mu.Lock()
		defer tg.mu.Unlock()
		if len(tg.tags) > 0 {
			t.Fatalf("tags left after Close: %v", tg.tags)
		}
	})
}

func TestEngineWithoutLingerUntagsAsTheWorkRunsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec, tg := newFakeStore(), newRecorder(), newFakeTagger()
		e := New(store, rec, ledger.New(), WithPeerTagger(tg, 1), WithTagLinger(-1))
		e.Start()
		defer e.Close()
		e.MessageReceived(context.Background(), "a", wantBlocks(storeBlocks(t, store, 0, 2, 1024)))
		rec.waitFor(t, "2 blocks", func(s []sent) bool { return countBlocks(s, "a") == 2 })
		if _, ok := tg.value("a"); ok {
			t.Fatal("still tagged with no work and no linger")
		}
		if n := len(tg.log()); n != 2 {
			t.Fatalf("%d calls, want a tag and an untag: %q", n, tg.log())
		}
	})
}

func TestEngineTagsNothingWithoutATagger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		// A tagger with value 0 is none, as the option says.
		tg := newFakeTagger()
		e := New(store, rec, ledger.New(), WithPeerTagger(tg, 0))
		e.Start()
		defer e.Close()
		e.MessageReceived(context.Background(), "a", wantBlocks(storeBlocks(t, store, 0, 2, 1024)))
		rec.waitFor(t, "2 blocks", func(s []sent) bool { return countBlocks(s, "a") == 2 })
		if n := len(tg.log()); n != 0 {
			t.Fatalf("%d calls with value 0", n)
		}
	})
}
