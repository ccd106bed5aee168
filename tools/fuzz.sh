#!/bin/sh
# Runs every Go fuzz target of the module in turn for FUZZTIME each (make
# fuzz FUZZTIME=60s) and prints one summary line per target:
#
#   FUZZ <package> <target> execs=<n> time=<elapsed> result=<ok|FAIL>
#
# A failing target leaves its crashing input under the package's
# testdata/fuzz/<target>/ (Go's corpus format): fix the parser and commit
# the input as a seed. FUZZ_PKGS narrows the packages (default ./...).
set -u
go=${GO:-go}
fuzztime=${FUZZTIME:-60s}
status=0
for pkg in $($go list ${FUZZ_PKGS:-./...}); do
	for target in $($go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz'); do
		log=$(mktemp)
		if $go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
			result=ok
		else
			result=FAIL
			status=1
			cat "$log"
		fi
		last=$(grep 'fuzz: elapsed' "$log" | tail -1)
		execs=$(echo "$last" | sed -n 's/.*execs: \([0-9]*\).*/\1/p')
		elapsed=$(echo "$last" | sed -n 's/.*elapsed: \([0-9a-z.]*\),.*/\1/p')
		echo "FUZZ ${pkg#github.com/hjepa-go/hjepa/} $target execs=${execs:-0} time=${elapsed:-?} result=$result"
		rm -f "$log"
	done
done
exit $status
