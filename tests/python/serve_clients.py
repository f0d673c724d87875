#!/usr/bin/env python3
"""Talks to a running `medllm serve` with the official `ollama` and `openai` Python
clients (from the Python package index; scripts/setup.sh installs them).

Usage: serve_clients.py BASE MODEL API_KEY
  BASE is the server's scheme://host:port; the server must require API_KEY.

Checks chat, streaming, structured output (the reply parses and validates against the
schema), errors as the clients see them, cache scoping by `cache_salt`, and 64 structured requests sent 8 at a time
(zero errors, every reply valid). Exits non-zero on the first failed check.
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import ollama
import openai
from pydantic import BaseModel

BASE, MODEL, KEY = sys.argv[1:4]
AUTH = {"Authorization": f"Bearer {KEY}"}


class Patient(BaseModel):
    age: int
    sex: str
    diagnosis: str


PATIENT_SCHEMA = {
    "type": "object",
    "properties": {
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "sex": {"type": "string", "enum": ["male", "female", "unknown"]},
        "diagnosis": {"type": "string", "maxLength": 60},
    },
    "required": ["age", "sex", "diagnosis"],
    "additionalProperties": False,
}

NOTES = [
    "Clinic note. 62-year-old female with community-acquired pneumonia. Former smoker.",
    "ED note: 23M with asthma exacerbation after URI. Given albuterol nebs.",
    "Cardiology consult. 78-year-old woman with new-onset atrial fibrillation.",
    "Progress note: 57 yo M with COPD exacerbation, on prednisone 40 mg daily.",
    "Discharge summary. 45-year-old man admitted with acute pancreatitis.",
    "Clinic note. 34 yo female presents for follow-up of hypothyroidism.",
    "Oncology note. 59 y/o male with stage III adenocarcinoma of the colon.",
    "Telephone note: 81-year-old female with a urinary tract infection.",
]
SYSTEM = "Extract the patient data from the report as JSON."

checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    checks += 1
    print(f"ok: {what}", flush=True)


# --- ollama -------------------------------------------------------------------------
client = ollama.Client(host=BASE, headers=AUTH)

listed = client.list()
check(any(m.model == MODEL for m in listed.models), "ollama list() shows the model")
shown = client.show(MODEL)
check(shown.details.format == "gguf", "ollama show() gives the model's details")

reply = client.chat(
    model=MODEL,
    messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    options={"temperature": 0, "num_predict": 32},
)
check("Paris" in reply.message.content, f"ollama chat answers (got {reply.message.content!r})")
check(reply.done and reply.eval_count > 0, "ollama chat reports its counts")

pieces = list(
    client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        options={"temperature": 0, "num_predict": 32},
        stream=True,
    )
)
streamed = "".join(p.message.content for p in pieces)
check(len(pieces) >= 2 and pieces[-1].done, "ollama chat streams pieces and a last one")
check(streamed == reply.message.content, "ollama streamed text equals the whole answer")

generated = client.generate(model=MODEL, prompt="Name one symptom of influenza.", options={"temperature": 0, "num_predict": 24})
check(generated.done and len(generated.response.strip()) > 0, "ollama generate answers")

for note in NOTES[:3]:
    reply = client.chat(
        model=MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": note}],
        format=Patient.model_json_schema(),
        options={"temperature": 0},
    )
    data = Patient.model_validate_json(reply.message.content)
    jsonschema.validate(json.loads(reply.message.content), Patient.model_json_schema())
    check(isinstance(data.age, int), f"ollama structured output validates ({reply.message.content})")

try:
    client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    check(False, "ollama: an unknown model is refused")
except ollama.ResponseError as e:
    check(e.status_code == 404, "ollama: an unknown model is a 404")

try:
    client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        format={"type": "object", "properties": {"a": {"type": "string", "not": {"const": "b"}}}},
    )
    check(False, "ollama: an unenforceable schema is refused")
except ollama.ResponseError as e:
    check(e.status_code == 400 and '"not"' in str(e.error), f"ollama: an unenforceable schema is a 400 naming the keyword ({e.error})")

try:
    ollama.Client(host=BASE).list()
    check(False, "ollama: no key is refused")
except ollama.ResponseError as e:
    check(e.status_code == 401, "ollama: no API key is a 401")

# --- openai -------------------------------------------------------------------------
oa = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0)
check(any(m.id == MODEL for m in oa.models.list().data), "openai models.list() shows the model")

completion = oa.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    temperature=0,
    max_tokens=32,
)
answer = completion.choices[0].message.content
check("Paris" in answer, f"openai chat answers (got {answer!r})")
check(completion.usage.completion_tokens > 0, "openai chat reports usage")


def cached_tokens(salt):
    reply = oa.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": NOTES[7]}],
        temperature=0,
        max_tokens=1,
        extra_body={"cache_salt": salt},
    )
    return reply.usage.prompt_tokens_details.cached_tokens


cached_tokens("salt-a-3f9c")
check(cached_tokens("salt-a-3f9c") > 0, "openai: a cache_salt reuses its own cached prompt")
check(cached_tokens("salt-b-81d2") == 0, "openai: another cache_salt sees none of it (cached_tokens 0)")

stream = oa.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    temperature=0,
    max_tokens=32,
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check(text == answer, "openai streamed text equals the whole answer")
check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0, "openai stream ends with usage")

parsed = oa.chat.completions.parse(
    model=MODEL,
    messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": NOTES[3]}],
    response_format=Patient,
    temperature=0,
)
check(isinstance(parsed.choices[0].message.parsed, Patient), "openai parse() returns the pydantic model")


def structured(note):
    reply = oa.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": note}],
        response_format={"type": "json_schema", "json_schema": {"name": "patient", "schema": PATIENT_SCHEMA, "strict": True}},
        temperature=0,
        max_tokens=128,
    )
    return json.loads(reply.choices[0].message.content)


value = structured(NOTES[4])
jsonschema.validate(value, PATIENT_SCHEMA)
check(True, f"openai json_schema output validates ({value})")

try:
    oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    check(False, "openai: an unknown model is refused")
except openai.NotFoundError:
    check(True, "openai: an unknown model is a 404")

try:
    openai.OpenAI(base_url=f"{BASE}/v1", api_key="wrong", max_retries=0).models.list()
    check(False, "openai: a wrong key is refused")
except openai.AuthenticationError:
    check(True, "openai: a wrong key is a 401")

try:
    oa.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "string", "not": {}}}}}},
    )
    check(False, "openai: an unenforceable schema is refused")
except openai.BadRequestError as e:
    check('"not"' in str(e), "openai: an unenforceable schema is a 400 naming the keyword")

# --- 64 structured requests, 8 at a time ------------------------------------------
notes = [NOTES[i % len(NOTES)] for i in range(64)]
errors, invalid = [], []


def one(note):
    try:
        value = structured(note)
        jsonschema.validate(value, PATIENT_SCHEMA)
        return True
    except (openai.OpenAIError, json.JSONDecodeError, jsonschema.ValidationError) as e:
        errors.append(type(e).__name__)
        return False


with ThreadPoolExecutor(max_workers=8) as pool:
    results = list(pool.map(one, notes))
check(len(results) == 64 and all(results), f"64 requests, 8 at a time: {sum(results)} valid, errors {errors[:5]}")

print(f"all {checks} checks passed")
