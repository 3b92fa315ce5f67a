// Package pq is an indexed priority queue: a binary heap whose items record
// their position, so that one can be removed or re-ordered in O(log n). The
// Engine's task and want queues, the Sessions' pending wants and the
// WantManager's per-peer queues all use it.
//
// It owns nothing but the order of its items; it is not safe for
// concurrent use (each user guards its own).
package pq

// Item is what a Heap holds, usually a pointer to a struct.
type Item[T any] interface {
	// Less reports whether the item goes before other.
	Less(other T) bool
	// SetIndex records the item's position in the heap, -1 when it leaves.
	SetIndex(i int)
}

// Heap is a min-heap by Less. The zero value is an empty heap.
type Heap[T Item[T]] struct {
	items []T
}

// Len returns the number of items.
func (h *Heap[T]) Len() int { return len(h.items) }

// At returns the item at position i (0 is the least); for iteration in no
// particular order.
func (h *Heap[T]) At(i int) T { return h.items[i] }

// Push adds x.
func (h *Heap[T]) Push(x T) {
	h.items = append(h.items, x)
	x.SetIndex(len(h.items) - 1)
	h.up(len(h.items) - 1)
}

// Pop removes and returns the least item. The heap must not be empty.
func (h *Heap[T]) Pop() T { return h.Remove(0) }

// Remove removes and returns the item at position i.
func (h *Heap[T]) Remove(i int) T {
	n := len(h.items) - 1
	if i != n {
		h.swap(i, n)
		if !h.down(i, n) {
			h.up(i)
		}
	}
	x := h.items[n]
	var zero T
	h.items[n] = zero
	h.items = h.items[:n]
	x.SetIndex(-1)
	return x
}

// Fix restores the order after the item at position i changed.
func (h *Heap[T]) Fix(i int) {
	if !h.down(i, len(h.items)) {
		h.up(i)
	}
}

// Clear removes every item.
func (h *Heap[T]) Clear() {
	for _, x := range h.items {
		x.SetIndex(-1)
	}
	clear(h.items)
	h.items = h.items[:0]
}

func (h *Heap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].SetIndex(i)
	h.items[j].SetIndex(j)
}

func (h *Heap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.items[j].Less(h.items[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

// down sifts the item at i0 down within the first n items and reports
// whether it moved.
func (h *Heap[T]) down(i0, n int) bool {
	i := i0
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			break
		}
		j := l
		if r := l + 1; r < n && h.items[r].Less(h.items[l]) {
			j = r
		}
		if !h.items[j].Less(h.items[i]) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
