package coderd_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

func TestHTTPMetricsByRoutePattern(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	client, _ := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{PrometheusRegistry: reg}})
	coderdtest.CreateFirstUser(t, client)
	if _, err := client.User(ctx, codersdk.Me); err != nil {
		t.Fatal(err)
	}
	_, _ = client.User(ctx, "nobody")

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "coderd_api_requests_processed_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			counts[labels["method"]+" "+labels["path"]+" "+labels["code"]] += m.GetCounter().GetValue()
		}
	}
	if got := counts["GET /api/v2/users/{user} 200"]; got != 1 {
		t.Fatalf("GET /api/v2/users/{user} 200 counted %v times; counts: %v", got, counts)
	}
	if got := counts["GET /api/v2/users/{user} 404"]; got != 1 {
		t.Fatalf("GET /api/v2/users/{user} 404 counted %v times; counts: %v", got, counts)
	}
	if got := counts["POST /api/v2/users/login 201"]; got != 1 {
		t.Fatalf("login counted %v times; counts: %v", got, counts)
	}
}
