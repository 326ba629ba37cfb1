package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/term"
)

// prompter asks questions on a terminal. Answers are read from stdin,
// questions written to stderr so stdout stays machine-readable.
type prompter struct {
	fd     int
	in     *bufio.Reader
	out    io.Writer
	stdinR io.Reader
}

// prompter returns the invocation's prompter (one per invocation, so
// answers buffered by one question are not lost to the next).
func (r *root) prompter() (*prompter, bool) {
	if r.prompt != nil {
		return r.prompt, true
	}
	fd, ok := r.stdinTerminal()
	if !ok {
		return nil, false
	}
	r.prompt = &prompter{fd: fd, in: bufio.NewReader(r.stdin), out: r.stderr, stdinR: r.stdin}
	return r.prompt, true
}

// line asks for a non-empty line, validating it with check (nil accepts all).
func (p *prompter) line(question string, check func(string) string) (string, error) {
	for {
		fmt.Fprintf(p.out, "> %s: ", question)
		s, err := p.in.ReadString('\n')
		s = strings.TrimSpace(s)
		if err != nil && !(errors.Is(err, io.EOF) && s != "") {
			return "", fmt.Errorf("read %s: %w", question, err)
		}
		if s == "" {
			fmt.Fprintln(p.out, "  a value is required")
			continue
		}
		if check != nil {
			if msg := check(s); msg != "" {
				fmt.Fprintf(p.out, "  %s\n", msg)
				continue
			}
		}
		return s, nil
	}
}

// password reads a secret without echo.
func (p *prompter) password(question string) (string, error) {
	fmt.Fprintf(p.out, "> %s: ", question)
	b, err := term.ReadPassword(p.fd)
	fmt.Fprintln(p.out)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", question, err)
	}
	return string(b), nil
}

// newPassword asks for a password twice until both match and it is
// acceptable.
func (p *prompter) newPassword() (string, error) {
	for {
		pw, err := p.password("Password")
		if err != nil {
			return "", err
		}
		if len(pw) < 8 {
			fmt.Fprintln(p.out, "  the password must be at least 8 characters")
			continue
		}
		again, err := p.password("Confirm password")
		if err != nil {
			return "", err
		}
		if pw != again {
			fmt.Fprintln(p.out, "  passwords do not match")
			continue
		}
		return pw, nil
	}
}
