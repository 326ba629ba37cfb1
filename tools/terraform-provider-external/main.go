// Command terraform-provider-external is this project's implementation of the
// `external` data source that templates know from the hashicorp/external
// provider: it runs a program with the query as a JSON object on stdin and
// exposes the JSON object of strings the program prints as `result`.
//
// HashiCorp's provider is not served by the Go module proxy this project builds
// from, so scripts/deps.sh builds this one and places it in the offline
// provider mirror as registry.terraform.io/hashicorp/external (and the
// registry.opentofu.org twin) under its own version, 0.1.0 (see
// docs/templates.md). It is written from the data source's documented
// contract; no HashiCorp code is in it.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	pschema "github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	debug := flag.Bool("debug", false, "Run with support for debuggers (prints TF_REATTACH_PROVIDERS).")
	flag.Parse()
	err := providerserver.Serve(context.Background(), newProvider, providerserver.ServeOpts{
		Address:         "registry.terraform.io/hashicorp/external",
		Debug:           *debug,
		ProtocolVersion: 6,
	})
	if err != nil {
		log.Fatal(err)
	}
}

func newProvider() provider.Provider { return &externalProvider{} }

// externalProvider has no configuration; its only member is the data source.
type externalProvider struct{}

func (p *externalProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "external"
	resp.Version = version
}

func (p *externalProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = pschema.Schema{
		Description: "Runs external programs as data sources.",
	}
}

func (p *externalProvider) Configure(context.Context, provider.ConfigureRequest, *provider.ConfigureResponse) {
}

func (p *externalProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{newExternalDataSource}
}

func (p *externalProvider) Resources(context.Context) []func() resource.Resource { return nil }
