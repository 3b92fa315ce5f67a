package session

import (
	"context"
	"sync"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// request is one GetBlocks call. The Session's goroutine owns every field
// but pump's, which has its own lock.
//
// A request holds a bounded amount of undelivered block data (the
// Session's RequestBuffer): it asks for its CIDs (locally, then of peers)
// only while the bytes its reader has not taken, plus the blocks it waits
// for counted at the largest block seen (at least 256 KiB), fit in the
// buffer. So a slow reader slows its own request, not the Session's
// others, and an application that asks for 100,000 blocks holds a
// buffer's worth.
type request struct {
	ctx context.Context
	// out is unbuffered: the pump hands blocks over as the reader takes
	// them.
	out chan blocks.Block
	// remaining holds the CIDs not yet delivered: true once admitted
	// (looked up locally, then asked of peers), false while waiting for
	// room in the buffer.
	remaining map[cid.Cid]bool
	// pending lists the CIDs not yet admitted, in the caller's order; a
	// CID delivered meanwhile (another request asked for it) is skipped.
	pending  []cid.Cid
	inflight int // admitted and not yet delivered
	held     int // bytes delivered to the pump and not yet taken
	stop     func() bool
	pump     pump
	// span is the request's delivery ("Bitswap.Client.Getter.handleIncoming"),
	// used and ended by the pump goroutine alone once it runs.
	span trace.Span
}

// pump is a request's delivery queue: the Session appends, the pump
// goroutine (runPump) hands the blocks to the reader one at a time.
type pump struct {
	mu    sync.Mutex // guards queue and last
	queue []blocks.Block
	last  bool          // nothing more will be queued: close out once drained
	wake  chan struct{} // capacity 1: the queue or last changed
	abort chan struct{} // closed when the request is cut short: close out at once
}

func (p *pump) push(b blocks.Block) {
	p.mu.Lock()
	p.queue = append(p.queue, b)
	p.mu.Unlock()
	p.signal()
}

// finish says no more blocks will come: complete, the reader still gets
// those queued; otherwise (cancelled, Session closed) they are dropped.
func (p *pump) finish(complete bool) {
	if !complete {
		close(p.abort)
		return
	}
	p.mu.Lock()
	p.last = true
	p.mu.Unlock()
	p.signal()
}

func (p *pump) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// next returns the next block to hand over; ok is false when the queue is
// empty, and last then says whether that is the end.
func (p *pump) next() (b blocks.Block, ok, last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return nil, false, p.last
	}
	b = p.queue[0]
	p.queue[0] = nil
	p.queue = p.queue[1:]
	return b, true, false
}

// runPump hands r's blocks to its reader and tells the Session of each one
// taken, so that it can ask for more. It ends, closing r.out, when the
// queue is drained after the last block, when the request is cut short,
// when r's context ends or when the Session is closed (s.kill).
func (s *Session) runPump(r *request) {
	defer s.wg.Done()
	defer r.span.End()
	defer close(r.out)
	p := &r.pump
	for {
		b, ok, last := p.next()
		if !ok {
			if last {
				return
			}
			select {
			case <-p.wake:
				continue
			case <-p.abort:
			case <-r.ctx.Done():
			case <-s.kill.Done():
			}
			return
		}
		if r.span.IsRecording() {
			// boxo's event, with its name and attribute (ProbeLab's scripts
			// read them).
			r.span.AddEvent("received block", trace.WithAttributes(attribute.String("cid", b.Cid().String())))
		}
		select {
		case r.out <- b:
			s.post(event{kind: evTaken, req: r, size: len(b.RawData())})
		case <-p.abort:
			return
		case <-r.ctx.Done():
			return
		case <-s.kill.Done():
			return
		}
	}
}

// minBlockEstimate is the least size admit assumes of a block it waits
// for: 256 KiB, the chunk size of Kubo's and boxo's importers. The
// estimate is the largest block the Session has seen, never less, so the
// buffer holds as long as no block is larger than one seen before (the
// mean would not: a DAG's small inner nodes come first and would let a
// request ask for far more leaves than fit). A first request of blocks
// over 256 KiB may overshoot until one of them has arrived.
const minBlockEstimate = 256 << 10

// admit asks for r's next CIDs while they fit in its buffer (see request).
// One want is always admitted when nothing is held or awaited, so a buffer
// smaller than a block still makes progress.
func (s *Session) admit(r *request) {
	buf := s.cfg.RequestBuffer
	est := max(minBlockEstimate, s.largest)
	var fresh []cid.Cid
	for len(r.pending) > 0 {
		if buf > 0 && r.held+(r.inflight+1)*est > buf && (r.inflight > 0 || r.held > 0) {
			break
		}
		c := r.pending[0]
		r.pending = r.pending[1:]
		admitted, ok := r.remaining[c]
		if !ok || admitted {
			continue
		}
		r.remaining[c] = true
		r.inflight++
		if !s.active(c) {
			fresh = append(fresh, c)
		}
	}
	if len(r.pending) == 0 {
		r.pending = nil
	}
	if len(fresh) > 0 {
		s.lookUp(fresh)
	}
}

// active reports whether the Session is already getting c: looking it up
// locally, or asking peers (the Policy has it).
func (s *Session) active(c cid.Cid) bool {
	if _, ok := s.lookingUp[c]; ok {
		return true
	}
	return s.policy.Has(c)
}
