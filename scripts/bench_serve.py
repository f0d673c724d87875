#!/usr/bin/env python3
"""The `serve` section of scripts/bench.sh: structured extraction over HTTP.

Starts `medllm serve --parallel 4` on a loopback port and sends the 16 bench reports from
8 concurrent clients, REPS times each way:
  chat: /v1/chat/completions with response_format json_schema (the bench schema), the
        system prompt of shared/bench/README.md, greedy, 256 new tokens at most: the
        request llama-server's anchor figure was measured with;
  extract: /v1/extract with the same schema (medllm's own prompt, grounding).
Prints requests/min, p50 and p99 latency, and how many replies are valid under the schema.

Usage: bench_serve.py MEDLLM MODEL BENCH_DIR THREADS REPS
"""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import jsonschema

medllm, model, bench_dir, threads, reps = sys.argv[1:6]
reports = [json.loads(l) for l in open(os.path.join(bench_dir, "reports16.jsonl"))]
schema = json.load(open(os.path.join(bench_dir, "schema16.json")))
SYSTEM = "Extract the patient data from the report as JSON."

server = subprocess.Popen(
    [medllm, "serve", "-m", model, "--listen", "127.0.0.1:0", "--parallel", "4", "--threads", threads],
    stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
)
base = None
for line in server.stderr:
    if " listening on " in line:
        base = "http://" + line.split(" listening on ")[1].strip()
        break
if base is None:
    sys.exit("medllm serve did not start")
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()


def post(path, body):
    request = urllib.request.Request(base + path, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as reply:
        return json.load(reply)


def chat(report):
    reply = post("/v1/chat/completions", {
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": report["text"]}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "patient", "schema": schema, "strict": True}},
        "temperature": 0, "max_tokens": 256,
    })
    return json.loads(reply["choices"][0]["message"]["content"])


def extract(report):
    return post("/v1/extract", {"id": report["id"], "text": report["text"], "schema": schema})["data"]


def timed(call, report):
    started = time.monotonic()
    try:
        value = call(report)
        jsonschema.validate(value, schema)
        valid = True
    except Exception:  # a failed request or an invalid reply both count as not valid
        valid = False
    return time.monotonic() - started, valid


def percentile(values, p):
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


try:
    post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})  # warm up
    for name, call in [("chat json_schema", chat), ("extract", extract)]:
        for rep in range(int(reps)):
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(lambda r: timed(call, r), reports))
            elapsed = time.monotonic() - started
            latencies = [t for t, _ in results]
            valid = sum(v for _, v in results)
            print(f"serve {name} run {rep + 1}: {len(reports) / elapsed * 60:.1f} requests/min, "
                  f"p50 {percentile(latencies, 50):.1f} s, p99 {percentile(latencies, 99):.1f} s, "
                  f"valid {valid}/{len(reports)}", flush=True)
finally:
    server.terminate()
    server.wait()
