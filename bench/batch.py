"""`qualify batch` (the compiled plan on DuckDB) against a hand-written DuckDB query of the
same model (the practical limit) and the live engine, on the demo file and the 20-rule demo
model.

Runs alternate (plan, hand-written, live) so that a noisy machine slows all three alike.
The input pass (decoding, identity, profiles: Python) is timed apart from the plan, once in
this process and once with a decoding worker per CPU (`qualify batch`'s way; the two must
give the same tables); the plan and the hand-written query read the same DuckDB tables.

    python bench/batch.py [--events 1000000] [--runs 3] [--leads N]

The issue's size: `--events 10000000 --leads 1000000`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import duckdb
import ibis

from common import arguments, events_file, machine, model_path
from qualify.batch.inputs import from_jsonl, from_messages
from qualify.batch.plan import compile_plan
from qualify.cli.shared import bulk
from qualify.core.activity import parse_time
from qualify.model import load_model
from qualify.service.files import Problems, read_jsonl

AS_OF_TEXT = "2026-09-21T00:00:00Z"
AS_OF = parse_time(AS_OF_TEXT)
HALF_LIFE = 60 * 86400.0

# The demo model written by hand, as a DuckDB user would: same rules, same thresholds.
HAND_WRITTEN = """
WITH e AS (
  SELECT lead_id, message_id, name, ts, properties::JSON AS p
  FROM events WHERE ts <= $as_of
),
d AS (SELECT *, pow(0.5, ($as_of - ts) / $half_life) AS w FROM e),
pricing AS (
  SELECT lead_id, max(ts) AS ts FROM (
    SELECT lead_id, ts, count(*) OVER (
      PARTITION BY lead_id ORDER BY ts RANGE BETWEEN 604800 PRECEDING AND CURRENT ROW) AS n
    FROM e WHERE name = 'page' AND starts_with(lower(p->>'path'), '/pricing'))
  WHERE n >= 2 GROUP BY lead_id
),
product AS (
  SELECT lead_id, max(ts) AS ts FROM e
  WHERE name = 'page' AND starts_with(lower(p->>'path'), '/product')
  GROUP BY lead_id HAVING count(DISTINCT lower(trim(p->>'path'))) >= 5
),
features AS (
  SELECT lead_id, max(ts) AS ts FROM e
  WHERE name = 'feature used' AND lower(p->>'feature') = 'reports'
  GROUP BY lead_id HAVING count(*) >= 5
),
per_lead AS (
  SELECT lead_id,
    cap(30 * sum(w) FILTER (WHERE name = 'content downloaded'
      AND lower(p->>'content_type') = 'whitepaper'), 60) AS whitepaper,
    cap(10 * sum(w) FILTER (WHERE name = 'content downloaded'
      AND lower(p->>'content_type') = 'case study'), 30) AS case_study,
    cap(20 * sum(w) FILTER (WHERE name = 'webinar attended'), 40) AS webinar,
    50 * pow(0.5, ($as_of - min(ts) FILTER (WHERE name = 'demo requested')) / $half_life)
      AS demo,
    cap(5 * sum(w) FILTER (WHERE name IN ('email clicked', 'email link clicked')), 25)
      AS clicks,
    cap(1 * sum(w) FILTER (WHERE name = 'email opened' AND ts >= $as_of - 2592000), 10)
      AS opens,
    10 * pow(0.5, ($as_of - min(ts) FILTER (WHERE name = 'account created')) / $half_life)
      AS signed_up,
    15 * pow(0.5, ($as_of - min(ts) FILTER (WHERE name = 'teammate invited')) / $half_life)
      AS invited,
    floor_at(-20 * sum(w) FILTER (WHERE name = 'page'
      AND starts_with(lower(p->>'path'), '/careers')), -40) AS careers
  FROM d GROUP BY lead_id
),
engaged AS (
  SELECT l.lead_id,
    coalesce(whitepaper, 0) + coalesce(case_study, 0) + coalesce(webinar, 0)
    + coalesce(30 * pow(0.5, ($as_of - pricing.ts) / $half_life), 0) + coalesce(demo, 0)
    + coalesce(clicks, 0) + coalesce(opens, 0)
    + coalesce(20 * pow(0.5, ($as_of - product.ts) / $half_life), 0)
    + coalesce(signed_up, 0) + coalesce(invited, 0)
    + coalesce(20 * pow(0.5, ($as_of - features.ts) / $half_life), 0)
    + coalesce(careers, 0) AS engagement,
    signed_up IS NOT NULL AND invited IS NOT NULL AND features.ts IS NOT NULL AS pql
  FROM per_lead l
  LEFT JOIN pricing USING (lead_id) LEFT JOIN product USING (lead_id)
  LEFT JOIN features USING (lead_id)
),
fit AS (
  SELECT lead_id,
    CASE WHEN lower(profile->>'industry') IN ('financial services', 'software', 'healthcare')
      THEN 15 ELSE 0 END
    + CASE WHEN try_cast(replace(profile->>'company_size', ',', '') AS DOUBLE)
      BETWEEN 200 AND 2000 THEN 10 ELSE 0 END
    + CASE WHEN try_cast(replace(profile->>'company_size', ',', '') AS DOUBLE) > 2000
      THEN 15 ELSE 0 END
    + CASE WHEN regexp_matches(profile->>'job_title',
      '(?i)\\b(vp|head|director|chief|cto|cfo|ceo)\\b') THEN 20 ELSE 0 END
    + CASE WHEN contains(lower(profile->>'job_title'), 'manager') THEN 10 ELSE 0 END
    + CASE WHEN lower(profile->>'country') IN ('us', 'gb', 'de', 'fr', 'no') THEN 5 ELSE 0 END
    + CASE WHEN contains(lower(profile->>'job_title'), 'student') THEN -50 ELSE 0 END
    + CASE WHEN regexp_matches(profile->>'email', '@(gmail|yahoo|hotmail)\\.')
      THEN -10 ELSE 0 END AS fit
  FROM (SELECT lead_id, profile::JSON AS profile FROM profiles)
),
leads AS (SELECT lead_id FROM events UNION SELECT lead_id FROM profiles),
scored AS (
  SELECT lead_id, coalesce(fit, 0) AS fit, coalesce(engagement, 0) AS engagement,
    coalesce(pql, false) AS pql
  FROM leads LEFT JOIN fit USING (lead_id) LEFT JOIN engaged USING (lead_id)
)
SELECT lead_id, fit, engagement, fit + engagement AS score, fit + engagement >= 100 AS mql,
  pql,
  CASE WHEN fit + engagement >= 150 THEN 'hot' WHEN fit + engagement >= 100 THEN 'warm'
    WHEN fit + engagement >= 50 THEN 'cool' END AS tier,
  CASE WHEN fit >= 40 THEN 'A' WHEN fit >= 20 THEN 'B' WHEN fit >= 0 THEN 'C' ELSE 'D' END
    AS grade
FROM scored
"""


def main() -> None:
    args = arguments()
    path, count = events_file(args.events, leads=args.leads)
    model_file = model_path()
    model = load_model(model_file.read_text())

    start = time.perf_counter()
    with path.open("rb") as lines, bulk():  # the garbage-collector setting the CLI uses
        serial = from_messages(model, read_jsonl(lines, Problems()), AS_OF)
    serial_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with bulk():
        inputs = from_jsonl(model, path, AS_OF, Problems())  # a worker per CPU, as the CLI
    input_seconds = time.perf_counter() - start
    if not (inputs.events.equals(serial.events) and inputs.profiles.equals(serial.profiles)):
        raise SystemExit("the workers' input pass differs from the in-process one")
    del serial

    def plan() -> tuple[float, float, int]:
        """(seconds to compile the plan to SQL, seconds to compile and run it, MQLs)."""
        con = ibis.duckdb.connect()
        events = con.create_table("events", inputs.events)
        profiles = con.create_table("profiles", inputs.profiles)
        start = time.perf_counter()
        ibis.to_sql(compile_plan(model, events, profiles, AS_OF).table, dialect="duckdb")
        compiled = time.perf_counter() - start
        start = time.perf_counter()
        scored = compile_plan(model, events, profiles, AS_OF).table.to_pyarrow()
        return compiled, time.perf_counter() - start, sum(scored.column("mql").to_pylist())

    def hand_written() -> tuple[float, int]:
        con = duckdb.connect()
        con.register("events", inputs.events)
        con.register("profiles", inputs.profiles)
        con.sql("CREATE MACRO cap(x, c) AS CASE WHEN x > c THEN c ELSE x END")
        con.sql("CREATE MACRO floor_at(x, c) AS CASE WHEN x < c THEN c ELSE x END")
        start = time.perf_counter()
        query = HAND_WRITTEN.replace("$as_of", repr(AS_OF)).replace("$half_life", repr(HALF_LIFE))
        scored = con.sql(query).to_arrow_table()
        return time.perf_counter() - start, sum(scored.column("mql").to_pylist())

    def live() -> float:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "qualify", "score", str(model_file), str(path), "--json",
             "--as-of", AS_OF_TEXT],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return time.perf_counter() - start

    compiles, plans, hands, lives = [], [], [], []
    mqls = set()
    for _ in range(args.runs):
        compiled, seconds, plan_mqls = plan()
        compiles.append(compiled)
        plans.append(seconds)
        seconds, hand_mqls = hand_written()
        hands.append(seconds)
        lives.append(live())
        mqls.add((plan_mqls, hand_mqls))

    def show(times: list[float]) -> str:
        return f"median {statistics.median(times):.2f}s ({', '.join(f'{t:.2f}' for t in times)})"

    print(f"machine: {machine()}")
    print(f"file: {count:,} messages; {inputs.events.num_rows:,} rule events, "
          f"{inputs.profiles.num_rows:,} leads; model: 20 rules")  # fmt: skip
    print(f"MQLs (plan, hand-written): {sorted(mqls)}")
    print(f"input pass (Python: decode, identity, profiles), in this process: "
          f"{serial_seconds:.2f}s; with {os.cpu_count()} decoding workers: {input_seconds:.2f}s "
          f"({serial_seconds / input_seconds:.2f}x)")  # fmt: skip
    print(f"compiled plan on DuckDB:  {show(plans)}, of which compiling to SQL {show(compiles)}")
    print(f"hand-written DuckDB SQL:  {show(hands)}")
    print(f"ratio plan / hand-written: {statistics.median(plans) / statistics.median(hands):.2f}")
    total = input_seconds + statistics.median(plans)
    print(f"qualify batch end to end ≈ {total:.2f}s = {count / total:,.0f} events/s")
    print(f"live engine (qualify score --json): {show(lives)}")


if __name__ == "__main__":
    main()
