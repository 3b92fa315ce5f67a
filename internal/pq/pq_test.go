package pq

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type item struct {
	v, idx int
}

func (a *item) Less(b *item) bool { return a.v < b.v }
func (a *item) SetIndex(i int)    { a.idx = i }

func check(t *testing.T, h *Heap[*item]) {
	t.Helper()
	for i := 0; i < h.Len(); i++ {
		if h.At(i).idx != i {
			t.Fatalf("item at %d records index %d", i, h.At(i).idx)
		}
		if i > 0 && h.At(i).Less(h.At((i-1)/2)) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
}

// Random pushes, removals, fixes and pops keep every item's index true and
// pop in sorted order.
func TestHeapAgainstSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Heap[*item]
	var live []*item
	for step := 0; step < 5000; step++ {
		switch op := r.IntN(4); {
		case op <= 1 || len(live) == 0:
			x := &item{v: r.IntN(1000)}
			h.Push(x)
			live = append(live, x)
		case op == 2:
			k := r.IntN(len(live))
			x := live[k]
			if got := h.Remove(x.idx); got != x || x.idx != -1 {
				t.Fatal("Remove returned another item or left its index")
			}
			live = slices.Delete(live, k, k+1)
		default:
			x := live[r.IntN(len(live))]
			x.v = r.IntN(1000)
			h.Fix(x.idx)
		}
		check(t, &h)
	}
	var want []int
	for _, x := range live {
		want = append(want, x.v)
	}
	slices.Sort(want)
	for i, v := range want {
		if got := h.Pop().v; got != v {
			t.Fatalf("pop %d = %d, want %d", i, got, v)
		}
	}
	h.Push(&item{})
	h.Clear()
	if h.Len() != 0 {
		t.Fatal("Clear left items")
	}
}
