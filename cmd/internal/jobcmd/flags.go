// Package jobcmd holds the command lines of a distributed job: the
// coordinator, the worker, and `hjepa launch`, which starts both on one host.
// `hjepa`, `hjepa-coordinator` and `hjepa-worker` share them.
package jobcmd

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hjepa-go/hjepa/collective/rpcsec"
	"github.com/hjepa-go/hjepa/config"
)

// configFlags load a configuration as `hjepa train` does.
type configFlags struct {
	file string
	sets []string
}

func (f *configFlags) add(c *cobra.Command, what string) {
	c.Flags().StringVar(&f.file, "config", "", "YAML configuration file (configs/*.yaml)"+what)
	c.Flags().StringArrayVar(&f.sets, "set", nil, "override a key: --set training.lr=1e-4 (repeatable)")
}

func (f *configFlags) given() bool { return f.file != "" || len(f.sets) > 0 }

// load reads and validates the configuration: file, HJEPA_* environment,
// --set overrides, then extra sets.
func (f *configFlags) load(extra ...string) (config.Config, error) {
	sets := append(append([]string(nil), f.sets...), extra...)
	cfg, notes, err := config.LoadWithNotes(config.LoadOptions{ConfigFile: f.file, Sets: sets, Env: true})
	for _, n := range notes {
		fmt.Fprintf(os.Stderr, "note: %s\n", n)
	}
	if err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		var ve *config.ValidationError
		if errors.As(err, &ve) && f.file != "" {
			return cfg, fmt.Errorf("%s: %w", f.file, err)
		}
		return cfg, err
	}
	return cfg, nil
}

// securityFlags are the job token and TLS files.
type securityFlags struct {
	token, tokenFile      string
	cert, key, ca, server string
}

func (f *securityFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.token, "token", "", "job token (prefer --token-file or $"+rpcsec.TokenEnv+": a flag shows in ps)")
	c.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the job token")
	c.Flags().StringVar(&f.cert, "tls-cert", "", "TLS certificate (PEM); with --tls-key turns TLS on")
	c.Flags().StringVar(&f.key, "tls-key", "", "TLS private key (PEM)")
	c.Flags().StringVar(&f.ca, "tls-ca", "", "CA (PEM) that verifies the other side; on a server it requires client certificates (mutual TLS)")
	c.Flags().StringVar(&f.server, "tls-server-name", "", "name expected in the server's certificate (default: the host dialled)")
}

func (f *securityFlags) options() (rpcsec.Options, error) {
	tok, err := rpcsec.LoadToken(f.token, f.tokenFile)
	if err != nil {
		return rpcsec.Options{}, err
	}
	if (f.cert == "") != (f.key == "") {
		return rpcsec.Options{}, errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	return rpcsec.Options{Token: tok, CertFile: f.cert, KeyFile: f.key, CAFile: f.ca, ServerName: f.server}, nil
}

// newLogger logs readable lines to w at level (info by default).
func newLogger(w io.Writer, level string) (*zap.Logger, error) {
	lvl := zapcore.InfoLevel
	if level != "" {
		if err := lvl.Set(level); err != nil {
			return nil, fmt.Errorf("--log-level %q: %w", level, err)
		}
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
	enc.CallerKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), lvl)), nil
}

// envInt reads an integer environment variable (torchrun's RANK, ...);
// def when unset.
func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil || n < 0 {
		return 0, fmt.Errorf("$%s=%q: want a non-negative integer", name, v)
	}
	return n, nil
}

// sentinelDefault keeps --help from adding "(default -1)" to a flag whose
// -1 means "not given" and whose usage already says what then applies.
func sentinelDefault(fl *pflag.FlagSet, name string) {
	fl.Lookup(name).DefValue = "0"
}
