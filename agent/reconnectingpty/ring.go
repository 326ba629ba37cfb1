package reconnectingpty

// ring is a bounded byte buffer keeping the most recent bytes written.
type ring struct {
	buf   []byte
	start int
	size  int
}

func newRing(capacity int) *ring { return &ring{buf: make([]byte, capacity)} }

func (r *ring) Write(p []byte) {
	c := len(r.buf)
	if c == 0 {
		return
	}
	if len(p) >= c {
		copy(r.buf, p[len(p)-c:])
		r.start, r.size = 0, c
		return
	}
	end := (r.start + r.size) % c
	n := copy(r.buf[end:], p)
	copy(r.buf, p[n:])
	r.size += len(p)
	if r.size > c {
		r.start = (r.start + r.size - c) % c
		r.size = c
	}
}

// Bytes returns a copy of the buffered bytes, oldest first.
func (r *ring) Bytes() []byte {
	out := make([]byte, 0, r.size)
	c := len(r.buf)
	if r.start+r.size <= c {
		return append(out, r.buf[r.start:r.start+r.size]...)
	}
	out = append(out, r.buf[r.start:]...)
	return append(out, r.buf[:(r.start+r.size)%c]...)
}
