#!/usr/bin/env bash
# Seed the fuzz corpora from the repository's fixtures. Safe to run again; the corpora
# (fuzz/corpus/) are not committed.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=(../fixtures/*.json ../fixtures/invalid/* ../fixtures/network/*)
# The compat corpus of real pflow workflows, when it is checked out beside the repository.
if [ -d ../../shared/compat/pflow-examples ]; then
  while IFS= read -r f; do fixtures+=("$f"); done < <(find ../../shared/compat/pflow-examples -name '*.json')
fi
mkdir -p corpus/workflow corpus/template corpus/reply corpus/response corpus/patch corpus/markdown
# markdown: the original pflow's Markdown examples, when checked out beside the repository.
if [ -d ../../shared/compat/pflow-md-examples ]; then
  find ../../shared/compat/pflow-md-examples -name '*.md' | while IFS= read -r f; do
    cp "$f" "corpus/markdown/$(printf '%s' "$f" | sed -e 's#^\(\.\./\)*##' -e 's#/#_#g')"
  done
fi

for f in "${fixtures[@]}"; do
  name=$(printf '%s' "$f" | sed -e 's#^\(\.\./\)*##' -e 's#/#_#g')
  # workflow: the files as they are.
  cp "$f" "corpus/workflow/$name"
  # response: the same bytes as an HTTP body.
  cp "$f" "corpus/response/$name"
  # reply: the workflow inside a model's answer, fenced and bare.
  {
    printf 'Here is the corrected workflow:\n```json\n'
    cat "$f"
    printf '\n```\nThis fixes the template.\n'
  } >"corpus/reply/fenced-$name"
  { printf 'The fix: '; cat "$f"; printf ' (done)'; } >"corpus/reply/bare-$name"
done

# template: every string in the fixtures that holds a template, NUL, a scope.
scope='{"n":{"stdout":"{\"user\":{\"name\":\"Ada\"},\"ids\":[1,2]}","exit_code":0},"name":"world","__index__":1,"item":{"x":[1,{"y":"${n.stdout}"}]}}'
i=0
for f in "${fixtures[@]}"; do
  while IFS= read -r s; do
    i=$((i + 1))
    { printf '%s' "$s"; printf '\0'; printf '%s' "$scope"; } >"corpus/template/t$i"
  done < <(jq -r '.. | strings | select(contains("${"))' "$f" 2>/dev/null || true)
done
for s in '${n.stdout.user.name}' 'x ${n.stdout.ids[${__index__}]} y' '$${HOME} ${#a[@]} ${x:-d}' \
         '${item.x[1].y}' '${n.exit_code}${n.exit_code}' '${a[${b}]}' '${'; do
  i=$((i + 1))
  { printf '%s' "$s"; printf '\0'; printf '%s' "$scope"; } >"corpus/template/t$i"
done
# patch: repair records (the target applies them as if made for its own workflow, so
# any well-formed digest will do) with each kind of operation.
digest=$(printf '0%.0s' {1..64})
ops=(
  '[]'
  '[{"op":"replace","path":"/nodes/1/params/command","value":"echo ${a.echo} done"}]'
  '[{"op":"add","path":"/nodes/-","value":{"id":"c","type":"echo","params":{"message":"${b.stdout}"}}},{"op":"remove","path":"/outputs/o"}]'
  '[{"op":"test","path":"/nodes/0/id","value":"a"},{"op":"move","from":"/nodes/0/params","path":"/nodes/1/params"}]'
  '[{"op":"copy","from":"/nodes/0","path":"/nodes/-"},{"op":"replace","path":"/nodes/2/id","value":"a2"}]'
)
n=0
for op in "${ops[@]}"; do
  n=$((n + 1))
  printf '{"version":1,"base_digest":"%s","repaired_digest":"%s","workflow":"w.json","model":"m","created_at":"2026-01-01T00:00:00Z","errors":[{"node":"b","category":"shell","message":"x"}],"patch":%s}' \
    "$digest" "$digest" "$op" >"corpus/patch/p$n"
done
echo "seeded: $(ls corpus/workflow | wc -l) workflow, $i template, $(ls corpus/reply | wc -l) reply, $(ls corpus/response | wc -l) response, $n patch"
