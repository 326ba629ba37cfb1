package terraform

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

// LogFunc receives the log lines of a job as they are produced. It may be nil.
type LogFunc func(provisionersdk.Log)

// Stages used in provisioner logs.
const (
	StageSetup   = "Setting up"
	StagePlan    = "Planning infrastructure"
	StageStart   = "Starting workspace"
	StageStop    = "Stopping workspace"
	StageDestroy = "Destroying workspace"
	StageParse   = "Parsing template"
)

// uiMessage is one line of terraform's machine-readable (-json) UI output.
type uiMessage struct {
	Level      string        `json:"@level"`
	Message    string        `json:"@message"`
	Type       string        `json:"type"`
	Diagnostic *uiDiagnostic `json:"diagnostic"`
}

type uiDiagnostic struct {
	Severity string `json:"severity"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail"`
	Address  string `json:"address"`
	Range    *struct {
		Filename string `json:"filename"`
		Start    struct {
			Line int `json:"line"`
		} `json:"start"`
	} `json:"range"`
}

// logWriter is an io.Writer that splits its input into lines and forwards each as a
// ProvisionerLog. In JSON mode lines are terraform -json UI messages, otherwise plain
// text. It remembers error diagnostics so a failure can be reported with terraform's
// own message.
type logWriter struct {
	mu    sync.Mutex
	stage string
	json  bool
	level codersdk.LogLevel // level for plain lines
	emit  LogFunc
	buf   []byte
	errs  *diagnostics
}

// diagnostics collects error messages reported by terraform across commands.
type diagnostics struct {
	mu   sync.Mutex
	errs []string
}

func (d *diagnostics) add(msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.errs = append(d.errs, msg)
}

func (d *diagnostics) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.errs, "\n")
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(bytes.TrimRight(w.buf[:i], "\r"))
		w.buf = w.buf[i+1:]
		w.line(line)
	}
	return len(p), nil
}

// Flush emits a trailing partial line, if any.
func (w *logWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

func (w *logWriter) line(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	level, output := w.level, line
	if w.json {
		if l, o, ok := parseUILine(line); ok {
			level, output = l, o
			if level == codersdk.LogLevelError && w.errs != nil {
				w.errs.add(o)
			}
		}
	} else {
		if level == codersdk.LogLevelError && w.errs != nil {
			w.errs.add(line)
		}
	}
	if w.emit != nil {
		w.emit(provisionersdk.Log{
			CreatedAt: time.Now().UTC(),
			Level:     level,
			Stage:     w.stage,
			Output:    output,
		})
	}
}

// parseUILine turns one terraform -json UI message into a level and readable text.
// ok is false when the line is not such a message.
func parseUILine(line string) (codersdk.LogLevel, string, bool) {
	var msg uiMessage
	if err := json.Unmarshal([]byte(line), &msg); err != nil || (msg.Message == "" && msg.Diagnostic == nil) {
		return "", "", false
	}
	level := convertLevel(msg.Level)
	output := msg.Message
	if msg.Diagnostic != nil {
		d := msg.Diagnostic
		level = convertLevel(d.Severity)
		var b strings.Builder
		b.WriteString(strings.ToUpper(d.Severity[:min(1, len(d.Severity))]) + d.Severity[min(1, len(d.Severity)):])
		b.WriteString(": ")
		b.WriteString(d.Summary)
		if d.Range != nil && d.Range.Filename != "" {
			b.WriteString(" (")
			b.WriteString(d.Range.Filename)
			if d.Range.Start.Line > 0 {
				b.WriteString(":")
				b.WriteString(strconv.Itoa(d.Range.Start.Line))
			}
			b.WriteString(")")
		}
		if d.Detail != "" {
			b.WriteString(": ")
			b.WriteString(d.Detail)
		}
		output = b.String()
	}
	return level, output, true
}

func convertLevel(s string) codersdk.LogLevel {
	switch strings.ToLower(s) {
	case "trace":
		return codersdk.LogLevelTrace
	case "debug":
		return codersdk.LogLevelDebug
	case "warn", "warning":
		return codersdk.LogLevelWarn
	case "error":
		return codersdk.LogLevelError
	default:
		return codersdk.LogLevelInfo
	}
}
