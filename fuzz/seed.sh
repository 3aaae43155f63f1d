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
mkdir -p corpus/workflow corpus/template corpus/reply corpus/response

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
echo "seeded: $(ls corpus/workflow | wc -l) workflow, $i template, $(ls corpus/reply | wc -l) reply, $(ls corpus/response | wc -l) response"
