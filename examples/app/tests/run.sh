#!/bin/sh
# Integration tests for the example app, run in a container next to it (docker-compose.test.yml).
# Usage: run.sh BASE_URL [RESULTS_DIR]. Writes JUnit XML so CI can show the results; exits 1 on any failure.
base=${1:-http://app:8080}
results=${2:-/results}
mkdir -p "$results"
pass=0 fail=0 cases=""

check() { # name, url, expected substring
  body=$(wget -q -O- "$2" 2>&1)
  if echo "$body" | grep -q "$3"; then
    pass=$((pass + 1)); cases="$cases<testcase classname=\"app\" name=\"$1\"/>"
    echo "ok   $1"
  else
    fail=$((fail + 1))
    cases="$cases<testcase classname=\"app\" name=\"$1\"><failure message=\"expected '$3'\">got: $body</failure></testcase>"
    echo "FAIL $1: expected '$3', got: $body"
  fi
}

check "health endpoint answers" "$base/health" "ok"
check "index page renders" "$base/" "Hello from the Drydock example app"
check "greet says hello" "$base/cgi-bin/greet?name=drydock" "Hello, drydock"

printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="app" tests="%d" failures="%d">%s</testsuite></testsuites>\n' \
  $((pass + fail)) "$fail" "$cases" > "$results/junit.xml"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
