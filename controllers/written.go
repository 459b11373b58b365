package controllers

import (
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"
)

// written remembers what this replica last wrote where, so the periodic usage
// passes do not re-send unchanged fleet objects to the API server (four
// PATCHes per invitation every usage interval) or unchanged documents to
// MongoDB. A write is skipped only when its content is the same as last time,
// no watch event marked the target dirty since, and it is younger than resync
// (which heals edits made behind our back, e.g. directly in MongoDB).
type written struct {
	mu     sync.Mutex
	resync time.Duration
	last   map[string]writtenEntry
}

type writtenEntry struct {
	sum [32]byte
	at  time.Time
}

func newWritten(resync time.Duration) *written {
	return &written{resync: resync, last: map[string]writtenEntry{}}
}

// unchanged reports whether v was written to key recently and is the same.
func (w *written) unchanged(key string, v any, now time.Time) bool {
	e, ok := w.lastIfSame(key, v)
	return ok && now.Sub(e.at) < w.resync
}

// same reports whether v is what was last written to key, however long
// ago.
func (w *written) same(key string, v any) bool {
	_, ok := w.lastIfSame(key, v)
	return ok
}

// lastIfSame returns the last write to key when it wrote v.
func (w *written) lastIfSame(key string, v any) (writtenEntry, bool) {
	sum, ok := digest(v)
	if !ok {
		return writtenEntry{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e, found := w.last[key]
	return e, found && e.sum == sum
}

// fresh reports whether something was written to key within resync and no
// watch event or failure has made it forget since.
func (w *written) fresh(key string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, found := w.last[key]
	return found && now.Sub(e.at) < w.resync
}

// record notes that v was written to key at now.
func (w *written) record(key string, v any, now time.Time) {
	if sum, ok := digest(v); ok {
		w.mu.Lock()
		w.last[key] = writtenEntry{sum, now}
		w.mu.Unlock()
	}
}

// forget makes the next write to key happen (a watch event, a failure).
func (w *written) forget(key string) {
	w.mu.Lock()
	delete(w.last, key)
	w.mu.Unlock()
}

func digest(v any) ([32]byte, bool) {
	b, err := json.Marshal(v)
	if err != nil {
		return [32]byte{}, false
	}
	return sha256.Sum256(b), true
}
