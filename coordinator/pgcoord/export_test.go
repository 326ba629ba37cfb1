package pgcoord

// Crash stops c like a killed process would: its goroutines end and its
// peers' channels close, but nothing is written to the database.
func (c *Coordinator) Crash() { _ = c.shutdown(false) }
