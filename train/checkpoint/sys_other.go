//go:build !linux

package checkpoint

import "errors"

var errNoExchange = errors.New("RENAME_EXCHANGE not supported")

func exchange(a, b string) error { return errNoExchange }

func statfsFree(path string) (uint64, error) {
	return 0, errors.ErrUnsupported
}
