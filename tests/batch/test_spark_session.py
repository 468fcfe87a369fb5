"""How the Spark engine sets up its session and its inputs: choices that do not change a
number (the parity tests check those) but decide whether a plan takes seconds or minutes."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from qualify.batch.engine import Backend, local_cores


@pytest.mark.parametrize(
    ("master", "cores"),
    [
        ("local", 1),
        ("local[4]", 4),
        ("local[4, 2]", 4),
        ("local[*]", os.cpu_count()),
        ("spark://host:7077", None),
        ("local-cluster[2,1,1024]", None),
        ("yarn", None),
    ],
)
def test_a_local_master_names_its_cores(master: str, cores: int | None) -> None:
    assert local_cores(master) == cores


@pytest.mark.spark
@pytest.mark.slow
def test_spark_on_one_machine_shuffles_into_a_few_partitions(spark_backend: Backend) -> None:
    conf = spark_backend.session.conf  # type: ignore[attr-defined]
    assert conf.get("spark.sql.shuffle.partitions") == "4"  # local[2]


@pytest.mark.spark
@pytest.mark.slow
def test_spark_holds_its_inputs_in_its_block_store_not_in_the_plan(
    spark_backend: Backend,
) -> None:
    """Rows given from Python would otherwise sit in every plan reading them (a
    LocalRelation), and analysing a plan of the model's size grows with the data."""
    rows = pa.table({"lead_id": ["a", "b"], "n": [1, 2]})
    table = spark_backend._table("rows", rows)
    frame = spark_backend.session.table(table.get_name())  # type: ignore[attr-defined]
    analysed = frame._jdf.queryExecution().analyzed().toString()
    assert "LocalRelation" not in analysed
    assert "LogicalRDD" in analysed
    assert sorted(frame.toArrow().column("n").to_pylist()) == [1, 2]


@pytest.mark.spark
@pytest.mark.slow
def test_spark_holds_many_rows_in_a_partition_per_core(spark_backend: Backend) -> None:
    """Rows beyond Spark's local-relation threshold (48 MB by default) are cut into a
    partition per Arrow batch of 10,000 rows, each a task in every stage that calls Python.
    Here both limits are lowered so that a few rows cross them."""
    conf = spark_backend.session.conf  # type: ignore[attr-defined]
    lowered = {
        "spark.sql.execution.arrow.localRelationThreshold": "1024",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "1000",
    }
    before = {key: conf.get(key) for key in lowered}
    for key, value in lowered.items():
        conf.set(key, value)
    try:
        table = spark_backend._table("rows", pa.table({"n": list(range(25_000))}))
    finally:
        for key, value in before.items():
            conf.set(key, value)
    frame = spark_backend.session.table(table.get_name())  # type: ignore[attr-defined]
    assert frame.rdd.getNumPartitions() == 2  # local[2]
    assert sorted(frame.toArrow().column("n").to_pylist()) == list(range(25_000))
