#!/usr/bin/env bash
# The main job end to end on a fresh machine: set up, build, fetch the model, inspect it,
# and ask it a clinical question.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --quiet
model="$(scripts/fetch-model.sh)"
medllm=./target/release/medllm

echo "== medllm info"
$medllm info "$model"

echo
echo "== medllm generate"
$medllm generate -m "$model" --temp 0 -n 128 --verbose \
  --system "You are a concise clinical assistant." \
  -p "A 67-year-old man has fever, productive cough and right lower lobe crackles. What is the most likely diagnosis, and which test confirms it?"

echo
echo "== medllm extract (a discharge summary → JSON with grounding)"
cat > /tmp/medllm-demo-note.txt <<'NOTE'
Discharge summary. 74-year-old woman admitted with community-acquired pneumonia of the left lower lobe.
History of type 2 diabetes and chronic kidney disease stage 3. Treated with ceftriaxone and azithromycin.
Discharge medications: amoxicillin 1 g PO three times daily for 5 days, metformin 500 mg PO twice daily.
Allergies: sulfa (rash). Discharged home. Follow up with her primary care physician in one week.
NOTE
# --extractive: every string value must be a passage of the note; nothing can be invented.
$medllm extract -m "$model" --schema discharge_summary --extractive /tmp/medllm-demo-note.txt | python3 -m json.tool
