#!/usr/bin/env python3
"""Runs the issues' llama-server anchor on this machine, for scripts/bench.sh.

Starts LLAMA_SERVER (a llama-server binary built elsewhere from any llama.cpp source) on
a loopback port with 4 slots, sends the 16 bench reports with the bench schema as
`response_format: json_schema` from 4 concurrent clients (system prompt, greedy decoding
and 256 tokens as in shared/bench/README.md), and prints docs/min and how many replies
are valid JSON under the schema. Uses only the standard library (plus jsonschema when
installed, else a structural check of required keys and types).
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    server, model, bench_dir, threads = sys.argv[1:5]
    reports = [json.loads(l) for l in open(os.path.join(bench_dir, "reports16.jsonl"))]
    schema = json.load(open(os.path.join(bench_dir, "schema16.json")))
    port = free_port()
    proc = subprocess.Popen(
        [server, "-m", model, "-np", "4", "-c", "8192", "-t", threads, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except Exception:
                time.sleep(0.5)

        def ask(report):
            body = {
                "messages": [
                    {"role": "system", "content": "Extract the patient data from the report as JSON."},
                    {"role": "user", "content": report["text"]},
                ],
                "temperature": 0,
                "max_tokens": 256,
                "response_format": {"type": "json_schema", "json_schema": {"name": "patient", "schema": schema}},
            }
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            reply = json.load(urllib.request.urlopen(req, timeout=600))
            return reply["choices"][0]["message"]["content"]

        started = time.time()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, reports))
        seconds = time.time() - started
    finally:
        proc.terminate()
        proc.wait()

    def valid(text):
        try:
            value = json.loads(text)
        except ValueError:
            return False
        try:
            import jsonschema
            return jsonschema.Draft202012Validator(schema).is_valid(value)
        except ImportError:
            return isinstance(value, dict) and all(k in value for k in schema["required"])

    ok = sum(valid(a) for a in answers)
    print(f"{len(reports) * 60 / seconds:.1f} {ok} {len(reports)}")


if __name__ == "__main__":
    main()
