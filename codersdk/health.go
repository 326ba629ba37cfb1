package codersdk

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// HealthSeverity ranks a health finding.
type HealthSeverity string

// Severities, from best to worst.
const (
	HealthSeverityOK      HealthSeverity = "ok"
	HealthSeverityWarning HealthSeverity = "warning"
	HealthSeverityError   HealthSeverity = "error"
)

// Worse returns the worse of s and o.
func (s HealthSeverity) Worse(o HealthSeverity) HealthSeverity {
	if s.rank() >= o.rank() {
		return s
	}
	return o
}

func (s HealthSeverity) rank() int {
	switch s {
	case HealthSeverityError:
		return 2
	case HealthSeverityWarning:
		return 1
	default:
		return 0
	}
}

// HealthSection is what every section of a HealthReport (and every item
// inside a section) states: whether it is healthy, how bad it is, the error
// that made it unhealthy and warnings that did not.
type HealthSection struct {
	// Healthy is false only for severity error.
	Healthy  bool           `json:"healthy"`
	Severity HealthSeverity `json:"severity"`
	// Error explains an unhealthy result; empty when healthy.
	Error string `json:"error,omitempty"`
	// Warnings are problems that do not make the section unhealthy.
	Warnings []string `json:"warnings"`
}

// SetError marks the section unhealthy with err's message.
func (h *HealthSection) SetError(msg string) {
	h.Healthy, h.Severity, h.Error = false, HealthSeverityError, msg
}

// Warn adds a warning (severity becomes at least warning).
func (h *HealthSection) Warn(msg string) {
	h.Warnings = append(h.Warnings, msg)
	h.Severity = h.Severity.Worse(HealthSeverityWarning)
}

// NewHealthSection returns a healthy section with no findings.
func NewHealthSection() HealthSection {
	return HealthSection{Healthy: true, Severity: HealthSeverityOK, Warnings: []string{}}
}

// HealthReport is the deployment health report (GET /api/v2/debug/health,
// owners only). Each check is a section with a HealthSection header;
// later checks (replicas, access URL, websockets, ...) are added as new
// section fields and listed by Sections, so clients that iterate Sections
// see them without changes.
type HealthReport struct {
	// Time is when the checks ran.
	Time time.Time `json:"time"`
	// Duration is how long all checks took (they run concurrently).
	DurationMS float64 `json:"duration_ms"`
	// Healthy is false when any section is unhealthy.
	Healthy bool `json:"healthy"`
	// Severity is the worst severity of all sections.
	Severity HealthSeverity `json:"severity"`
	// FailingSections names the unhealthy sections.
	FailingSections []string `json:"failing_sections"`

	Database           DatabaseHealth           `json:"database"`
	DERP               DERPHealth               `json:"derp"`
	STUN               STUNHealth               `json:"stun"`
	ProvisionerDaemons ProvisionerDaemonsHealth `json:"provisioner_daemons"`
	Replicas           ReplicasHealth           `json:"replicas"`
}

// ReplicasHealth lists the replicas sharing the database (high
// availability). A single node (embedded PostgreSQL) has none and is
// healthy. Warnings: replicas of different versions, a replica reporting
// an error, replicas whose relays cannot mesh (no relay URL).
type ReplicasHealth struct {
	HealthSection
	// Enabled is true when this server is a replica (external PostgreSQL).
	Enabled bool `json:"enabled"`
	// Replicas are the live replicas, this one included.
	Replicas []Replica `json:"replicas"`
}

// NamedHealthSection is one section of a report with its JSON name.
type NamedHealthSection struct {
	Name    string
	Section *HealthSection
}

// Sections returns the report's sections in order.
func (r *HealthReport) Sections() []NamedHealthSection {
	return []NamedHealthSection{
		{"database", &r.Database.HealthSection},
		{"derp", &r.DERP.HealthSection},
		{"stun", &r.STUN.HealthSection},
		{"provisioner_daemons", &r.ProvisionerDaemons.HealthSection},
		{"replicas", &r.Replicas.HealthSection},
	}
}

// Summarize sets Healthy, Severity and FailingSections from the sections.
func (r *HealthReport) Summarize() {
	r.Healthy, r.Severity, r.FailingSections = true, HealthSeverityOK, []string{}
	for _, s := range r.Sections() {
		r.Severity = r.Severity.Worse(s.Section.Severity)
		if !s.Section.Healthy {
			r.Healthy = false
			r.FailingSections = append(r.FailingSections, s.Name)
		}
	}
}

// DatabaseHealth reports a round trip to the database.
type DatabaseHealth struct {
	HealthSection
	Reachable bool    `json:"reachable"`
	LatencyMS float64 `json:"latency_ms"`
}

// DERPHealth reports every relay node of the DERP map: a client connects
// with the DERP protocol and waits for the relay's pong.
type DERPHealth struct {
	HealthSection
	Regions []DERPRegionHealth `json:"regions"`
}

// DERPRegionHealth is one region: healthy when any node is.
type DERPRegionHealth struct {
	HealthSection
	RegionID   int              `json:"region_id"`
	RegionCode string           `json:"region_code"`
	RegionName string           `json:"region_name"`
	Nodes      []DERPNodeHealth `json:"nodes"`
}

// DERPNodeHealth is one relay node.
type DERPNodeHealth struct {
	HealthSection
	Name     string `json:"name"`
	HostName string `json:"host_name"`
	// ConnectMS is the time to connect (TCP, TLS, HTTP upgrade, DERP handshake).
	ConnectMS float64 `json:"connect_ms"`
	// RoundTripMS is a ping through the established connection.
	RoundTripMS float64 `json:"round_trip_ms"`
}

// STUNHealth reports every STUN server of the DERP map: a binding request
// and its answer. Without any STUN server peers cannot learn their public
// address and direct connections rarely form.
type STUNHealth struct {
	HealthSection
	Enabled bool             `json:"enabled"`
	Servers []STUNNodeHealth `json:"servers"`
}

// STUNNodeHealth is one STUN server.
type STUNNodeHealth struct {
	HealthSection
	RegionID  int     `json:"region_id"`
	NodeName  string  `json:"node_name"`
	Address   string  `json:"address"`
	LatencyMS float64 `json:"latency_ms"`
	// MappedAddress is the address the server saw coderd's request from.
	MappedAddress string `json:"mapped_address,omitempty"`
}

// ProvisionerDaemonsHealth reports the registered provisioner daemons;
// without a live one builds stay pending.
type ProvisionerDaemonsHealth struct {
	HealthSection
	Live    int                     `json:"live"`
	Daemons []ProvisionerDaemonItem `json:"daemons"`
}

// ProvisionerDaemonItem is one registered daemon.
type ProvisionerDaemonItem struct {
	ID         uuid.UUID         `json:"id"`
	Name       string            `json:"name"`
	Tags       map[string]string `json:"tags"`
	LastSeenAt *time.Time        `json:"last_seen_at,omitempty"`
	Live       bool              `json:"live"`
}

// DebugHealth runs the deployment health checks (owners only).
func (c *Client) DebugHealth(ctx context.Context) (HealthReport, error) {
	var out HealthReport
	err := c.do(ctx, http.MethodGet, "/api/v2/debug/health", nil, http.StatusOK, &out)
	return out, err
}
