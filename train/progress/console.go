package progress

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// Console is a terminal shared by a Bar and log lines, safe for concurrent
// use: a line written while the bar is shown first blanks the bar, then
// the bar is drawn again below it, so a log line (a validation, a signal)
// never lands on the bar's line.
type Console struct {
	mu    sync.Mutex
	w     io.Writer
	bar   string // the bar's text as last drawn
	shown bool
	err   error
}

// NewConsole wraps w (a terminal).
func NewConsole(w io.Writer) *Console { return &Console{w: w} }

// Write writes log output, keeping the bar below it.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf bytes.Buffer
	if c.shown {
		buf.WriteString("\r" + strings.Repeat(" ", len(c.bar)) + "\r")
	}
	buf.Write(p)
	if c.shown && bytes.HasSuffix(p, []byte("\n")) {
		buf.WriteString("\r" + c.bar)
	}
	if _, err := c.w.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// drawBar shows line as the bar.
func (c *Console) drawBar(line string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	pad := max(0, len(c.bar)-len(line))
	c.bar, c.shown = line, true
	if c.err == nil {
		_, c.err = io.WriteString(c.w, "\r"+line+strings.Repeat(" ", pad))
	}
	return c.err
}

// endBar leaves the bar's last state on its line and moves below it.
func (c *Console) endBar() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shown && c.err == nil {
		_, c.err = io.WriteString(c.w, "\n")
	}
	c.bar, c.shown = "", false
	return c.err
}
