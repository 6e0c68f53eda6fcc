-- wrk script: POST the bytes of the file named by WRK_BODY_FILE as JSON, and print the
-- run's figures as one JSON line (marker WRK_JSON) for bench/wrk.py to parse.
local body_file = assert(os.getenv("WRK_BODY_FILE"), "set WRK_BODY_FILE")
local handle = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = handle:read("*a")
handle:close()
wrk.headers["Content-Type"] = "application/json"
-- WRK_HEADERS: more "Name: value" lines (binary tensors need Inference-Header-Content-Length).
for line in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
