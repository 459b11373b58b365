package redeemer

// RateLimitedClients is the number of clients the rate limiter remembers.
func (s *Server) RateLimitedClients() int { return s.limiter.size() }
