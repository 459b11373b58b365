package invite

import "testing"

// The exhausted-code path parses every request's email and language before
// the answer comes from memory (make bench, docs/benchmarks.md).

func BenchmarkParseEmail(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEmail("player12345@gone.example.com", DefaultFolding); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPreferredLanguage(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		PreferredLanguage("ru-RU,ru;q=0.9,en;q=0.8")
		PreferredLanguage("")
	}
}
