package workspaceapps

import (
	"html/template"
	"net/http"
	"net/url"
	"strconv"
)

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1f2328;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:2rem 2.5rem;max-width:36rem}
h1{font-size:1.25rem;margin:0 0 .75rem}
p{line-height:1.5;margin:0 0 .5rem}
.code{color:#656d76;font-size:.85rem}
a{color:#0969da;word-break:break-all}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Detail}}</p>
{{if .Link}}<p><a href="{{.Link}}">{{.Link}}</a></p>{{end}}
<p class="code">HTTP {{.Status}}</p>
</main>
</body>
</html>
`))

// writePage answers with a small HTML page explaining d.
func writePage(w http.ResponseWriter, d *Denial) { writePageLink(w, d, nil) }

// writePageLink is writePage with a link to follow (nil for none).
func writePageLink(w http.ResponseWriter, d *Denial, link *url.URL) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(d.Status)
	var href string
	if link != nil {
		href = link.String()
	}
	_ = pageTemplate.Execute(w, struct {
		Title, Detail, Status, Link string
	}{d.Title, d.Detail, strconv.Itoa(d.Status), href})
}
