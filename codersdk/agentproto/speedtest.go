package agentproto

import "time"

// Speed test protocol (tailnet TCP port SpeedtestPort).
//
// The client sends a SpeedtestRequest as JSON on one line ending in a
// newline (at most MaxSpeedtestHeader bytes), then, for SpeedtestUpload,
// writes for Duration and half-closes its side; the agent discards what
// it reads and answers with the number of bytes it received as 8 bytes,
// big endian. For SpeedtestDownload the agent writes for Duration and
// closes the stream.
const (
	// SpeedtestUpload measures client-to-agent throughput.
	SpeedtestUpload = "upload"
	// SpeedtestDownload measures agent-to-client throughput.
	SpeedtestDownload = "download"
	// MaxSpeedtestDuration bounds one speed test; the agent cuts longer
	// requests (and requests without a duration) to it.
	MaxSpeedtestDuration = 30 * time.Second
	// MaxSpeedtestHeader bounds the request line, newline included.
	MaxSpeedtestHeader = 4 << 10
)

// SpeedtestRequest opens a speed test.
type SpeedtestRequest struct {
	// Direction is SpeedtestUpload or SpeedtestDownload.
	Direction string `json:"direction"`
	// Duration is how long the data flows.
	Duration time.Duration `json:"duration"`
}
