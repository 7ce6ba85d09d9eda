#!/usr/bin/env bash
# Checks helm/ as far as this machine allows (issue 7): Chart.yaml and values.yaml parse, every
# `.Values.x.y` a template uses is defined in values.yaml, the dashboard and the alert rules
# parse and query only metrics the services export. With `helm` installed it also renders the
# chart and validates the manifests with kubernetes-validate; without it, it says so.
source "$(dirname "$0")/lib.sh"

python3 - "$HS_ROOT" <<'PY'
import json, pathlib, re, sys
import yaml

root = pathlib.Path(sys.argv[1])
chart = root / "helm" / "hookstream"
failures = []

meta = yaml.safe_load((chart / "Chart.yaml").read_text())
for key in ("apiVersion", "name", "version", "appVersion"):
    if not meta.get(key):
        failures.append(f"Chart.yaml lacks {key}")
values = yaml.safe_load((chart / "values.yaml").read_text())

def defined(path):
    node = values
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True

used = set()
for t in sorted((chart / "templates").glob("*")):
    text = t.read_text()
    for m in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
        path = tuple(m.group(1).strip(".").split("."))
        used.add(path)
        if not defined(path):
            failures.append(f"{t.name}: .Values.{'.'.join(path)} is not in values.yaml")
    for m in re.finditer(r'index \$?\.Values\.config "([A-Z_]+)"', text):
        if m.group(1) not in values.get("config", {}):
            failures.append(f"{t.name}: config key {m.group(1)} is not in values.yaml")

# Metrics the services export: every metrics::counter!/gauge!/histogram! name in the code.
exported = set()
for src in root.glob("*/src/**/*.rs"):
    exported.update(re.findall(r'metrics::(?:counter|gauge|histogram)!\(\s*"([a-z_]+)"', src.read_text()))
def metric_names(expr):
    names = set(re.findall(r"\b([a-z][a-z0-9_]*_(?:total|seconds|depth|size|bucket|tasks|partitions|in_flight))\b", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}

dashboard = json.loads((root / "helm" / "dashboards" / "hookstream.json").read_text())
queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
rules = yaml.safe_load((root / "helm" / "alerts" / "hookstream-rules.yaml").read_text())
for group in rules["groups"]:
    for rule in group["rules"]:
        for key in ("alert", "expr", "for", "labels", "annotations"):
            if key not in rule:
                failures.append(f"alert rule {rule.get('alert', '?')} lacks {key}")
        queries.append(rule["expr"])
for q in queries:
    for name in metric_names(q):
        if name not in exported:
            failures.append(f"query uses {name}, which no service exports: {q}")

print(f"chart: {len(used)} values paths checked; dashboard {len(dashboard['panels'])} panels and "
      f"{sum(len(g['rules']) for g in rules['groups'])} alert rules query {len(exported)} exported metrics")
if failures:
    print("\n".join(failures))
    sys.exit(1)
PY

if command -v helm >/dev/null; then
  log "helm template + kubernetes-validate"
  out=$(mktemp -d)
  helm template test "$HS_ROOT/helm/hookstream" --set keda.enabled=false >"$out/all.yaml"
  [ -x "$KUBERNETES_VALIDATE_BIN" ] || "$HS_ROOT/scripts/install.sh"
  "$KUBERNETES_VALIDATE_BIN" --strict "$out/all.yaml"
else
  log "helm is not installed here: skipping helm template and kubernetes-validate (static checks passed)"
fi
