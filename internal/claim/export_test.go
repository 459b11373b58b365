package claim

// KnowsHolder reports whether the view of code has email as a holder: how
// tests see a replica forget a revoked person without asking it to redeem.
func (s *Service) KnowsHolder(code, email string) bool {
	c := s.lookup(code)
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.view == nil {
		return false
	}
	_, ok := c.view.holders[email]
	return ok
}

// Queued is how many requests wait in code's queue.
func (s *Service) Queued(code string) int {
	c := s.lookup(code)
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queue.Len()
}

// Pending is how many admission places are taken.
func (s *Service) Pending() int { return len(s.pending) }

// Suspect reports whether code's view may hold a revoked holder (and so
// answers no holder from memory).
func (s *Service) Suspect(code string) bool {
	c := s.lookup(code)
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.suspect
}
