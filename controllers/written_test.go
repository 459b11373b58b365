package controllers

import (
	"testing"
	"time"
)

func TestWritten(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := newWritten(time.Minute)
	if w.unchanged("k", 1, now) {
		t.Fatal("never written counts as unchanged")
	}
	w.record("k", 1, now)
	if !w.unchanged("k", 1, now.Add(time.Second)) {
		t.Fatal("same content, recently written")
	}
	if w.unchanged("k", 2, now.Add(time.Second)) {
		t.Fatal("different content")
	}
	if w.unchanged("k", 1, now.Add(time.Minute)) {
		t.Fatal("past resync")
	}
	w.forget("k")
	if w.unchanged("k", 1, now) {
		t.Fatal("forgotten")
	}
}
