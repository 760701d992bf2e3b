"""deploy/: the alerting rules pass `promtool check rules` and their unit tests; every query of the
Grafana dashboard is valid PromQL (each is checked as a recording rule) and names only metrics a
live edge exports; the systemd unit reloads with SIGHUP."""
import json
import os
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT

DEPLOY = os.path.join(ROOT, "deploy")


def promtool(*args, cwd=DEPLOY):
    r = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_alert_rules_check_and_unit_tests():
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", "edge-alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "edge-alerts.test.yml")


def dashboard_queries():
    d = json.load(open(os.path.join(DEPLOY, "grafana-edge.json")))
    return [t["expr"] for p in d["panels"] for t in p["targets"]]


def test_dashboard_queries_are_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(dashboard_queries())]}]}
    f = tmp_path / "dashboard-rules.yml"
    f.write_text(json.dumps(rules))   # JSON is YAML
    assert f"SUCCESS: {len(rules['groups'][0]['rules'])} rules found" in promtool("check", "rules", str(f))


def test_dashboard_and_alerts_name_only_exported_metrics(make_edge, tmp_path):
    import re
    e = make_edge(origins=["http://127.0.0.1:9"], cache={"dir": str(tmp_path / "c"), "pinned_bytes_max": 1 << 20,
                                                       "disk_bytes_limit": 8 << 20}, admin={})
    status, text = e.admin("GET", "/metrics")
    assert status == 200
    exported = set()
    for f in text_string_to_metric_families(text):
        exported |= {s.name for s in f.samples}
    alerts = open(os.path.join(DEPLOY, "edge-alerts.yml")).read()
    used = set(re.findall(r"\bedge_[a-z_]+", " ".join(dashboard_queries()) + alerts))
    used.discard("edge_")
    missing = sorted(u for u in used if u not in exported)
    assert not missing, missing


def test_systemd_unit_reloads_with_sighup():
    unit = open(os.path.join(DEPLOY, "edge.service")).read()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "ExecStartPre=/usr/local/bin/edge --config /etc/edge/edge.conf --check" in unit
