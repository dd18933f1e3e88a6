// Package testkit is what the tests of several packages share: a buffer
// that goroutines may log into while a test reads it, a settable clock, a
// snapshot source, a wait for a condition with a deadline, and the Go registry
// library's reading of entries. It is imported by tests only.
package testkit

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
)

// Buffer collects what concurrent writers write, such as a server's logs.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Reset empties the buffer.
func (b *Buffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// Clock is a settable clock, safe for concurrent use; its Now is what
// components take as their clock.
type Clock struct{ t atomic.Int64 }

// NewClock returns a clock that reads t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

func (c *Clock) Now() time.Time      { return time.Unix(0, c.t.Load()).UTC() }
func (c *Clock) Set(t time.Time)     { c.t.Store(t.UnixNano()) }
func (c *Clock) Add(d time.Duration) { c.t.Add(int64(d)) }

// WaitFor polls cond until it holds or timeout passes, and returns how long
// it took. On timeout it fails the test with what, and the last state cond
// described.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v (last: %s)", what, timeout, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Until adapts a condition with nothing to say of its state for WaitFor.
func Until(cond func() bool) func() (bool, string) {
	return func() (bool, string) { return cond(), "not yet" }
}

// Source is a model.SnapshotNotifier that tests drive: Publish swaps in a
// snapshot and announces it, as the poller does a changed one; Swap swaps
// one in without announcing it, as the poller does one that only refreshes
// sync times.
type Source struct {
	snap atomic.Pointer[model.Snapshot]
	pub  atomic.Pointer[chan struct{}]
}

// NewSource returns a Source that holds snap.
func NewSource(snap *model.Snapshot) *Source {
	s := &Source{}
	s.snap.Store(snap)
	ch := make(chan struct{})
	s.pub.Store(&ch)
	return s
}

func (s *Source) Snapshot() *model.Snapshot  { return s.snap.Load() }
func (s *Source) Published() <-chan struct{} { return *s.pub.Load() }

// Publish swaps snap in and announces it.
func (s *Source) Publish(snap *model.Snapshot) {
	s.snap.Store(snap)
	next := make(chan struct{})
	close(*s.pub.Swap(&next))
}

// Swap swaps snap in without announcing it.
func (s *Source) Swap(snap *model.Snapshot) { s.snap.Store(snap) }
