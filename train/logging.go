package train

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger logs readable lines to console and JSON lines to
// <logDir>/train.log (appending, so a resumed run keeps its history).
// The returned close function syncs and closes the file.
func NewLogger(logDir, level string, console io.Writer) (*zap.Logger, func(), error) {
	return newRankLogger(logDir, level, console, 0)
}

// newRankLogger is NewLogger for data-parallel rank rank: ranks other than 0
// write <logDir>/train.rank<N>.log and print only warnings and errors (rank
// 0 logs the run; the coordinator prints per-rank summaries).
func newRankLogger(logDir, level string, console io.Writer, rank int) (*zap.Logger, func(), error) {
	lvl := zapcore.InfoLevel
	if level != "" {
		if err := lvl.Set(level); err != nil {
			return nil, nil, fmt.Errorf("logging.level %q: %w", level, err)
		}
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("logging.dir %s: %w", logDir, err)
	}
	path := filepath.Join(logDir, "train.log")
	consLvl := lvl
	if rank != 0 {
		path = filepath.Join(logDir, fmt.Sprintf("train.rank%d.log", rank))
		consLvl = max(lvl, zapcore.WarnLevel)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	jsonEnc := zap.NewProductionEncoderConfig()
	jsonEnc.EncodeTime = zapcore.ISO8601TimeEncoder
	consEnc := zap.NewDevelopmentEncoderConfig()
	consEnc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
	consEnc.EncodeCaller = nil
	consEnc.CallerKey = ""
	core := zapcore.NewTee(
		zapcore.NewCore(zapcore.NewJSONEncoder(jsonEnc), zapcore.AddSync(f), lvl),
		zapcore.NewCore(zapcore.NewConsoleEncoder(consEnc), zapcore.AddSync(console), consLvl),
	)
	lg := zap.New(core)
	return lg, func() { _ = lg.Sync(); _ = f.Close() }, nil
}
