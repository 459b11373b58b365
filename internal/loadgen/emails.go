package loadgen

import (
	"fmt"
	"math/rand/v2"
)

// Mix decides which email each request uses: mostly new people, some exact
// repeats of an earlier person (a player retrying), some spelling variants of
// an earlier person (case, +tag: the same canonical email), some invalid.
type Mix struct {
	Duplicates, Variants, Invalid float64 // shares of requests, 0..1
	Seed                          uint64
	Prefix                        string // keeps runs against one database apart
}

// Email returns the email of request i; the same i always gives the same email.
func (m Mix) Email(i int) string {
	rng := rand.New(rand.NewPCG(m.Seed, uint64(i)))
	r := rng.Float64()
	switch {
	case r < m.Invalid:
		return fmt.Sprintf("not an email %d", i)
	case i > 0 && r < m.Invalid+m.Duplicates:
		return m.person(rng.IntN(i))
	case i > 0 && r < m.Invalid+m.Duplicates+m.Variants:
		return fmt.Sprintf("  %s+again%d@EXAMPLE.com ", m.name(rng.IntN(i)), i)
	}
	return m.person(i)
}

func (m Mix) name(i int) string   { return fmt.Sprintf("%sPlayer%d", m.Prefix, i) }
func (m Mix) person(i int) string { return m.name(i) + "@example.com" }
